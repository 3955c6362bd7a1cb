package main

import (
	"encoding/binary"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

var (
	self  = guesttest.Addr("counter")
	alice = guesttest.Addr("alice")
)

func deploy(t *testing.T) *guesttest.Chain {
	t.Helper()
	c := guesttest.New()
	if r := c.Deploy(self, guesttest.Module{"increment": increment, "get": get}, alice, nil); r.Status != guesttest.StatusOK {
		t.Fatalf("deploy: %+v", r)
	}
	return c
}

func u64(t *testing.T, b []byte) uint64 {
	t.Helper()
	if len(b) != 8 {
		t.Fatalf("result %x is not a u64", b)
	}
	return binary.BigEndian.Uint64(b)
}

func TestIncrementCounts(t *testing.T) {
	c := deploy(t)
	if r := c.Call(alice, self, "get", nil); r.Status != guesttest.StatusOK || u64(t, r.Return) != 0 {
		t.Fatalf("get on a fresh counter: %+v", r)
	}
	for want := uint64(1); want <= 3; want++ {
		r := c.Call(alice, self, "increment", nil)
		if r.Status != guesttest.StatusOK || u64(t, r.Return) != want {
			t.Fatalf("increment %d: %+v", want, r)
		}
		if len(r.Events) != 1 || r.Events[0].Topic != "incremented" || u64(t, r.Events[0].Data) != want || r.Events[0].Module != self {
			t.Fatalf("increment %d events: %+v", want, r.Events)
		}
	}
	// The key layout is the documented one: u8(len) ‖ "count" ‖ u64.
	if v, ok := c.State(self, []byte("\x05count")); !ok || u64(t, v) != 3 {
		t.Fatalf("stored value %x, %v", v, ok)
	}
}

func TestIncrementOverflowAborts(t *testing.T) {
	c := deploy(t)
	c.SetState(self, []byte("\x05count"), binary.BigEndian.AppendUint64(nil, ^uint64(0)))
	r := c.Call(alice, self, "increment", nil)
	if r.Status != guesttest.StatusAborted || r.Message != "counter: overflow" || len(r.Events) != 0 {
		t.Fatalf("got %+v", r)
	}
}

func TestUnknownMethodTraps(t *testing.T) {
	c := deploy(t)
	if r := c.Call(alice, self, "decrement", nil); r.Status != guesttest.StatusTrapped {
		t.Fatalf("got %+v", r)
	}
}
