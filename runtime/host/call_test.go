package host_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// relayModule's "run" writes x=1, then by input: 1 byte → abort "boom";
// 2 bytes → trap; 3 bytes → loop forever; ≥ 32 bytes → call "run" of the
// module at input[0:32] with input[32:] and return u32le(code) ‖ the
// call result.
func relayModule() []byte {
	b := New()
	i2, i4 := []wasm.ValType{wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32, wasm.I32}
	inputRead := b.Import("kairos", "input_read", i2, I32s)
	set := b.Import("kairos", "state_set", i4, None)
	abort := b.Import("kairos", "abort", i2, None)
	callF := b.Import("kairos", "call", []wasm.ValType{wasm.I32, wasm.I32, wasm.I32, wasm.I32, wasm.I32, wasm.I64}, I32s)
	result := b.Import("kairos", "call_result", i2, I32s)
	ret := b.Import("kairos", "return_data", i2, None)
	b.Memory(1, 1)
	b.Data(16384, []byte("x1"))
	b.Data(16400, []byte("boom"))
	b.Data(8192, []byte("run"))
	const n = 0 // local: input length
	call := func(f uint32) wasm.Instr { return Idx(wasm.OpCall, f) }
	ifN := func(v int32, then ...wasm.Instr) []wasm.Instr {
		out := []wasm.Instr{Idx(wasm.OpLocalGet, n), I32(v), Op(wasm.OpI32Eq), Block(wasm.OpIf, wasm.BlockEmpty)}
		return append(append(out, then...), Op(wasm.OpEnd))
	}
	body := []wasm.Instr{I32(0), I32(4096), call(inputRead), Idx(wasm.OpLocalSet, n),
		I32(16384), I32(1), I32(16385), I32(1), call(set)}
	body = append(body, ifN(1, I32(16400), I32(4), call(abort))...)
	body = append(body, ifN(2, Op(wasm.OpUnreachable))...)
	body = append(body, ifN(3, Block(wasm.OpLoop, wasm.BlockEmpty), Idx(wasm.OpBr, 0), Op(wasm.OpEnd))...)
	body = append(body,
		Idx(wasm.OpLocalGet, n), I32(32), Op(0x49), Block(wasm.OpIf, wasm.BlockEmpty), Op(wasm.OpReturn), Op(wasm.OpEnd), // n < 32 (unsigned)
		I32(4096),
		I32(0), I32(8192), I32(3), I32(32), Idx(wasm.OpLocalGet, n), I32(32), Op(wasm.OpI32Sub), I64(0), call(callF),
		Mem(wasm.OpI32Store, 2, 0),
		I32(4096), I32(4), I32(4100), I32(1024), call(result), Op(wasm.OpI32Add), call(ret))
	b.Func("run", nil, nil, []wasm.ValType{wasm.I32}, body...)
	return b.Bytes()
}

func chainInput(tail []byte, addrs ...types.Address) []byte {
	var in []byte
	for _, a := range addrs {
		in = append(in, a[:]...)
	}
	return append(in, tail...)
}

// codes decodes the nested results: u32le code ‖ (u32le code ‖ …).
func codes(b []byte) []uint32 {
	var out []uint32
	for len(b) >= 4 {
		out = append(out, binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	return out
}

func TestCall(t *testing.T) {
	r := make([]types.Address, 10)
	for i := range r {
		r[i] = addr(fmt.Sprint("relay", i))
	}
	stopper, nobody, broken := addr("stopper"), addr("nobody"), addr("broken")
	x := []byte("x")
	cases := []struct {
		name   string
		input  []byte
		access []types.Access // nil: every deployed module
		status types.Status
		codes  []uint32
		writes []types.Address // modules whose x was written
	}{
		{"ok", chainInput(nil, r[1]), nil, types.StatusOK, []uint32{host.CallOK}, r[:2]},
		{"depth", chainInput(nil, r[1:9]...), nil, types.StatusOK, []uint32{0, 0, 0, 0, 0, 0, 0, host.CallDepth}, r[:8]},
		{"reentrant", chainInput(nil, r[1], r[0]), nil, types.StatusOK, []uint32{0, host.CallReentrant}, r[:2]},
		{"aborted", chainInput([]byte{1}, r[1]), nil, types.StatusOK, []uint32{host.CallAborted, 0x6d6f6f62}, r[:1]}, // "boom"
		{"trapped", chainInput([]byte{1, 2}, r[1]), nil, types.StatusOK, []uint32{host.CallTrapped}, r[:1]},
		{"out of gas", chainInput([]byte{1, 2, 3}, r[1]), nil, types.StatusOK, []uint32{host.CallOutOfGas}, r[:1]},
		{"no method", chainInput(nil, stopper), nil, types.StatusOK, []uint32{host.CallNoMethod}, r[:1]},
		{"uninstantiable", chainInput(nil, broken), nil, types.StatusOK, []uint32{host.CallTrapped}, r[:1]},
		{"no module", chainInput(nil, nobody), []types.Access{{Module: r[0], Prefix: true, Mode: types.Write}, {Module: nobody, Key: []byte("a"), Mode: types.Read}}, types.StatusOK, []uint32{host.CallNoModule}, r[:1]},
		{"undeclared callee", chainInput(nil, r[1]), []types.Access{{Module: r[0], Prefix: true, Mode: types.Write}}, types.StatusAccessViolation, nil, nil},
		{"violation inside the callee", chainInput(nil, r[1]), []types.Access{{Module: r[0], Prefix: true, Mode: types.Write}, {Module: r[1], Key: []byte("y"), Mode: types.Write}}, types.StatusAccessViolation, nil, nil},
	}
	var gas [2][]string
	for ei := range engines {
		c := newChain(t, ei)
		c.gas = 10_000_000
		for _, a := range r {
			c.deploy(a, relayModule(), alice, nil, 1e9)
		}
		c.deploy(stopper, stopperModule(), alice, nil, 1e9)
		c.eng.deploy(broken, brokenModule())
		for _, tc := range cases {
			c.state = host.MemState{}
			c.access = tc.access
			res := c.run(call{from: alice, to: r[0], method: "run", input: tc.input}, false)
			gas[ei] = append(gas[ei], fmt.Sprint(res.GasUsed, res.Status, res.Reason()))
			if res.Status != tc.status || fmt.Sprint(codes(res.Return)) != fmt.Sprint(tc.codes) {
				t.Errorf("%s/%s: %v %q codes %v, want %v %v", engines[ei].name, tc.name, res.Status, res.Reason(), codes(res.Return), tc.status, tc.codes)
				continue
			}
			if tc.status == types.StatusAccessViolation && !errors.Is(res.Err, host.ErrAccess) {
				t.Errorf("%s/%s: %v", engines[ei].name, tc.name, res.Err)
			}
			var wrote []types.Address
			for _, w := range res.Writes {
				if string(w.Key) == string(x) {
					wrote = append(wrote, w.Module)
				}
			}
			if len(wrote) != len(tc.writes) {
				t.Errorf("%s/%s: writes %d, want %d", engines[ei].name, tc.name, len(wrote), len(tc.writes))
			}
			if tc.name == "out of gas" && (res.GasUsed < c.gas/2 || res.GasUsed >= c.gas) {
				// The callee burned its 63/64; the caller finished with the rest.
				t.Errorf("%s/out of gas: used %d of %d", engines[ei].name, res.GasUsed, c.gas)
			}
		}
	}
	if fmt.Sprint(gas[0]) != fmt.Sprint(gas[1]) {
		t.Errorf("engines differ:\n%v\n%v", gas[0], gas[1])
	}
}

// brokenModule's _initialize traps: no instance of it can be made.
func brokenModule() []byte {
	b := New()
	b.Memory(1, 1)
	b.Func("_initialize", nil, nil, nil, Op(wasm.OpUnreachable))
	b.Func("run", nil, nil, nil)
	return b.Bytes()
}

// TestUninstantiable: a transaction to a module whose _initialize fails
// is trapped with the rule ErrUninstantiable, using no gas, on both
// engines (a nested call to it is the "uninstantiable" case of TestCall).
func TestUninstantiable(t *testing.T) {
	broken := addr("broken")
	for ei := range engines {
		c := newChain(t, ei)
		c.eng.deploy(broken, brokenModule())
		res := c.run(call{from: alice, to: broken, method: "run"}, false)
		if res.Status != types.StatusTrapped || res.Err != host.ErrUninstantiable || res.GasUsed != 0 {
			t.Errorf("%s: %v %v, %d gas", engines[ei].name, res.Status, res.Err, res.GasUsed)
		}
	}
}

// stopperModule has no "run" export.
func stopperModule() []byte {
	b := New()
	b.Memory(1, 1)
	b.Func("other", nil, nil, nil)
	return b.Bytes()
}
