package enginetest

import (
	"bytes"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// hostWriter is a guest into whose memory every kairos function that
// writes guest memory writes, each across a page edge where it can:
// "w" reads its input, a state value, the caller and its own address, a
// hash, a callee's result and an iterated key and value, each in pages of
// its own (so a missing mark is not hidden by a neighbour's); "sum" returns a
// hash of all its memory, and so does "w" after its writes.
func hostWriter() []byte {
	i32, i64 := wasm.I32, wasm.I64
	b := New()
	imp := func(name string, params, results []wasm.ValType) uint32 {
		return b.Import(host.ModuleName, name, params, results)
	}
	inputRead := imp("input_read", []wasm.ValType{i32, i32}, I32s)
	stateGet := imp("state_get", []wasm.ValType{i32, i32, i32, i32}, I32s)
	callerF := imp("caller", I32s, nil)
	self := imp("self_address", I32s, nil)
	sha := imp("sha256", []wasm.ValType{i32, i32, i32}, nil)
	call := imp("call", []wasm.ValType{i32, i32, i32, i32, i32, i64}, I32s)
	callResult := imp("call_result", []wasm.ValType{i32, i32}, I32s)
	iterOpen := imp("state_iter_open", []wasm.ValType{i32, i32}, I32s)
	iterNext := imp("state_iter_next", I32s, I32s)
	iterKey := imp("state_iter_key", []wasm.ValType{i32, i32, i32}, I32s)
	iterValue := imp("state_iter_value", []wasm.ValType{i32, i32, i32}, I32s)
	returnData := imp("return_data", []wasm.ValType{i32, i32}, nil)
	const size = 2 << 16
	b.Memory(2, 2)
	b.Data(0, []byte("k"))
	b.Data(64, counterWAT[:])
	b.Data(96, []byte("increment"))
	page := func(p, off int32) wasm.Instr { return I32(p<<12 + off) }
	drop := Op(wasm.OpDrop)
	// hash returns h = h*31 + word over every i64 of memory.
	hash := b.Func("", nil, []wasm.ValType{i64}, []wasm.ValType{i32, i64},
		Block(wasm.OpLoop, wasm.BlockEmpty),
		Idx(wasm.OpLocalGet, 1), I64(31), Op(wasm.OpI64Mul), Idx(wasm.OpLocalGet, 0), Mem(wasm.OpI64Load, 3, 0), Op(wasm.OpI64Add), Idx(wasm.OpLocalSet, 1),
		Idx(wasm.OpLocalGet, 0), I32(8), Op(wasm.OpI32Add), Idx(wasm.OpLocalTee, 0),
		I32(size), Op(0x49 /* i32.lt_u */), Idx(wasm.OpBrIf, 0),
		Op(wasm.OpEnd),
		Idx(wasm.OpLocalGet, 1))
	// returnHash returns the hash (written over memory's last 8 bytes).
	returnHash := []wasm.Instr{I32(size - 8), Idx(wasm.OpCall, hash), Mem(wasm.OpI64Store, 3, 0), I32(size - 8), I32(8), Idx(wasm.OpCall, returnData)}
	b.Func("w", nil, nil, []wasm.ValType{i32}, append([]wasm.Instr{
		page(1, 10), I32(200), Idx(wasm.OpCall, inputRead), drop,
		I32(0), I32(1), page(3, 4090), I32(100), Idx(wasm.OpCall, stateGet), drop,
		page(6, 4080), Idx(wasm.OpCall, callerF),
		page(9, 0), Idx(wasm.OpCall, self),
		I32(0), I32(16), page(11, 4070), Idx(wasm.OpCall, sha),
		I32(64), I32(96), I32(9), I32(0), I32(0), I64(1_000_000), Idx(wasm.OpCall, call), drop,
		page(14, 4093), I32(50), Idx(wasm.OpCall, callResult), drop,
		I32(0), I32(1), Idx(wasm.OpCall, iterOpen), Idx(wasm.OpLocalTee, 0), Idx(wasm.OpCall, iterNext), drop,
		Idx(wasm.OpLocalGet, 0), page(17, 4095), I32(10), Idx(wasm.OpCall, iterKey), drop,
		Idx(wasm.OpLocalGet, 0), page(20, 0), I32(10), Idx(wasm.OpCall, iterValue), drop,
	}, returnHash...)...)
	b.Func("sum", nil, nil, nil, returnHash...)
	return b.Bytes()
}

// TestHostWritesAreRestored: after "w" (every host write; its hash shows
// it changed memory), "sum" on the pooled instance that ran it sees the
// memory of a fresh instance, on both engines.
func TestHostWritesAreRestored(t *testing.T) {
	writer := addr("hostwriter")
	bin := hostWriter()
	input := bytes.Repeat([]byte{0xEE}, 200)
	var want []byte
	for _, c := range configs {
		ch := newChain(t, c)
		ch.deploy(counterWAT, contract(t, "counter_wat"), alice, nil)
		ch.deploy(writer, bin, alice, nil)
		ch.state.Apply([]host.Write{{Module: writer, Key: []byte("k"), Value: bytes.Repeat([]byte{0xDD}, 100)}})
		sum := func() []byte {
			r := ch.run(tx{from: alice, to: writer, method: "sum"}, false, false)
			if r.Status != types.StatusOK {
				t.Fatalf("%s: sum: %s", c.name, record(r))
			}
			return r.Return
		}
		if want == nil {
			want = sum()
		}
		for round := range 3 {
			if got := sum(); !bytes.Equal(got, want) {
				t.Fatalf("%s round %d: sum %x, fresh %x", c.name, round, got, want)
			}
			if r := ch.run(tx{from: bob, to: writer, method: "w", input: input}, false, false); r.Status != types.StatusOK || bytes.Equal(r.Return, want) {
				t.Fatalf("%s: w changed nothing or failed: %s", c.name, record(r))
			}
		}
	}
}
