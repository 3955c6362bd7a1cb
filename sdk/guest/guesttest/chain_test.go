//go:build !wasip1

package guesttest

import (
	"strconv"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

var (
	alice = Addr("alice")
	modA  = Addr("a")
)

// chainWith deploys one module whose method "run" calls fn.
func chainWith(fn func()) *Chain {
	c := New()
	c.Deploy(modA, Module{"run": fn}, alice, nil)
	return c
}

func TestFailureDiscardsWritesAndEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func()
		want Status
	}{
		{"abort", func() { guest.Abort("stop") }, StatusAborted},
		{"go panic", func() { panic("boom") }, StatusTrapped},
		{"host rule", func() { abi.StateSet(nil, nil) }, StatusTrapped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := chainWith(func() {
				guest.StateSet([]byte("k"), []byte("v"))
				guest.Emit("e", nil)
				tc.end()
			})
			r := c.Call(alice, modA, "run", nil)
			if r.Status != tc.want || len(r.Events) != 0 || r.Return != nil {
				t.Fatalf("got %+v", r)
			}
			if _, ok := c.State(modA, []byte("k")); ok {
				t.Fatal("a failed call's write was committed")
			}
		})
	}
}

func TestHostLimitsTrap(t *testing.T) {
	cases := map[string]func(){
		"long key":        func() { abi.StateGet(make([]byte, guest.KeyLenMax+1)) },
		"long value":      func() { abi.StateSet([]byte("k"), make([]byte, guest.ValueLenMax+1)) },
		"bad topic":       func() { abi.EmitEvent("UPPER", nil) },
		"long return":     func() { abi.SetReturn(make([]byte, guest.ReturnLenMax+1)) },
		"bad iterator":    func() { abi.IterNext(3) },
		"closed iterator": func() { h := abi.IterOpen(nil); abi.IterClose(h); abi.IterNext(h) },
		"key before next": func() { abi.IterKey(abi.IterOpen(nil)) },
		"too many iterators": func() {
			for i := 0; i <= guest.IteratorsOpenMax; i++ {
				abi.IterOpen(nil)
			}
		},
		"too many events": func() {
			for i := 0; i <= guest.EventsPerTxMax; i++ {
				abi.EmitEvent("e", nil)
			}
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			if r := chainWith(fn).Call(alice, modA, "run", nil); r.Status != StatusTrapped {
				t.Fatalf("got %+v", r)
			}
		})
	}
	// At the limits themselves, nothing traps.
	atLimit := func() {
		abi.StateSet(make([]byte, guest.KeyLenMax), make([]byte, guest.ValueLenMax))
		for i := 0; i < guest.EventsPerTxMax; i++ {
			abi.EmitEvent("e", make([]byte, guest.EventDataLenMax))
		}
		for i := 0; i < guest.IteratorsOpenMax; i++ {
			abi.IterOpen(nil)
		}
	}
	if r := chainWith(atLimit).Call(alice, modA, "run", nil); r.Status != StatusOK {
		t.Fatalf("at the limits: %+v", r)
	}
}

func TestIterationSeesSnapshotInOrder(t *testing.T) {
	c := chainWith(func() {
		guest.StateSet([]byte("p/b"), []byte("2"))
		guest.StateDelete([]byte("p/c"))
		var got string
		guest.StateIterate([]byte("p/"), func(k, v []byte) bool {
			got += string(k) + "=" + string(v) + ";"
			guest.StateSet([]byte("p/zz"), nil) // not seen: the iteration works on a snapshot
			return true
		})
		guest.Return([]byte(got))
	})
	c.SetState(modA, []byte("p/a"), []byte("1"))
	c.SetState(modA, []byte("p/c"), []byte("3"))
	c.SetState(modA, []byte("q/a"), []byte("x"))
	c.SetState(Addr("other"), []byte("p/a"), []byte("y"))
	if r := c.Call(alice, modA, "run", nil); r.Status != StatusOK || string(r.Return) != "p/a=1;p/b=2;" {
		t.Fatalf("got %+v %q", r, r.Return)
	}
}

// TestCallDepth chains modules m0 → m1 → … ; the call that would make
// frame CallDepthMax+1 gets CallDepth and nothing below it runs.
func TestCallDepth(t *testing.T) {
	c := New()
	n := guest.CallDepthMax + 2
	codes := make([]int32, n)
	for i := 0; i < n; i++ {
		c.Deploy(Addr("m"+strconv.Itoa(i)), Module{"run": func() {
			guest.StateSet([]byte("ran"), nil)
			if i+1 < n {
				codes[i], _ = abi.Call(Addr("m"+strconv.Itoa(i+1)), "run", nil, 0)
			}
		}}, alice, nil)
	}
	if r := c.Call(alice, Addr("m0"), "run", nil); r.Status != StatusOK {
		t.Fatal(r)
	}
	for i := 0; i < n; i++ {
		_, ran := c.State(Addr("m"+strconv.Itoa(i)), []byte("ran"))
		if ran != (i < guest.CallDepthMax) {
			t.Errorf("frame %d ran = %v", i+1, ran)
		}
	}
	if codes[guest.CallDepthMax-1] != guest.CallDepth || codes[0] != guest.CallOK {
		t.Fatalf("codes %v", codes)
	}
}

func TestDeployFailureRemovesModule(t *testing.T) {
	c := New()
	r := c.Deploy(modA, Module{"init": func() { guest.Abort("no") }, "run": func() {}}, alice, nil)
	if r.Status != StatusAborted {
		t.Fatal(r)
	}
	if r := c.Call(alice, modA, "run", nil); r.Status != StatusTrapped {
		t.Fatalf("module left after failed init: %+v", r)
	}
}

func TestDeclaredAccess(t *testing.T) {
	modB := Addr("b")
	newChain := func() *Chain {
		c := New()
		c.Deploy(modA, Module{
			"read":    func() { guest.StateGet([]byte("k")) },
			"write":   func() { guest.StateSet([]byte("k"), nil) },
			"iterate": func() { guest.StateIterate([]byte("p/"), func(_, _ []byte) bool { return true }) },
			"call": func() {
				// The callee's violation must stop this frame too: the
				// Abort below is never reached.
				if _, err := guest.Call(modB, "write", nil, 0); err != nil {
					guest.Abort("callee failed")
				}
				guest.StateSet([]byte("after"), nil)
			},
		}, alice, nil)
		c.Deploy(modB, Module{"write": func() { guest.StateSet([]byte("x"), nil) }}, alice, nil)
		return c
	}
	r := func(m guest.Address, key string) Access { return Access{Module: m, Key: []byte(key)} }
	w := func(m guest.Address, key string) Access { return Access{Module: m, Key: []byte(key), Write: true} }
	p := func(m guest.Address, key string) Access { return Access{Module: m, Key: []byte(key), Prefix: true} }
	cases := []struct {
		method   string
		declared []Access
		want     Status
	}{
		{"read", []Access{r(modA, "k")}, StatusOK},
		{"read", []Access{w(modA, "k")}, StatusOK},
		{"read", []Access{p(modA, "")}, StatusOK},
		{"read", []Access{r(modA, "kk"), r(modB, "k")}, StatusAccessViolation},
		{"write", []Access{r(modA, "k")}, StatusAccessViolation},
		{"write", []Access{w(modA, "k")}, StatusOK},
		{"iterate", []Access{p(modA, "p")}, StatusOK},
		{"iterate", []Access{p(modA, "p/x")}, StatusAccessViolation},
		{"iterate", []Access{r(modA, "p/")}, StatusAccessViolation},
		{"call", []Access{w(modA, "after"), w(modB, "x")}, StatusOK},
		{"call", []Access{w(modA, "after"), r(modB, "x")}, StatusAccessViolation},
		{"call", []Access{w(modA, "after")}, StatusAccessViolation},
		{"read", nil, StatusAccessViolation},
	}
	for i, tc := range cases {
		c := newChain()
		declared := tc.declared
		if declared == nil {
			declared = []Access{}
		}
		if got := c.CallDeclared(alice, modA, tc.method, nil, declared); got.Status != tc.want {
			t.Errorf("case %d %s: %s (%s), want %s", i, tc.method, got.Status, got.Message, tc.want)
		}
		if tc.want != StatusOK {
			if _, ok := c.State(modB, []byte("x")); ok {
				t.Errorf("case %d: a violating transaction kept a callee's write", i)
			}
		}
	}
}

func TestUpgradeRunsMigrate(t *testing.T) {
	v1 := Module{"get": func() { guest.Return([]byte("v1")) }}
	v2 := Module{
		"get":     func() { guest.Return([]byte("v2")) },
		"migrate": func() { guest.StateSet([]byte("migrated"), guest.Input()) },
	}
	broken := Module{"get": func() {}, "migrate": func() { guest.Abort("no") }}
	c := New()
	c.Deploy(modA, v1, alice, nil)
	if r := c.Upgrade(modA, broken, alice, nil); r.Status != StatusAborted {
		t.Fatalf("broken migrate: %+v", r)
	}
	if r := c.Call(alice, modA, "get", nil); string(r.Return) != "v1" {
		t.Fatalf("a failed upgrade replaced the code: %+v", r)
	}
	if r := c.Upgrade(modA, v2, alice, []byte("in")); r.Status != StatusOK {
		t.Fatal(r)
	}
	if v, _ := c.State(modA, []byte("migrated")); string(v) != "in" {
		t.Fatalf("migrate input %q", v)
	}
	if r := c.Call(alice, modA, "get", nil); string(r.Return) != "v2" {
		t.Fatalf("after upgrade: %+v", r)
	}
	if r := c.Call(alice, modA, "migrate", nil); r.Status != StatusTrapped {
		t.Fatalf("migrate is callable: %+v", r)
	}
}
