package wasmtest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Engine is one wazero engine configured like the runtime pins it (core
// 2.0 minus SIMD and reference types, 512-page memory limit, no
// close-on-context-done).
type Engine struct {
	Name   string
	config func() wazero.RuntimeConfig
}

// Engines are both wazero engines; metamorphic tests run every case on each
// and compare.
var Engines = []Engine{
	{"compiler", wazero.NewRuntimeConfigCompiler},
	{"interpreter", wazero.NewRuntimeConfigInterpreter},
}

// Instance is one instantiated module on one engine, with a deterministic
// WASI (fixed clock and randomness) for Go guests.
type Instance struct {
	t   testing.TB
	ctx context.Context
	mod api.Module
}

// Instantiate compiles and instantiates bin on e; it is closed when the test
// ends. Modules that export _initialize (Go guests) are not initialized
// here: call it like any export so its gas is measured.
func Instantiate(t testing.TB, e Engine, bin []byte) *Instance {
	t.Helper()
	ctx := context.Background()
	cfg := e.config().
		WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false).SetEnabled(api.CoreFeatureReferenceTypes, false)).
		WithMemoryLimitPages(512).
		WithCloseOnContextDone(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		t.Fatal(err)
	}
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("%s: compile: %v", e.Name, err)
	}
	var clock int64
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithWalltime(func() (int64, int32) { clock += 1000; return clock, 0 }, 1).
		WithNanotime(func() int64 { clock += 1000; return clock }, 1).
		WithRandSource(bytes.NewReader(make([]byte, 1<<16)))
	mod, err := rt.InstantiateModule(ctx, cm, mc)
	if err != nil {
		t.Fatalf("%s: instantiate: %v", e.Name, err)
	}
	return &Instance{t: t, ctx: ctx, mod: mod}
}

// Result is what one call did, in a form tests compare across engines.
type Result struct {
	Values        []uint64
	GasLeft       int64  // gas_left after the call (0 for modules without it)
	Trap          string // first line of the error, "" when the call returned
	OutOfGas      bool   // gas_left < 0 after the call, trapped or not
	DepthExceeded bool   // trapped with the depth flag set
}

// Call sets gas_left to gas (when the module is instrumented), resets the
// depth counter, and calls the export.
func (in *Instance) Call(name string, gas int64, args ...uint64) Result {
	in.t.Helper()
	f := in.mod.ExportedFunction(name)
	if f == nil {
		in.t.Fatalf("no export %q", name)
	}
	gasG, metered := in.mod.ExportedGlobal("gas_left").(api.MutableGlobal)
	if metered {
		gasG.Set(uint64(gas))
		in.mod.ExportedGlobal("__kairos_depth").(api.MutableGlobal).Set(0)
	}
	vals, err := f.Call(in.ctx, args...)
	r := Result{Values: vals}
	if metered {
		r.GasLeft = int64(gasG.Get())
	}
	r.OutOfGas = metered && r.GasLeft < 0
	if err != nil {
		r.Trap, _, _ = strings.Cut(err.Error(), "\n")
		r.DepthExceeded = metered && in.mod.ExportedGlobal("__kairos_depth_exceeded").Get() == 1
	}
	return r
}

// Module is the underlying wazero module, for benchmarks that call
// functions directly.
func (in *Instance) Module() api.Module { return in.mod }

// Global reads an exported global.
func (in *Instance) Global(name string) uint64 { return in.mod.ExportedGlobal(name).Get() }

// MemoryPages is the current memory size.
func (in *Instance) MemoryPages() uint32 {
	if in.mod.Memory() == nil {
		return 0
	}
	return in.mod.Memory().Size() / 65536
}
