package wasm_test

import (
	"bytes"
	"errors"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// generated returns modules built from instructions covering every
// immediate kind, sections and custom sections.
func generated() [][]byte {
	b := New()
	b.Import("kairos", "input_len", nil, I32s)
	b.Memory(1, 2)
	g := b.Global(wasm.I64, true, I64(-1<<40))
	b.Global(wasm.F32, false, F32Bits(0x7FC01234))
	b.Global(wasm.F64, false, F64Bits(0x7FF8000000000001))
	seg := b.PassiveData([]byte("hello"))
	b.M.Data = append([]wasm.Data{{Flags: wasm.DataActiveExplicit, Offset: I32(16), Init: []byte{1, 2, 3}}}, b.M.Data...)
	seg++
	n := uint32(len(b.M.Data))
	b.M.DataCount = &n
	f := b.Func("all", I32s, I64s, []wasm.ValType{wasm.I64, wasm.F32},
		Block(wasm.OpBlock, wasm.BlockEmpty), Block(wasm.OpLoop, wasm.BlockOf(wasm.I32)), I32(-129), Op(wasm.OpEnd),
		Block(wasm.OpIf, wasm.BlockEmpty), Op(wasm.OpNop), Op(wasm.OpElse), Idx(wasm.OpBr, 1), Op(wasm.OpEnd),
		Idx(wasm.OpLocalGet, 0), BrTable(0, 0, 0, 0), Op(wasm.OpEnd),
		I32(0), Mem(wasm.OpI64Load, 3, 1<<20), Idx(wasm.OpGlobalSet, g),
		I32(0), I32(0), I32(5), Idx(wasm.OpMemoryInit, seg), Idx(wasm.OpDataDrop, seg),
		I32(0), I32(1), I32(2), Op(wasm.OpMemoryCopy), I32(0), I32(1), I32(2), Op(wasm.OpMemoryFill),
		Op(wasm.OpMemorySize), Op(wasm.OpMemoryGrow), Op(wasm.OpDrop),
		F64Bits(1), Op(0xFC07 /* i64.trunc_sat_f64_u */), Op(0xC4 /* i64.extend32_s */), Idx(wasm.OpLocalSet, 1),
		Idx(wasm.OpLocalGet, 1), I64(1<<62), Op(wasm.OpI64Add))
	b.M.Tables = []wasm.Limits{{Min: 2, Max: 2, HasMax: true}}
	b.M.Elements = []wasm.Element{{Offset: I32(0), Funcs: []uint32{f, 0}}}
	b.Func("ind", nil, nil, nil, I32(1), wasm.Instr{Op: wasm.OpCallIndirect, A: 0}, Op(wasm.OpDrop))
	start := b.Func("", nil, nil, nil)
	b.M.Start = &start
	b.M.Customs = []wasm.Custom{{After: 0, Name: "first", Data: []byte{1}}, {After: wasm.SecCode, Name: "name", Data: []byte{9, 9}}, {After: wasm.SecData, Name: "last"}}

	small := New()
	small.Func("f", nil, nil, nil)
	return [][]byte{b.Bytes(), small.Bytes()}
}

// TestRoundTripGenerated: decode then encode is byte-identical for
// canonical modules.
func TestRoundTripGenerated(t *testing.T) {
	for i, bin := range generated() {
		m, err := wasm.Decode(bin)
		if err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
		if out := wasm.Encode(m); !bytes.Equal(out, bin) {
			t.Errorf("module %d: round trip differs\n in  %x\n out %x", i, bin, out)
		}
	}
}

// TestLEB128 covers the integer edge cases of the decoder.
func TestLEB128(t *testing.T) {
	// A module with one type whose param count uses the given encoding.
	mod := func(count ...byte) []byte {
		payload := append([]byte{1, 0x60}, count...)
		payload = append(payload, 0)
		return append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, byte(len(payload))}, payload...)
	}
	for _, c := range []struct {
		name string
		enc  []byte
		ok   bool
	}{
		{"zero", []byte{0}, true},
		{"padded zero", []byte{0x80, 0x00}, true},
		{"five bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x00}, true},
		{"six bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, false},
		{"over u32", []byte{0x80, 0x80, 0x80, 0x80, 0x10}, false},
		{"truncated", []byte{0x80}, false},
	} {
		_, err := wasm.Decode(mod(c.enc...))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, wasm.ErrMalformed) {
			t.Errorf("%s: %v is not ErrMalformed", c.name, err)
		}
	}
	// Signed: i32.const of the smallest and largest values round-trips,
	// and an s32 with bad sign bits is rejected.
	for _, v := range []int32{0, -1, 63, 64, -64, -65, 1<<31 - 1, -1 << 31} {
		b := New()
		b.Func("f", nil, I32s, nil, I32(v))
		m, err := wasm.Decode(b.Bytes())
		if err != nil || int32(m.Code[0].Body[0].A) != v {
			t.Errorf("i32.const %d: %v", v, err)
		}
	}
	b := New()
	b.Func("f", nil, I32s, nil, I32(0))
	bin := b.Bytes()
	i := bytes.Index(bin, []byte{0x41, 0x00, 0x0B})
	bad := append(append(append([]byte{}, bin[:i+1]...), 0xFF, 0xFF, 0xFF, 0xFF, 0x4F), bin[i+2:]...)
	bad[i-4] += 4 // section size
	bad[i-2] += 4 // body size
	if _, err := wasm.Decode(bad); !errors.Is(err, wasm.ErrMalformed) {
		t.Errorf("s32 with bad sign bits: %v", err)
	}
}

// FuzzDecode: no panic, and whatever decodes re-encodes to a fixed point.
func FuzzDecode(f *testing.F) {
	for _, b := range generated() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := wasm.Decode(b)
		if err != nil {
			if !errors.Is(err, wasm.ErrMalformed) && !errors.Is(err, wasm.ErrUnsupported) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		enc := wasm.Encode(m)
		m2, err := wasm.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !bytes.Equal(wasm.Encode(m2), enc) {
			t.Fatal("Encode∘Decode is not idempotent")
		}
	})
}
