package vm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/kairos-network/kairos/runtime/meter"
)

// Errors.
var (
	ErrCompile     = errors.New("vm: compile failed")
	ErrInstantiate = errors.New("vm: instantiate failed")
	ErrNotMetered  = errors.New("vm: module is not instrumented")
	ErrNoExport    = errors.New("vm: no such exported function")
	ErrDiscarded   = errors.New("vm: instance discarded")
)

// Config is the engine configuration. The zero value is not valid; start
// from DefaultConfig.
type Config struct {
	// MemoryLimitPages caps every instance's memory (64 KiB pages); a
	// grow past it fails inside the guest rather than trapping.
	MemoryLimitPages uint32
	// CacheDir keeps compiled code across restarts; "" keeps it in memory.
	CacheDir string
	// Interpreter selects wazero's interpreter instead of the compiler. It
	// exists for the metamorphic tests that compare the engines; nodes run
	// the compiler.
	Interpreter bool
	// InitGas is the gas given to _initialize when a Go guest is
	// instantiated.
	InitGas int64
}

// DefaultConfig matches validate.DefaultLimits() (512 pages).
func DefaultConfig() Config { return Config{MemoryLimitPages: 512, InitGas: 1 << 32} }

// Engine owns one wazero runtime with the virtual WASI host module.
type Engine struct {
	cfg Config
	rt  wazero.Runtime
}

// NewEngine creates the runtime. Close it to release compiled code.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithCoreFeatures(api.CoreFeaturesV2.
		SetEnabled(api.CoreFeatureSIMD, false).
		SetEnabled(api.CoreFeatureReferenceTypes, false)).
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCloseOnContextDone(false)
	cache := wazero.NewCompilationCache()
	if cfg.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("vm: compilation cache: %w", err)
		}
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc.WithCompilationCache(cache))
	// The WASI functions read clock, randomness, args and environment from
	// each guest's ModuleConfig, which Instantiate makes deterministic.
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("vm: wasi: %w", err)
	}
	return &Engine{cfg: cfg, rt: rt}, nil
}

// Close releases the runtime and everything compiled or instantiated in it.
func (e *Engine) Close(ctx context.Context) error { return e.rt.Close(ctx) }

// Code is a compiled instrumented module.
type Code struct {
	e  *Engine
	cm wazero.CompiledModule
}

// Compile compiles an instrumented module (deploy.Prepared.Instrumented).
func (e *Engine) Compile(ctx context.Context, instrumented []byte) (*Code, error) {
	cm, err := e.rt.CompileModule(ctx, instrumented)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCompile, err)
	}
	return &Code{e: e, cm: cm}, nil
}

// Env is the deterministic environment of the guest's virtual WASI: the
// wall clock starts at ClockNs and advances ClockStepNs (at least 1) per
// read (the Go runtime reads it in its GC, and traps at start-up if it
// reads zero); randomness is sha256(Seed ‖ counter).
type Env struct {
	ClockNs     int64
	ClockStepNs int64
	Seed        [32]byte
}

// detState is the host-side guest state that lives outside linear memory;
// it is part of the snapshot.
type detState struct {
	clock   int64
	step    int64
	seed    [32]byte
	counter uint64
	buf     []byte // unread bytes of the current random block
}

func (s *detState) now() int64 { s.clock += s.step; return s.clock }

func (s *detState) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.buf) == 0 {
			var in [40]byte
			copy(in[:], s.seed[:])
			binary.LittleEndian.PutUint64(in[32:], s.counter)
			s.counter++
			blk := sha256.Sum256(in[:])
			s.buf = blk[:]
		}
		c := copy(p[n:], s.buf)
		s.buf = s.buf[c:]
		n += c
	}
	return n, nil
}

// Status classifies how a call ended; guest failures are values, not
// errors.
type Status uint8

// Statuses.
const (
	StatusOK            Status = iota
	StatusOutOfGas             // gas_left < 0 after the call, trapped or returned
	StatusDepthExceeded        // trapped by the call-depth limit
	StatusTrapped              // any other trap (unreachable, bounds, division, host abort)
)

func (s Status) String() string {
	return [...]string{"ok", "out_of_gas", "depth_exceeded", "trapped"}[s]
}

// Outcome is the result of one call.
type Outcome struct {
	Status  Status
	Values  []uint64
	GasUsed int64 // the whole limit when out of gas
	Trap    error // the engine's error when Status != StatusOK
}

// Instance is a live module with its post-init snapshot.
type Instance struct {
	mod       api.Module
	state     *detState
	gas       api.MutableGlobal
	depth     api.MutableGlobal
	exceeded  api.MutableGlobal
	globals   []api.MutableGlobal // mutable original globals
	snapMem   []byte
	snapGlob  []uint64
	snapState detState
	snapped   bool // the snapshot exists (reset before it only sets the meter)
	discarded error
	// funcs caches exported functions: wazero builds a new call engine
	// (with its stack) on every ExportedFunction lookup.
	funcs map[string]api.Function
}

// Instantiate creates an instance in env, runs _initialize if the module
// exports it (metered with Config.InitGas), and takes the snapshot every
// call starts from.
func (c *Code) Instantiate(ctx context.Context, env Env) (*Instance, error) {
	st := &detState{clock: env.ClockNs, step: max(env.ClockStepNs, 1), seed: env.Seed}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // _initialize runs below, metered
		WithWalltime(func() (int64, int32) { ns := st.now(); return ns / 1e9, int32(ns % 1e9) }, 1).
		WithNanotime(st.now, 1).
		WithRandSource(st).
		WithNanosleep(func(int64) {}).
		WithOsyield(func() {})
	mod, err := c.e.rt.InstantiateModule(ctx, c.cm, mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInstantiate, err)
	}
	in := &Instance{mod: mod, state: st, funcs: map[string]api.Function{}}
	var ok bool
	if in.gas, ok = mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal); !ok {
		mod.Close(ctx)
		return nil, ErrNotMetered
	}
	in.depth, _ = mod.ExportedGlobal(meter.DepthExport).(api.MutableGlobal)
	in.exceeded, _ = mod.ExportedGlobal(meter.DepthExceededExport).(api.MutableGlobal)
	if in.depth == nil || in.exceeded == nil {
		mod.Close(ctx)
		return nil, ErrNotMetered
	}
	for i := 0; ; i++ {
		g := mod.ExportedGlobal(meter.GlobalExport(i))
		if g == nil {
			break
		}
		if mg, ok := g.(api.MutableGlobal); ok {
			in.globals = append(in.globals, mg)
		}
	}
	if mod.ExportedFunction("_initialize") != nil {
		in.reset(c.e.cfg.InitGas)
		out, err := in.call(ctx, "_initialize", c.e.cfg.InitGas)
		if err != nil || out.Status != StatusOK {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: _initialize: %s: %v", ErrInstantiate, out.Status, out.Trap)
		}
	}
	if m := mod.Memory(); m != nil {
		view, _ := m.Read(0, m.Size())
		in.snapMem = append([]byte(nil), view...)
	}
	for _, g := range in.globals {
		in.snapGlob = append(in.snapGlob, g.Get())
	}
	in.snapState = *st
	in.snapState.buf = append([]byte(nil), st.buf...)
	in.snapped = true
	return in, nil
}

// reset restores the snapshot (memory, globals, clock and random state) and
// sets the meter's globals for a call with gas.
func (in *Instance) reset(gas int64) {
	if in.snapped {
		if m := in.mod.Memory(); m != nil {
			view, _ := m.Read(0, uint32(len(in.snapMem)))
			copy(view, in.snapMem)
		}
		for i, g := range in.globals {
			g.Set(in.snapGlob[i])
		}
		*in.state = in.snapState
		in.state.buf = append(in.state.buf[:0:0], in.snapState.buf...)
	}
	in.gas.Set(uint64(gas))
	in.depth.Set(0)
	in.exceeded.Set(0)
}

// Call restores the snapshot and calls an export with a gas limit. The
// error is for host problems (discarded instance, unknown export); guest
// failures are in the Outcome. After a trap or a memory grow the instance
// is discarded.
func (in *Instance) Call(ctx context.Context, name string, gas int64, args ...uint64) (Outcome, error) {
	if in.discarded != nil {
		return Outcome{}, fmt.Errorf("%w: %w", ErrDiscarded, in.discarded)
	}
	in.reset(gas)
	out, err := in.call(ctx, name, gas, args...)
	if err != nil {
		return out, err
	}
	if out.Status != StatusOK {
		in.discard(ctx, fmt.Errorf("call trapped: %s", out.Status))
	} else if m := in.mod.Memory(); m != nil && int(m.Size()) != len(in.snapMem) {
		in.discard(ctx, fmt.Errorf("memory grew from %d to %d bytes", len(in.snapMem), m.Size()))
	}
	return out, nil
}

func (in *Instance) call(ctx context.Context, name string, gas int64, args ...uint64) (Outcome, error) {
	f, ok := in.funcs[name]
	if !ok {
		if f = in.mod.ExportedFunction(name); f == nil || strings.HasPrefix(name, "__kairos") {
			return Outcome{}, fmt.Errorf("%w: %q", ErrNoExport, name)
		}
		in.funcs[name] = f
	}
	vals, err := f.Call(ctx, args...)
	left := int64(in.gas.Get())
	out := Outcome{Values: vals, GasUsed: gas - left, Trap: err}
	switch {
	case left < 0:
		// The meter tests the balance only at loop headers, function
		// entries and host calls, so a call may also return normally
		// after overspending: its results do not count either.
		out.Status, out.GasUsed = StatusOutOfGas, gas
	case err == nil:
		return out, nil
	case in.exceeded.Get() == 1:
		out.Status = StatusDepthExceeded
	default:
		out.Status = StatusTrapped
	}
	out.Values = nil
	return out, nil
}

func (in *Instance) discard(ctx context.Context, why error) {
	in.discarded = why
	in.mod.Close(ctx)
}

// SnapshotBytes is the size of the memory snapshot copied before every
// call, the dominant per-call cost of a large guest.
func (in *Instance) SnapshotBytes() int { return len(in.snapMem) }

// Discarded reports whether the instance can no longer be used.
func (in *Instance) Discarded() bool { return in.discarded != nil }

// Close releases the instance.
func (in *Instance) Close(ctx context.Context) error {
	if in.discarded == nil {
		in.discarded = errors.New("closed")
		return in.mod.Close(ctx)
	}
	return nil
}
