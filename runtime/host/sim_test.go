package host_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// scanModule's "scan" writes ab1, deletes ab2, opens an iterator over
// "ab", writes abz (after the open: not seen), returns key ‖ value of
// every entry, then reads k.
func scanModule() []byte {
	b := New()
	i2, i3, i4 := []wasm.ValType{wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32, wasm.I32}
	open := b.Import("kairos", "state_iter_open", i2, I32s)
	next := b.Import("kairos", "state_iter_next", I32s, I32s)
	key := b.Import("kairos", "state_iter_key", i3, I32s)
	val := b.Import("kairos", "state_iter_value", i3, I32s)
	set := b.Import("kairos", "state_set", i4, None)
	del := b.Import("kairos", "state_delete", i2, None)
	get := b.Import("kairos", "state_get", i4, I32s)
	ret := b.Import("kairos", "return_data", i2, None)
	b.Memory(1, 1)
	b.Data(0, []byte("ab"))
	b.Data(8, []byte("abz"))
	b.Data(16, []byte("k"))
	b.Data(24, []byte("ab1x"))
	b.Data(32, []byte("ab2"))
	const h, out = 0, 1 // locals
	call := func(f uint32) wasm.Instr { return Idx(wasm.OpCall, f) }
	b.Func("scan", nil, nil, []wasm.ValType{wasm.I32, wasm.I32},
		I32(24), I32(3), I32(27), I32(1), call(set),
		I32(32), I32(3), call(del),
		I32(0), I32(2), call(open), Idx(wasm.OpLocalSet, h),
		I32(8), I32(3), I32(8), I32(3), call(set),
		I32(1024), Idx(wasm.OpLocalSet, out),
		Block(wasm.OpBlock, wasm.BlockEmpty), Block(wasm.OpLoop, wasm.BlockEmpty),
		Idx(wasm.OpLocalGet, h), call(next), Op(wasm.OpI32Eqz), Idx(wasm.OpBrIf, 1),
		Idx(wasm.OpLocalGet, out), Idx(wasm.OpLocalGet, h), Idx(wasm.OpLocalGet, out), I32(64), call(key), Op(wasm.OpI32Add), Idx(wasm.OpLocalSet, out),
		Idx(wasm.OpLocalGet, out), Idx(wasm.OpLocalGet, h), Idx(wasm.OpLocalGet, out), I32(64), call(val), Op(wasm.OpI32Add), Idx(wasm.OpLocalSet, out),
		Idx(wasm.OpBr, 0), Op(wasm.OpEnd), Op(wasm.OpEnd),
		I32(1024), Idx(wasm.OpLocalGet, out), I32(1024), Op(wasm.OpI32Sub), call(ret),
		I32(16), I32(1), I32(2048), I32(8), call(get), Op(wasm.OpDrop),
	)
	return b.Bytes()
}

func TestIterationSnapshotAndSimulation(t *testing.T) {
	self := addr("scanner")
	acc := func(key string, prefix bool, mode types.AccessMode) types.Access {
		return types.Access{Module: self, Key: []byte(key), Prefix: prefix, Mode: mode}
	}
	// Recorded by hand from what scan does; sorted by key, exact before
	// prefix.
	wantAccess := []types.Access{acc("ab", true, types.Read), acc("ab1", false, types.Write), acc("ab2", false, types.Write), acc("abz", false, types.Write), acc("k", false, types.Read)}
	for ei := range engines {
		t.Run(engines[ei].name, func(t *testing.T) {
			c := newChain(t, ei)
			c.deploy(self, scanModule(), alice, nil, 1e9)
			for k, v := range map[string]string{"aa": "0", "ab": "1", "ab2": "2", "ab3": "3", "ac": "4", "k": "5"} {
				c.state.Set(self, []byte(k), []byte(v))
			}
			c.sim = true
			sim := c.run(call{from: alice, to: self, method: "scan"}, false)
			if sim.Status != types.StatusOK || string(sim.Return) != "ab1ab1xab33" {
				t.Fatalf("scan: %+v %q", sim, sim.Return)
			}
			if fmt.Sprint(sim.Accessed) != fmt.Sprint(wantAccess) {
				t.Fatalf("recorded %v\nwant     %v", sim.Accessed, wantAccess)
			}
			// Executing with the recorded list gives the simulated result
			// and gas; without any one entry it is an access violation.
			c.sim = false
			c.access = sim.Accessed
			if r := c.run(call{from: alice, to: self, method: "scan"}, false); fmt.Sprint(r) != fmt.Sprint(host.Result{Status: r.Status, Return: sim.Return, GasUsed: sim.GasUsed, Writes: sim.Writes}) {
				t.Fatalf("executed %+v\nsimulated %+v", r, sim)
			}
			for i := range sim.Accessed {
				c.access = append(append([]types.Access{}, sim.Accessed[:i]...), sim.Accessed[i+1:]...)
				if r := c.run(call{from: alice, to: self, method: "scan"}, false); r.Status != types.StatusAccessViolation || !errors.Is(r.Err, host.ErrAccess) {
					t.Fatalf("without %v: %v %s", sim.Accessed[i], r.Status, r.Reason())
				}
			}
			// An exact entry does not cover an iteration prefix.
			c.access = append([]types.Access{acc("ab", false, types.Write)}, sim.Accessed[1:]...)
			if r := c.run(call{from: alice, to: self, method: "scan"}, false); r.Status != types.StatusAccessViolation {
				t.Fatalf("exact entry for a prefix: %v %s", r.Status, r.Reason())
			}
		})
	}
}

// Simulating caller.bump (two calls into counter) records exactly the
// keys both modules touch; executing with that list gives the simulated
// outcome, and dropping any entry is an access violation.
func TestSimulateCrossModule(t *testing.T) {
	caller, counter := addr("caller"), addr("counter")
	c := newChain(t, 0)
	c.deploy(counter, contract(t, "counter"), alice, nil, 1e9)
	c.deploy(caller, contract(t, "caller"), alice, counter[:], 1e9)
	c.sim = true
	sim := c.run(call{from: bob, to: caller, method: "bump"}, false)
	want := []types.Access{{Module: caller, Key: []byte("\x06target"), Mode: types.Read}, {Module: counter, Key: countKey, Mode: types.Write}}
	if bytes.Compare(caller[:], counter[:]) > 0 {
		want[0], want[1] = want[1], want[0]
	}
	if sim.Status != types.StatusOK || fmt.Sprint(sim.Accessed) != fmt.Sprint(want) {
		t.Fatalf("simulated %v %s, recorded %v\nwant %v", sim.Status, sim.Reason(), sim.Accessed, want)
	}
	c.sim = false
	c.access = sim.Accessed
	if r := c.run(call{from: bob, to: caller, method: "bump"}, false); r.Status != types.StatusOK || r.GasUsed != sim.GasUsed || string(r.Return) != string(sim.Return) {
		t.Fatalf("executed %+v\nsimulated %+v", r, sim)
	}
	for i := range sim.Accessed {
		c.access = append(append([]types.Access{}, sim.Accessed[:i]...), sim.Accessed[i+1:]...)
		if r := c.run(call{from: bob, to: caller, method: "bump"}, false); r.Status != types.StatusAccessViolation {
			t.Fatalf("without %v: %v %s", sim.Accessed[i], r.Status, r.Reason())
		}
	}
}
