package validate_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// FuzzValidate: arbitrary bytes never panic or hang Check; Check and
// instrumentation are deterministic; every accepted module instruments into
// a module that decodes and passes Structure again, and — when wazero
// compiles the original — that wazero compiles too (validate does not
// check operand types, the engine does).
func FuzzValidate(f *testing.F) {
	f.Add(base().Bytes())
	b := base()
	b.Func("loop", I32s, I32s, I32s, Block(wasm.OpLoop, wasm.BlockEmpty), Idx(wasm.OpLocalGet, 0), Idx(wasm.OpBrIf, 0), Op(wasm.OpEnd), I32(3))
	f.Add(b.Bytes())
	for _, c := range hostileCases() {
		if len(c.bin) < 4096 {
			f.Add(c.bin)
		}
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		m, _, err := validate.Check(bin, cfg)
		m2, _, err2 := validate.Check(bin, cfg)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("Check is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			return
		}
		i1, err := meter.Instrument(m)
		if err != nil {
			t.Fatalf("valid module does not instrument: %v", err)
		}
		i2, err := meter.Instrument(m2)
		if err != nil {
			t.Fatal(err)
		}
		out := wasm.Encode(i1)
		if !bytes.Equal(out, wasm.Encode(i2)) {
			t.Fatal("instrumentation is not deterministic")
		}
		back, err := wasm.Decode(out)
		if err != nil {
			t.Fatalf("instrumented module does not decode: %v", err)
		}
		if err := validate.Structure(back); err != nil {
			t.Fatalf("instrumented module does not validate: %v", err)
		}
		if compiles(bin) == nil {
			if err := compiles(out); err != nil {
				t.Fatalf("the original compiles, the instrumented module does not: %v", err)
			}
		}
	})
}

// compiles reports whether wazero's interpreter (the cheaper compile, same
// validator) accepts a module under the runtime's feature set.
func compiles(bin []byte) error {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false).SetEnabled(api.CoreFeatureReferenceTypes, false)))
	defer rt.Close(ctx)
	_, err := rt.CompileModule(ctx, bin)
	return err
}
