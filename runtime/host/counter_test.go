package host_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

var (
	alice = addr("alice")
	bob   = addr("bob")
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func TestWATCounter(t *testing.T) {
	for ei := range engines {
		t.Run(engines[ei].name, func(t *testing.T) {
			c := newChain(t, ei)
			self := addr("counter")
			c.deploy(self, contract(t, "counter_wat"), alice, nil, 1e9)
			for want := uint64(1); want <= 3; want++ {
				r := c.run(call{from: alice, to: self, method: "increment"}, false)
				if r.Status != types.StatusOK || string(r.Return) != string(u64(want)) {
					t.Fatalf("increment %d: %+v", want, r)
				}
				if len(r.Events) != 1 || r.Events[0].Topic != "incremented" || string(r.Events[0].Data) != string(u64(want)) || r.Events[0].Module != self {
					t.Fatalf("events: %+v", r.Events)
				}
				if len(r.Writes) != 1 || string(r.Writes[0].Key) != "\x05count" || string(r.Writes[0].Value) != string(u64(want)) {
					t.Fatalf("writes: %+v", r.Writes)
				}
			}
			r := c.run(call{from: alice, to: self, method: "get"}, false)
			if r.Status != types.StatusOK || string(r.Return) != string(u64(3)) || len(r.Writes) != 0 {
				t.Fatalf("get: %+v", r)
			}
			for _, m := range []string{"nope", "init", "memory", "gas_left", "_initialize", "Get"} {
				if r := c.run(call{from: alice, to: self, method: m}, false); r.Status != types.StatusTrapped || !errors.Is(r.Err, host.ErrNoMethod) {
					t.Fatalf("method %q: %+v", m, r)
				}
			}
			if r := c.run(call{from: alice, to: addr("nobody"), method: "get"}, false); r.Status != types.StatusTrapped || !errors.Is(r.Err, host.ErrNoModule) {
				t.Fatalf("no module: %+v", r)
			}
		})
	}
}

// The WAT and the Go counter are the same module (docs/abi.md section 9):
// same results, events and writes for the same calls, on both engines.
// Gas differs (different code), so it is not compared.
func TestWATAndGoCounterAgree(t *testing.T) {
	for ei := range engines {
		t.Run(engines[ei].name, func(t *testing.T) {
			wat, goc := newChain(t, ei), newChain(t, ei)
			self := addr("counter")
			wat.deploy(self, contract(t, "counter_wat"), alice, nil, 1e9)
			goc.deploy(self, contract(t, "counter"), alice, nil, 1e9)
			for i, m := range []string{"get", "increment", "increment", "get", "increment"} {
				a := wat.run(call{from: alice, to: self, method: m}, false)
				b := goc.run(call{from: alice, to: self, method: m}, false)
				if !sameOutcome(a, b) {
					t.Fatalf("call %d %s:\nwat %+v\ngo  %+v", i, m, a, b)
				}
			}
			wat.state.Set(self, []byte("\x05count"), u64(^uint64(0)))
			goc.state.Set(self, []byte("\x05count"), u64(^uint64(0)))
			a := wat.run(call{from: alice, to: self, method: "increment"}, false)
			b := goc.run(call{from: alice, to: self, method: "increment"}, false)
			if a.Status != types.StatusAborted || a.Reason() != "counter: overflow" || !sameOutcome(a, b) {
				t.Fatalf("overflow:\nwat %+v\ngo  %+v", a, b)
			}
		})
	}
}

// sameOutcome compares everything but gas.
func sameOutcome(a, b host.Result) bool {
	return a.Status == b.Status && a.Reason() == b.Reason() && string(a.Return) == string(b.Return) &&
		fmt.Sprint(a.Events) == fmt.Sprint(b.Events) && fmt.Sprint(a.Writes) == fmt.Sprint(b.Writes)
}
