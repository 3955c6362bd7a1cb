package meter_test

import (
	"bytes"
	"testing"

	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

var testConfig = validate.Config{Limits: validate.DefaultLimits(), Imports: validate.WASISubset()}

// instrument validates bin, instruments it, and checks that the output
// re-validates structurally and that instrumentation is deterministic.
func instrument(t testing.TB, bin []byte) []byte {
	t.Helper()
	m, _, err := validate.Check(bin, testConfig)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	out := encodeInstrumented(t, m)
	if again := encodeInstrumented(t, m); !bytes.Equal(out, again) {
		t.Fatal("instrumenting the same module twice gave different bytes")
	}
	m2, err := wasm.Decode(out)
	if err != nil {
		t.Fatalf("instrumented module does not decode: %v", err)
	}
	if err := validate.Structure(m2); err != nil {
		t.Fatalf("instrumented module does not validate: %v", err)
	}
	return out
}

func encodeInstrumented(t testing.TB, m *wasm.Module) []byte {
	t.Helper()
	im, err := meter.Instrument(m)
	if err != nil {
		t.Fatal(err)
	}
	return wasm.Encode(im)
}

// reference instruments with the per-instruction reference metering.
func reference(t testing.TB, bin []byte) []byte {
	t.Helper()
	m, _, err := validate.Check(bin, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	im, err := meter.InstrumentPerInstr(m)
	if err != nil {
		t.Fatal(err)
	}
	return wasm.Encode(im)
}
