package main

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

var (
	self     = guesttest.Addr("token")
	deployer = guesttest.Addr("admin")
	alice    = guesttest.Addr("alice")
	bob      = guesttest.Addr("bob")
	carol    = guesttest.Addr("carol")
)

var methods = guesttest.Module{
	"init": initToken, "mint": mint, "transfer": transfer, "approve": approve,
	"transfer_from": transferFrom, "balance": balance, "allowance": allowance, "total_supply": totalSupply,
}

func deploy(t *testing.T) *guesttest.Chain {
	t.Helper()
	c := guesttest.New()
	if r := c.Deploy(self, methods, deployer, nil); r.Status != guesttest.StatusOK {
		t.Fatalf("deploy: %+v", r)
	}
	return c
}

func enc() *guest.Encoder { return guest.NewEncoder() }

func call(t *testing.T, c *guesttest.Chain, from guest.Address, method string, in *guest.Encoder) guesttest.Result {
	t.Helper()
	return c.Call(from, self, method, in.Bytes())
}

func mustOK(t *testing.T, r guesttest.Result) guesttest.Result {
	t.Helper()
	if r.Status != guesttest.StatusOK {
		t.Fatalf("status %s: %s", r.Status, r.Message)
	}
	return r
}

func query(t *testing.T, c *guesttest.Chain, method string, in *guest.Encoder) uint64 {
	t.Helper()
	r := mustOK(t, call(t, c, alice, method, in))
	if len(r.Return) != 8 {
		t.Fatalf("%s returned %x", method, r.Return)
	}
	return binary.BigEndian.Uint64(r.Return)
}

func bal(t *testing.T, c *guesttest.Chain, who guest.Address) uint64 {
	return query(t, c, "balance", enc().PutAddress(who))
}

func TestMintTransferApprove(t *testing.T) {
	c := deploy(t)
	r := mustOK(t, call(t, c, deployer, "mint", enc().PutAddress(alice).PutUint64(100)))
	if len(r.Events) != 1 || r.Events[0].Topic != "mint" {
		t.Fatalf("mint events %+v", r.Events)
	}
	r = mustOK(t, call(t, c, alice, "transfer", enc().PutAddress(bob).PutUint64(30)))
	want := enc().PutAddress(alice).PutAddress(bob).PutUint64(30).Bytes()
	if len(r.Events) != 1 || r.Events[0].Topic != "transfer" || string(r.Events[0].Data) != string(want) {
		t.Fatalf("transfer events %+v", r.Events)
	}
	mustOK(t, call(t, c, alice, "approve", enc().PutAddress(carol).PutUint64(50)))
	if got := query(t, c, "allowance", enc().PutAddress(alice).PutAddress(carol)); got != 50 {
		t.Fatalf("allowance %d", got)
	}
	mustOK(t, call(t, c, carol, "transfer_from", enc().PutAddress(alice).PutAddress(carol).PutUint64(20)))
	for _, x := range []struct {
		who  guest.Address
		want uint64
	}{{alice, 50}, {bob, 30}, {carol, 20}} {
		if got := bal(t, c, x.who); got != x.want {
			t.Errorf("balance %s = %d, want %d", x.who, got, x.want)
		}
	}
	if got := query(t, c, "allowance", enc().PutAddress(alice).PutAddress(carol)); got != 30 {
		t.Fatalf("allowance after spend %d", got)
	}
	if got := query(t, c, "total_supply", enc()); got != 100 {
		t.Fatalf("supply %d", got)
	}
}

func TestFailuresAbortAndChangeNothing(t *testing.T) {
	max := ^uint64(0)
	cases := []struct {
		name   string
		from   guest.Address
		method string
		in     *guest.Encoder
		status guesttest.Status
		msg    string
	}{
		{"not admin", alice, "mint", enc().PutAddress(alice).PutUint64(1), guesttest.StatusAborted, "token: not admin"},
		{"supply overflow", deployer, "mint", enc().PutAddress(bob).PutUint64(max), guesttest.StatusAborted, "token: supply overflow"},
		{"insufficient balance", alice, "transfer", enc().PutAddress(bob).PutUint64(101), guesttest.StatusAborted, "token: insufficient balance"},
		{"empty account", bob, "transfer", enc().PutAddress(alice).PutUint64(1), guesttest.StatusAborted, "token: insufficient balance"},
		{"no allowance", bob, "transfer_from", enc().PutAddress(alice).PutAddress(bob).PutUint64(1), guesttest.StatusAborted, "token: allowance exceeded"},
		{"allowance exceeded", carol, "transfer_from", enc().PutAddress(alice).PutAddress(carol).PutUint64(11), guesttest.StatusAborted, "token: allowance exceeded"},
		{"short input", alice, "transfer", enc().PutAddress(bob), guesttest.StatusAborted, ""},
		{"trailing input", alice, "balance", enc().PutAddress(bob).PutBool(true), guesttest.StatusAborted, ""},
		{"init again", deployer, "init", enc(), guesttest.StatusTrapped, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := deploy(t)
			mustOK(t, call(t, c, deployer, "mint", enc().PutAddress(alice).PutUint64(100)))
			mustOK(t, call(t, c, alice, "approve", enc().PutAddress(carol).PutUint64(10)))
			r := call(t, c, tc.from, tc.method, tc.in)
			if r.Status != tc.status || (tc.msg != "" && r.Message != tc.msg) || len(r.Events) != 0 {
				t.Fatalf("got %s %q %v, want %s %q", r.Status, r.Message, r.Events, tc.status, tc.msg)
			}
			if bal(t, c, alice) != 100 || bal(t, c, bob) != 0 || query(t, c, "total_supply", enc()) != 100 {
				t.Fatal("a failed call changed balances")
			}
		})
	}
}

// TestAgainstModel runs random operations on the module and on a plain Go
// model of the same rules and compares every result and every balance.
func TestAgainstModel(t *testing.T) {
	users := []guest.Address{deployer, alice, bob, carol}
	rng := rand.New(rand.NewPCG(1, 2))
	c := deploy(t)
	bals := map[guest.Address]uint64{}
	allow := map[[2]guest.Address]uint64{}
	var supply uint64
	for i := 0; i < 2000; i++ {
		from, a, b := users[rng.IntN(4)], users[rng.IntN(4)], users[rng.IntN(4)]
		amt := rng.Uint64N(60)
		var r guesttest.Result
		var okWant bool
		switch rng.IntN(4) {
		case 0:
			r = call(t, c, from, "mint", enc().PutAddress(a).PutUint64(amt))
			if okWant = from == deployer; okWant {
				supply += amt
				bals[a] += amt
			}
		case 1:
			r = call(t, c, from, "transfer", enc().PutAddress(a).PutUint64(amt))
			if okWant = bals[from] >= amt; okWant {
				bals[from] -= amt
				bals[a] += amt
			}
		case 2:
			r = call(t, c, from, "approve", enc().PutAddress(a).PutUint64(amt))
			okWant = true
			allow[[2]guest.Address{from, a}] = amt
		case 3:
			r = call(t, c, from, "transfer_from", enc().PutAddress(a).PutAddress(b).PutUint64(amt))
			k := [2]guest.Address{a, from}
			if okWant = allow[k] >= amt && bals[a] >= amt; okWant {
				allow[k] -= amt
				bals[a] -= amt
				bals[b] += amt
			}
		}
		if (r.Status == guesttest.StatusOK) != okWant {
			t.Fatalf("op %d: status %s %q, model expects ok=%v", i, r.Status, r.Message, okWant)
		}
	}
	var sum uint64
	for _, u := range users {
		if got := bal(t, c, u); got != bals[u] {
			t.Errorf("balance %s = %d, model %d", u, got, bals[u])
		}
		sum += bals[u]
		for _, v := range users {
			if got := query(t, c, "allowance", enc().PutAddress(u).PutAddress(v)); got != allow[[2]guest.Address{u, v}] {
				t.Errorf("allowance %s→%s = %d, model %d", u, v, got, allow[[2]guest.Address{u, v}])
			}
		}
	}
	if got := query(t, c, "total_supply", enc()); got != supply || sum != supply {
		t.Errorf("supply %d, model %d, sum of balances %d", got, supply, sum)
	}
}
