package wasm_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// TestRoundTripGoGuest: a real Go guest decodes and encodes back to the
// same bytes (the Go linker pads some LEB128 integers to 5 bytes; Layout
// keeps those widths). Without the Layout the canonical encoding decodes to
// the same module.
func TestRoundTripGoGuest(t *testing.T) {
	orig := wasmtest.GoGuest(t)
	m, err := wasm.Decode(orig)
	if err != nil {
		t.Fatal(err)
	}
	if enc := wasm.Encode(m); !bytes.Equal(enc, orig) {
		t.Fatalf("Go guest round trip differs (%d bytes in, %d out)", len(orig), len(enc))
	}
	m.Layout = nil
	enc := wasm.Encode(m)
	m2, err := wasm.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Layout != nil {
		t.Fatal("canonical encoding decodes with padded integers")
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatal("re-encoded Go guest decodes to a different module")
	}
	if enc2 := wasm.Encode(m2); !bytes.Equal(enc, enc2) {
		t.Fatal("Encode∘Decode is not idempotent on the Go guest")
	}
	var instrs int
	for _, c := range m.Code {
		instrs += len(c.Body)
	}
	t.Logf("Go guest: %d bytes, canonical %d bytes, %d types, %d imports, %d functions, %d instructions, %d data segments, %d customs",
		len(orig), len(enc), len(m.Types), len(m.Imports), len(m.Funcs), instrs, len(m.Data), len(m.Customs))
}
