package vm_test

import (
	"math"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// TestRestoreSetsEveryGlobal: globals of every type, an immutable one
// among them (RestoreExport must skip it: setting it would not compile),
// all changed by one call, are back at their initial values in the next
// call, on tracked code (restored through RestoreExport) and untracked
// code (one api.MutableGlobal at a time), on both engines.
func TestRestoreSetsEveryGlobal(t *testing.T) {
	const one32, half64 = 0x3f800000, 0x3fe0000000000000 // 1.0f, 0.5
	b := New()
	b.Memory(1, 1)
	type global struct {
		t    wasm.ValType
		init wasm.Instr
		bump []wasm.Instr // global.get, these, global.set
		want uint64
	}
	gs := []global{
		{wasm.I32, I32(1), []wasm.Instr{I32(1), Op(wasm.OpI32Add)}, 1},
		{wasm.I64, I64(7), nil, 7}, // immutable
		{wasm.F64, F64Bits(half64), []wasm.Instr{F64Bits(half64), Op(wasm.OpF64Add)}, half64},
		{wasm.I64, I64(-3), []wasm.Instr{I64(1), Op(wasm.OpI64Add)}, math.MaxUint64 - 2},
		{wasm.F32, F32Bits(one32), []wasm.Instr{F32Bits(one32), Op(wasm.OpF32Add)}, one32},
	}
	var bump []wasm.Instr
	for _, g := range gs {
		i := b.Global(g.t, g.bump != nil, g.init)
		if g.bump != nil {
			bump = append(bump, Idx(wasm.OpGlobalGet, i))
			bump = append(bump, g.bump...)
			bump = append(bump, Idx(wasm.OpGlobalSet, i))
		}
		b.Func("get"+string(rune('a'+i)), nil, []wasm.ValType{g.t}, nil, Idx(wasm.OpGlobalGet, i))
	}
	bump = append(bump, I32(0), I32(1), Mem(wasm.OpI32Store, 2, 0)) // and a page
	b.Func("bump", nil, nil, nil, bump...)
	code := prepare(t, b.Bytes())
	for _, full := range []bool{false, true} {
		for _, interp := range []bool{false, true} {
			c := vm.DefaultConfig()
			c.FullRestore, c.Interpreter = full, interp
			in, err := compile(t, c, code).Instantiate(t.Context(), vm.Env{})
			if err != nil {
				t.Fatal(err)
			}
			if vm.RestoresInOneCall(in) == full {
				t.Fatalf("full restore %v: restores in one call %v", full, vm.RestoresInOneCall(in))
			}
			for range 3 {
				if o := call(t, in, "bump", 1000); o.Status != vm.StatusOK {
					t.Fatalf("bump: %+v", o)
				}
				for i, g := range gs {
					fn := "get" + string(rune('a'+i))
					if o := call(t, in, fn, 1000); o.Status != vm.StatusOK || o.Values[0] != g.want {
						t.Errorf("full restore %v, interpreter %v: %s after bump = %+v, want %#x", full, interp, fn, o, g.want)
					}
				}
			}
		}
	}
}

// TestRestoreManyGlobals: above restoreGlobalsMax mutable globals a tracked
// module restores them one by one, and still restores every one of them.
func TestRestoreManyGlobals(t *testing.T) {
	const n = 100
	b := New()
	b.Memory(1, 1)
	var bump, sum []wasm.Instr
	sum = append(sum, I64(0))
	for i := range n {
		g := b.Global(wasm.I64, true, I64(int64(i)))
		bump = append(bump, Idx(wasm.OpGlobalGet, g), I64(1), Op(wasm.OpI64Add), Idx(wasm.OpGlobalSet, g))
		sum = append(sum, Idx(wasm.OpGlobalGet, g), Op(wasm.OpI64Add))
	}
	b.Func("bump", nil, []wasm.ValType{wasm.I64}, nil, append(bump, sum...)...)
	code := prepare(t, b.Bytes())
	const want = n*(n-1)/2 + n // every global once above its initial value
	for _, interp := range []bool{false, true} {
		c := vm.DefaultConfig()
		c.Interpreter = interp
		in, err := compile(t, c, code).Instantiate(t.Context(), vm.Env{})
		if err != nil {
			t.Fatal(err)
		}
		if vm.RestoresInOneCall(in) {
			t.Fatalf("%d mutable globals restored in one call", n)
		}
		for range 3 {
			if o := call(t, in, "bump", 100000); o.Status != vm.StatusOK || o.Values[0] != want {
				t.Fatalf("interpreter %v: bump = %+v, want %d", interp, o, want)
			}
		}
	}
}
