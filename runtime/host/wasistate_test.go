package host_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// wasiModule's "run" calls "run" of the module at input[0:32] twice (when
// the input has 32 bytes), then reads 16 random bytes and the clock, and
// returns them ‖ the two callees' 24 bytes each.
func wasiModule() []byte {
	b := New()
	i2 := []wasm.ValType{wasm.I32, wasm.I32}
	inputRead := b.Import("kairos", "input_read", i2, I32s)
	callF := b.Import("kairos", "call", []wasm.ValType{wasm.I32, wasm.I32, wasm.I32, wasm.I32, wasm.I32, wasm.I64}, I32s)
	result := b.Import("kairos", "call_result", i2, I32s)
	ret := b.Import("kairos", "return_data", i2, None)
	random := b.Import(wasi.ModuleName, "random_get", i2, I32s)
	clock := b.Import(wasi.ModuleName, "clock_time_get", []wasm.ValType{wasm.I32, wasm.I64, wasm.I32}, I32s)
	b.Memory(1, 1)
	b.Data(8192, []byte("run"))
	call := func(f uint32) wasm.Instr { return Idx(wasm.OpCall, f) }
	callee := func(at int32) []wasm.Instr {
		return []wasm.Instr{
			I32(4096), I32(8192), I32(3), I32(0), I32(0), I64(0), call(callF), Op(wasm.OpDrop),
			I32(at), I32(24), call(result), Op(wasm.OpDrop)}
	}
	body := []wasm.Instr{I32(4096), I32(64), call(inputRead), I32(32), Op(wasm.OpI32Eq), Block(wasm.OpIf, wasm.BlockEmpty)}
	body = append(body, callee(24)...)
	body = append(body, callee(48)...)
	body = append(body, Op(wasm.OpEnd),
		I32(0), I32(16), call(random), Op(wasm.OpDrop),
		I32(0), I64(0), I32(16), call(clock), Op(wasm.OpDrop),
		I32(0), I32(72), call(ret))
	b.Func("run", nil, nil, nil, body...)
	return b.Bytes()
}

// TestFrameWASIState: every frame of a transaction reads the WASI state of
// docs/abi.md section 8, wasi.FrameState(tx id, frame index, tx time), the
// frame index counting the transaction's frames as they start — also for
// two callees run one after the other at the same depth (the host builds
// the state at a frame's first WASI call and must not keep the last one).
func TestFrameWASIState(t *testing.T) {
	caller, callee := addr("wasi-caller"), addr("wasi-callee")
	const txTime = 7e9
	for ei := range engines {
		c := newChain(t, ei)
		c.deploy(caller, wasiModule(), alice, nil, 1e9)
		c.deploy(callee, wasiModule(), alice, nil, 1e9)
		input := callee[:]
		res := c.run(call{from: alice, to: caller, method: "run", input: input, time: txTime}, false)
		if res.Status != types.StatusOK {
			t.Fatalf("%s: %v %s", engines[ei].name, res.Status, res.Reason())
		}
		id := sha256.Sum256(append([]byte("run"), input...)) // chain.run's tx id
		var want []byte
		for _, frame := range []uint32{0, 1, 2} {
			st := wasi.FrameState(id, frame, txTime)
			blk := wasi.RandomBlock(&st.Seed, 0)
			want = append(want, blk[:16]...)
			want = binary.LittleEndian.AppendUint64(want, uint64(txTime+wasi.ClockStep))
		}
		if !bytes.Equal(res.Return, want) {
			t.Errorf("%s: frames read\n%x, want\n%x", engines[ei].name, res.Return, want)
		}
	}
}
