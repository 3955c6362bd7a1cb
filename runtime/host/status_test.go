package host_test

import (
	"errors"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

var countKey = []byte("\x05count")

func TestAccessList(t *testing.T) {
	self := addr("counter")
	entry := func(key string, prefix bool, mode types.AccessMode) types.Access {
		return types.Access{Module: self, Key: []byte(key), Prefix: prefix, Mode: mode}
	}
	cases := []struct {
		name   string
		access []types.Access
		method string
		want   types.Status
	}{
		{"nothing declared, read", []types.Access{}, "get", types.StatusAccessViolation},
		{"other module declared", []types.Access{{Module: alice, Prefix: true, Mode: types.Write}}, "get", types.StatusAccessViolation},
		{"exact read", []types.Access{entry("\x05count", false, types.Read)}, "get", types.StatusOK},
		{"prefix read", []types.Access{entry("\x05", true, types.Read)}, "get", types.StatusOK},
		{"other key only", []types.Access{entry("\x05counter", false, types.Write)}, "get", types.StatusAccessViolation},
		{"longer prefix", []types.Access{entry("\x05countx", true, types.Write)}, "get", types.StatusAccessViolation},
		{"write to a read-only entry", []types.Access{entry("\x05count", false, types.Read)}, "increment", types.StatusAccessViolation},
		{"undeclared write", []types.Access{entry("\x05", true, types.Read), entry("\x05other", false, types.Write)}, "increment", types.StatusAccessViolation},
		{"exact write", []types.Access{entry("\x05count", false, types.Write)}, "increment", types.StatusOK},
		{"prefix write", []types.Access{entry("", true, types.Write)}, "increment", types.StatusOK},
	}
	for ei := range engines {
		for _, tc := range cases {
			t.Run(engines[ei].name+"/"+tc.name, func(t *testing.T) {
				c := newChain(t, ei)
				c.deploy(self, contract(t, "counter_wat"), alice, nil, 1e9)
				c.state.Set(self, countKey, u64(7))
				c.access = tc.access
				r := c.run(call{from: alice, to: self, method: tc.method}, false)
				if r.Status != tc.want {
					t.Fatalf("status %v (%s), want %v", r.Status, r.Reason(), tc.want)
				}
				if tc.want == types.StatusAccessViolation {
					if !errors.Is(r.Err, host.ErrAccess) || len(r.Writes) != 0 || len(r.Events) != 0 || r.Return != nil {
						t.Fatalf("violation leaked: %+v", r)
					}
					if r.GasUsed < host.GasHostCall {
						t.Fatalf("gas used %d: the host call was not charged", r.GasUsed)
					}
				}
				if v, _, _ := c.state.Get(self, countKey); string(v) != string(u64(7)) && tc.want != types.StatusOK {
					t.Fatalf("state changed to %x", v)
				}
			})
		}
	}
}

// TestGasSweep runs increment with every gas limit from 0 to what it
// needs: below, out_of_gas with gas used = the limit (many of these stop
// inside a host call, whose charges are most of the cost) and no writes;
// from there on, ok with the same gas used and result.
func TestGasSweep(t *testing.T) {
	self := addr("counter")
	for ei := range engines {
		t.Run(engines[ei].name, func(t *testing.T) {
			c := newChain(t, ei)
			c.deploy(self, contract(t, "counter_wat"), alice, nil, 1e9)
			full := c.run(call{from: alice, to: self, method: "increment"}, false)
			need := full.GasUsed
			if full.Status != types.StatusOK || need < host.GasStateWrite {
				t.Fatalf("reference run: %+v", full)
			}
			c.state = host.MemState{}
			for g := int64(0); g <= need+1; g += 1 + g%13 {
				if g > need-3 {
					g = max(g, need-2)
				}
				c.gas = g
				r := c.run(call{from: alice, to: self, method: "increment"}, false)
				if g < need {
					if r.Status != types.StatusOutOfGas || r.GasUsed != g || len(r.Writes) != 0 || !errors.Is(r.Err, host.ErrOutOfGas) {
						t.Fatalf("gas %d of %d: %+v", g, need, r)
					}
					continue
				}
				if r.Status != types.StatusOK || r.GasUsed != need || string(r.Return) != string(full.Return) {
					t.Fatalf("gas %d of %d: %+v", g, need, r)
				}
			}
		})
	}
}

func TestAbortAndTrap(t *testing.T) {
	b := wasmtest.New()
	abort := b.Import("kairos", "abort", []wasm.ValType{wasm.I32, wasm.I32}, nil)
	b.Memory(1, 1)
	long := make([]byte, host.AbortMsgLenMax+100)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	b.Data(0, long)
	b.Func("abort_long", nil, nil, nil, wasmtest.I32(0), wasmtest.I32(int32(len(long))), wasmtest.Idx(wasm.OpCall, abort))
	b.Func("abort_short", nil, nil, nil, wasmtest.I32(3), wasmtest.I32(4), wasmtest.Idx(wasm.OpCall, abort))
	b.Func("div_zero", nil, nil, nil, wasmtest.I32(1), wasmtest.I32(0), wasmtest.Op(0x6D), wasmtest.Op(wasm.OpDrop))
	b.Func("unreachable", nil, nil, nil, wasmtest.Op(wasm.OpUnreachable))
	b.Func("oob", nil, nil, nil, wasmtest.I32(65535), wasmtest.Mem(wasm.OpI32Load, 2, 0), wasmtest.Op(wasm.OpDrop))
	bin := b.Bytes()
	self := addr("stopper")
	cases := []struct {
		method string
		status types.Status
		reason string
	}{
		{"abort_long", types.StatusAborted, string(long[:host.AbortMsgLenMax])},
		{"abort_short", types.StatusAborted, string(long[3:7])},
		{"div_zero", types.StatusTrapped, ""},
		{"unreachable", types.StatusTrapped, ""},
		{"oob", types.StatusTrapped, ""},
	}
	for ei := range engines {
		c := newChain(t, ei)
		c.deploy(self, bin, alice, nil, 1e9)
		for _, tc := range cases {
			r := c.run(call{from: alice, to: self, method: tc.method}, false)
			if r.Status != tc.status || tc.reason != "" && r.Reason() != tc.reason || r.GasUsed <= 0 {
				t.Errorf("%s %s: %v %q gas %d", engines[ei].name, tc.method, r.Status, r.Reason(), r.GasUsed)
			}
			if tc.status == types.StatusTrapped && !errors.Is(r.Err, host.ErrWasmTrap) {
				t.Errorf("%s %s: %v", engines[ei].name, tc.method, r.Err)
			}
		}
	}
}

// TestOverspendIsOutOfGas: the meter checks gas_left only at function
// entries, loop headers and host calls, so a frame whose if-body costs more
// than is left returns normally with gas_left < 0. For every gas limit the
// frame is ok using at most the limit, or out_of_gas using all of it, and
// a larger limit never turns ok into out_of_gas.
func TestOverspendIsOutOfGas(t *testing.T) {
	b := wasmtest.New()
	body := []wasm.Instr{wasmtest.I32(1), wasmtest.Block(wasm.OpIf, wasm.BlockEmpty)}
	for range 40 {
		body = append(body, wasmtest.I32(1), wasmtest.Op(wasm.OpDrop))
	}
	b.Func("run", nil, nil, nil, append(body, wasmtest.Op(wasm.OpEnd))...)
	bin := b.Bytes()
	self := addr("overspend")
	for ei := range engines {
		c := newChain(t, ei)
		c.deploy(self, bin, alice, nil, 1e9)
		lastOOG := int64(-1)
		for gas := int64(0); gas <= 200; gas++ {
			c.gas = gas
			r := c.run(call{from: alice, to: self, method: "run"}, false)
			switch r.Status {
			case types.StatusOK:
				if r.GasUsed > gas {
					t.Fatalf("%s: gas %d: ok using %d", engines[ei].name, gas, r.GasUsed)
				}
			case types.StatusOutOfGas:
				if r.GasUsed != gas || !errors.Is(r.Err, host.ErrOutOfGas) {
					t.Fatalf("%s: gas %d: out_of_gas using %d (%v)", engines[ei].name, gas, r.GasUsed, r.Err)
				}
				if lastOOG != gas-1 {
					t.Fatalf("%s: out_of_gas at %d after ok at %d", engines[ei].name, gas, gas-1)
				}
				lastOOG = gas
			default:
				t.Fatalf("%s: gas %d: %v", engines[ei].name, gas, r.Status)
			}
		}
		// The limits just below the ok threshold passed the entry check
		// and overspent in the if-body: the case under test happened.
		if lastOOG < 10 || lastOOG >= 200 {
			t.Fatalf("%s: ok from gas %d: the if-body overspend was not exercised", engines[ei].name, lastOOG+1)
		}
	}
}
