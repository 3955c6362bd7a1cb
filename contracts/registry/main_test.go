package main

import (
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

const (
	day        = int64(24 * 3600 * 1e9)
	testPeriod = 30 * day
	t0         = int64(1_800_000_000) * 1e9
)

var (
	self  = guesttest.Addr("registry")
	alice = guesttest.Addr("alice")
	bob   = guesttest.Addr("bob")
)

func deploy(t *testing.T) *guesttest.Chain {
	t.Helper()
	c := guesttest.New()
	c.SetTime(t0)
	m := guesttest.Module{"init": initRegistry, "register": register, "renew": renew, "transfer": transfer, "lookup": lookup}
	if r := c.Deploy(self, m, alice, guest.Encode(guest.Int64Codec, testPeriod)); r.Status != guesttest.StatusOK {
		t.Fatalf("deploy: %+v", r)
	}
	return c
}

func name(n string) []byte { return guest.Encode(guest.StringCodec, n) }

func do(t *testing.T, c *guesttest.Chain, from guest.Address, method string, in []byte, want guesttest.Status, msg string) guesttest.Result {
	t.Helper()
	r := c.Call(from, self, method, in)
	if r.Status != want || (msg != "" && r.Message != msg) {
		t.Fatalf("%s: got %s %q, want %s %q", method, r.Status, r.Message, want, msg)
	}
	return r
}

type entry struct {
	found   bool
	owner   guest.Address
	expires int64
}

func look(t *testing.T, c *guesttest.Chain, n string) entry {
	t.Helper()
	r := do(t, c, bob, "lookup", name(n), guesttest.StatusOK, "")
	d := guest.NewDecoder(r.Return)
	e := entry{d.Bool(), d.Address(), d.Int64()}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRegisterRenewTransferExpire(t *testing.T) {
	c := deploy(t)
	r := do(t, c, alice, "register", name("kairos"), guesttest.StatusOK, "")
	if len(r.Events) != 1 || r.Events[0].Topic != "registered" {
		t.Fatalf("events %+v", r.Events)
	}
	if e := look(t, c, "kairos"); e != (entry{true, alice, t0 + testPeriod}) {
		t.Fatalf("after register: %+v", e)
	}
	c.SetTime(t0 + 10*day)
	do(t, c, alice, "renew", name("kairos"), guesttest.StatusOK, "")
	if e := look(t, c, "kairos"); e.expires != t0+2*testPeriod {
		t.Fatalf("renew extends from the old expiry: %+v", e)
	}
	do(t, c, alice, "transfer", guest.NewEncoder().PutString("kairos").PutAddress(bob).Bytes(), guesttest.StatusOK, "")
	if e := look(t, c, "kairos"); e.owner != bob {
		t.Fatalf("after transfer: %+v", e)
	}
	// Live up to the last nanosecond before expiry, free from it on.
	c.SetTime(t0 + 2*testPeriod - 1)
	if !look(t, c, "kairos").found {
		t.Fatal("expired one nanosecond early")
	}
	c.SetTime(t0 + 2*testPeriod)
	if e := look(t, c, "kairos"); e != (entry{}) {
		t.Fatalf("expired name still found: %+v", e)
	}
	do(t, c, alice, "register", name("kairos"), guesttest.StatusOK, "")
	if e := look(t, c, "kairos"); e != (entry{true, alice, t0 + 3*testPeriod}) {
		t.Fatalf("re-register after expiry: %+v", e)
	}
}

func TestFailures(t *testing.T) {
	transferTo := func(n string, to guest.Address) []byte {
		return guest.NewEncoder().PutString(n).PutAddress(to).Bytes()
	}
	cases := []struct {
		name   string
		at     int64 // time of the call, after "taken" was registered by alice at t0
		from   guest.Address
		method string
		in     []byte
		msg    string
	}{
		{"taken", t0 + day, bob, "register", name("taken"), "registry: name taken"},
		{"bad name", t0, bob, "register", name("Bad_Name"), "registry: bad name"},
		{"empty name", t0, bob, "register", name(""), "registry: bad name"},
		{"long name", t0, bob, "register", name(string(make([]byte, NameLenMax+1))), "registry: bad name"},
		{"renew not owner", t0, bob, "renew", name("taken"), "registry: not the owner"},
		{"renew expired", t0 + testPeriod, alice, "renew", name("taken"), "registry: name not registered or expired"},
		{"renew unknown", t0, alice, "renew", name("free"), "registry: name not registered or expired"},
		{"transfer not owner", t0, bob, "transfer", transferTo("taken", bob), "registry: not the owner"},
		{"transfer expired", t0 + testPeriod + 1, alice, "transfer", transferTo("taken", bob), "registry: name not registered or expired"},
		{"short input", t0, bob, "lookup", []byte{0, 0}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := deploy(t)
			do(t, c, alice, "register", name("taken"), guesttest.StatusOK, "")
			c.SetTime(tc.at)
			r := do(t, c, tc.from, tc.method, tc.in, guesttest.StatusAborted, tc.msg)
			if len(r.Events) != 0 {
				t.Fatalf("failed call emitted %+v", r.Events)
			}
			c.SetTime(t0)
			if e := look(t, c, "taken"); e != (entry{true, alice, t0 + testPeriod}) {
				t.Fatalf("failed call changed the record: %+v", e)
			}
		})
	}
}

func TestInitRejectsBadPeriod(t *testing.T) {
	for _, p := range []int64{0, -1} {
		c := guesttest.New()
		r := c.Deploy(self, guesttest.Module{"init": initRegistry}, alice, guest.Encode(guest.Int64Codec, p))
		if r.Status != guesttest.StatusAborted {
			t.Fatalf("testPeriod %d: %+v", p, r)
		}
		if got := c.Call(alice, self, "lookup", name("x")); got.Status != guesttest.StatusTrapped {
			t.Fatalf("a failed deploy left a module behind: %+v", got)
		}
	}
}

func TestExpiryOverflowAborts(t *testing.T) {
	c := deploy(t)
	c.SetTime(int64(^uint64(0)>>1) - testPeriod + 1)
	do(t, c, alice, "register", name("late"), guesttest.StatusAborted, "registry: expiry overflow")
}
