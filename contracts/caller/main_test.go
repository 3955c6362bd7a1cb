package main

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

var (
	self        = guesttest.Addr("caller")
	counterAddr = guesttest.Addr("counter")
	alice       = guesttest.Addr("alice")
)

// A stand-in for contracts/counter (a package main cannot be imported),
// with the same state key and results, plus methods that fail on purpose.
var fakeCounter = guesttest.Module{
	"increment": func() {
		n := guest.NewValue("count", guest.Uint64Codec)
		v := n.GetOr(0) + 1
		n.Set(v)
		guest.Emit("incremented", guest.Encode(guest.Uint64Codec, v))
		guest.Return(guest.Encode(guest.Uint64Codec, v))
	},
	"refuse": func() {
		guest.NewValue("count", guest.Uint64Codec).Set(99)
		guest.Abort("counter: refused")
	},
	"crash": func() {
		guest.NewValue("count", guest.Uint64Codec).Set(99)
		var m map[string]int
		m["x"] = 1 // a Go panic: the callee traps
	},
	// Calling back into the caller, which is on the stack, is refused.
	"recurse": func() {
		_, err := guest.Call(self, "try_call", guest.Encode(guest.StringCodec, "increment"), 0)
		var ce *guest.CallError
		if !errors.As(err, &ce) {
			guest.Abort("reentrant call succeeded")
		}
		guest.Return([]byte{byte(ce.Code)})
	},
}

func deploy(t *testing.T, counterModule guesttest.Module) *guesttest.Chain {
	t.Helper()
	c := guesttest.New()
	if counterModule != nil {
		if r := c.Deploy(counterAddr, counterModule, alice, nil); r.Status != guesttest.StatusOK {
			t.Fatal(r)
		}
	}
	m := guesttest.Module{"init": initCaller, "bump": bump, "try_call": tryCall}
	if r := c.Deploy(self, m, alice, counterAddr[:]); r.Status != guesttest.StatusOK {
		t.Fatalf("deploy: %+v", r)
	}
	return c
}

func count(c *guesttest.Chain) uint64 {
	v, ok := c.State(counterAddr, []byte("\x05count"))
	if !ok {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func TestBumpCallsTwice(t *testing.T) {
	c := deploy(t, fakeCounter)
	for want := uint64(2); want <= 4; want += 2 {
		r := c.Call(alice, self, "bump", nil)
		if r.Status != guesttest.StatusOK || binary.BigEndian.Uint64(r.Return) != want || count(c) != want {
			t.Fatalf("bump: %+v, count %d", r, count(c))
		}
		// Events of both frames, in emission order, each naming its module.
		if len(r.Events) != 3 || r.Events[0].Module != counterAddr || r.Events[2].Module != self || r.Events[2].Topic != "bumped" {
			t.Fatalf("events %+v", r.Events)
		}
	}
}

func TestBumpWithoutCounterAborts(t *testing.T) {
	c := deploy(t, nil)
	r := c.Call(alice, self, "bump", nil)
	if r.Status != guesttest.StatusAborted || r.Message != "caller: increment failed: guest: no module at address" {
		t.Fatalf("got %+v", r)
	}
}

func TestTryCallCodes(t *testing.T) {
	cases := []struct {
		method string
		code   uint32
		result string
		count  uint64
	}{
		{"increment", guest.CallOK, "\x00\x00\x00\x00\x00\x00\x00\x01", 1},
		{"refuse", guest.CallAborted, "counter: refused", 0},
		{"crash", guest.CallTrapped, "", 0},
		{"missing", guest.CallNoMethod, "", 0},
		{"init", guest.CallNoMethod, "", 0},
		{"Bad-Name", guest.CallNoMethod, "", 0},
		{"recurse", guest.CallOK, "\x07", 0},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			c := deploy(t, fakeCounter)
			r := c.Call(alice, self, "try_call", guest.Encode(guest.StringCodec, tc.method))
			if r.Status != guesttest.StatusOK {
				t.Fatalf("try_call: %+v", r)
			}
			d := guest.NewDecoder(r.Return)
			code, res := d.Uint32(), d.Bytes()
			if err := d.End(); err != nil || code != tc.code || string(res) != tc.result {
				t.Fatalf("code %d result %q (%v), want %d %q", code, res, err, tc.code, tc.result)
			}
			if count(c) != tc.count {
				t.Fatalf("counter %d, want %d: a failed callee's writes must be discarded", count(c), tc.count)
			}
			if v, _ := c.State(self, []byte("\x05tries")); binary.BigEndian.Uint64(v) != 1 {
				t.Fatal("the caller's own write was lost")
			}
		})
	}
}
