package host_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// inputCallerModule's "run" reads its input into [dst, dst+capacity) and
// the caller into [cp, cp+32), with input_caller when fused, else with
// input_read then caller, stores the returned total at 4096 and returns
// memory [0, 4100).
func inputCallerModule(fused bool, dst, capacity, cp int32) []byte {
	b := New()
	i1, i2, i3 := []wasm.ValType{wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}
	call := func(f uint32) wasm.Instr { return Idx(wasm.OpCall, f) }
	var body []wasm.Instr
	ret := b.Import("kairos", "return_data", i2, None)
	if fused {
		ic := b.Import("kairos", "input_caller", i3, I32s)
		body = []wasm.Instr{I32(4096), I32(dst), I32(capacity), I32(cp), call(ic), Mem(wasm.OpI32Store, 2, 0)}
	} else {
		in := b.Import("kairos", "input_read", i2, I32s)
		caller := b.Import("kairos", "caller", i1, None)
		body = []wasm.Instr{I32(4096), I32(dst), I32(capacity), call(in), Mem(wasm.OpI32Store, 2, 0), I32(cp), call(caller)}
	}
	b.Memory(1, 1)
	body = append(body, I32(0), I32(4100), call(ret))
	b.Func("run", nil, nil, nil, body...)
	return b.Bytes()
}

// TestInputCallerIsInputReadThenCaller: input_caller leaves memory, the
// returned total and the status exactly as input_read followed by caller
// (overlapping ranges included: the address is written last), for one
// GasHostCall less, on both engines; either range out of bounds traps
// with ErrBadPointer.
func TestInputCallerIsInputReadThenCaller(t *testing.T) {
	input := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCD") // 40 bytes
	cases := []struct{ dst, capacity, cp int32 }{
		{100, 0, 200},     // probe
		{100, 16, 200},    // short buffer
		{100, 40, 200},    // exact
		{100, 256, 400},   // larger than the input
		{100, 64, 120},    // the address inside the input's range
		{100, 40, 90},     // the address over the input's start
		{200, 40, 100},    // the address before, not overlapping
		{0, 40, 65504},    // the address at the end of memory
		{65496, 40, 0},    // the input's buffer past the end
		{0, 40, 65505},    // the address past the end
		{65536, 0, 65504}, // an empty buffer at the end is valid
	}
	self := addr("inputcaller")
	for ei := range engines {
		for _, tc := range cases {
			var res [2]host.Result
			for i, fused := range []bool{false, true} {
				c := newChain(t, ei)
				c.deploy(self, inputCallerModule(fused, tc.dst, tc.capacity, tc.cp), alice, nil, 1e9)
				res[i] = c.run(call{from: bob, to: self, method: "run", input: input}, false)
			}
			name := fmt.Sprintf("%s %+v", engines[ei].name, tc)
			split, fused := res[0], res[1]
			if fused.Status != split.Status || string(fused.Return) != string(split.Return) {
				t.Fatalf("%s: fused %v %q, split %v %q", name, fused.Status, fused.Reason(), split.Status, split.Reason())
			}
			if fused.Status == types.StatusOK {
				// The split body has one call instruction more.
				if want := split.GasUsed - host.GasHostCall - int64(meter.Cost(wasm.OpCall)); fused.GasUsed != want {
					t.Errorf("%s: gas %d, want %d (input_read + caller - GasHostCall - a call)", name, fused.GasUsed, want)
				}
				continue
			}
			if !errors.Is(fused.Err, host.ErrBadPointer) {
				t.Errorf("%s: %v, want ErrBadPointer", name, fused.Err)
			}
		}
	}
}
