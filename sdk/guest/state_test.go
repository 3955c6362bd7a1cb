package guest_test

import (
	"bytes"
	"crypto/ed25519"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

var (
	mod  = guesttest.Addr("module")
	user = guesttest.Addr("user")
)

// body is what the test module's "run" method executes.
var body func()

// newChain returns a chain with the test module deployed at mod.
func newChain() *guesttest.Chain {
	c := guesttest.New()
	c.Deploy(mod, guesttest.Module{"run": func() { body() }}, user, nil)
	return c
}

// run executes fn as the test module's method and fails the test unless
// it ends with status want.
func run(t *testing.T, c *guesttest.Chain, want guesttest.Status, fn func()) guesttest.Result {
	t.Helper()
	body = fn
	r := c.Call(user, mod, "run", nil)
	if r.Status != want {
		t.Fatalf("status %s (%s), want %s", r.Status, r.Message, want)
	}
	return r
}

// TestMapAgainstModel applies random operations to a Map and to a Go map,
// in separate transactions, and compares every read and the full
// iteration (which must come in ascending order of the encoded keys).
func TestMapAgainstModel(t *testing.T) {
	c := newChain()
	m := guest.NewMap("m", guest.StringCodec, guest.Uint64Codec)
	other := guest.NewMap("mm", guest.StringCodec, guest.Uint64Codec) // a longer name sharing a prefix
	model := map[string]uint64{}
	rng := rand.New(rand.NewPCG(3, 4))
	keys := []string{"", "a", "b", "ab", "ba", "zz", "\x00", "a\x00"}
	for i := 0; i < 400; i++ {
		k, v := keys[rng.IntN(len(keys))], rng.Uint64()
		switch rng.IntN(3) {
		case 0:
			run(t, c, guesttest.StatusOK, func() { m.Set(k, v); other.Set(k, v+1) })
			model[k] = v
		case 1:
			run(t, c, guesttest.StatusOK, func() { m.Delete(k) })
			delete(model, k)
		case 2:
			run(t, c, guesttest.StatusOK, func() {
				got, ok := m.Get(k)
				want, wantOK := model[k]
				if ok != wantOK || got != want || m.Has(k) != wantOK || m.GetOr(k, 7) != map[bool]uint64{true: want, false: 7}[wantOK] {
					t.Errorf("op %d: Get(%q) = %d, %v; model %d, %v", i, k, got, ok, want, wantOK)
				}
			})
		}
	}
	var wantKeys []string
	for k := range model {
		wantKeys = append(wantKeys, k)
	}
	// Encoded string keys order by length, then bytes.
	sort.Slice(wantKeys, func(i, j int) bool {
		a, b := wantKeys[i], wantKeys[j]
		return len(a) < len(b) || len(a) == len(b) && a < b
	})
	var gotKeys []string
	run(t, c, guesttest.StatusOK, func() {
		m.Each(func(k string, v uint64) bool {
			if v != model[k] {
				t.Errorf("Each: %q = %d, model %d", k, v, model[k])
			}
			gotKeys = append(gotKeys, k)
			return true
		})
	})
	if !slices.Equal(gotKeys, wantKeys) {
		t.Fatalf("Each keys %q, want %q (another map's keys leak in if they differ)", gotKeys, wantKeys)
	}
}

func TestKeyLayout(t *testing.T) {
	m := guest.NewMap("bal", guest.Uint64Codec, guest.BoolCodec)
	if got, want := m.Key(258), []byte("\x03bal\x00\x00\x00\x00\x00\x00\x01\x02"); !bytes.Equal(got, want) {
		t.Fatalf("Map key %x, want %x", got, want)
	}
	if got := guest.NewValue("n", guest.BoolCodec).Key(); string(got) != "\x01n" {
		t.Fatalf("Value key %x", got)
	}
}

func TestValueAndCorruptState(t *testing.T) {
	c := newChain()
	v := guest.NewValue("v", guest.Uint64Codec)
	run(t, c, guesttest.StatusOK, func() {
		if _, ok := v.Get(); ok || v.GetOr(5) != 5 {
			t.Error("unset value reads as set")
		}
		v.Set(9)
	})
	if got, _ := c.State(mod, v.Key()); !bytes.Equal(got, guest.Encode(guest.Uint64Codec, 9)) {
		t.Fatalf("stored %x", got)
	}
	c.SetState(mod, v.Key(), []byte{1, 2, 3})
	r := run(t, c, guesttest.StatusAborted, func() { v.Get() })
	if r.Message == "" {
		t.Fatal("no message for a value that does not decode")
	}
	run(t, c, guesttest.StatusOK, func() { v.Delete() })
	if _, ok := c.State(mod, v.Key()); ok {
		t.Fatal("Delete left the value")
	}
}

func TestSDKLimitsAbort(t *testing.T) {
	cases := map[string]func(){
		"empty key":   func() { guest.StateSet(nil, nil) },
		"long key":    func() { guest.StateGet(make([]byte, guest.KeyLenMax+1)) },
		"long value":  func() { guest.StateSet([]byte("k"), make([]byte, guest.ValueLenMax+1)) },
		"bad topic":   func() { guest.Emit("Bad Topic", nil) },
		"long event":  func() { guest.Emit("e", make([]byte, guest.EventDataLenMax+1)) },
		"long return": func() { guest.Return(make([]byte, guest.ReturnLenMax+1)) },
		"long hash":   func() { guest.Sha256(make([]byte, guest.HashInputLenMax+1)) },
		"require":     func() { guest.Require(false, "no") },
		"bad input":   func() { guest.DecodeInput(guest.Uint64Codec) },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) { run(t, newChain(), guesttest.StatusAborted, fn) })
	}
}

func TestContextAndCrypto(t *testing.T) {
	c := newChain()
	c.SetTime(42)
	c.SetHeight(7)
	run(t, c, guesttest.StatusOK, func() {
		if guest.Caller() != user || guest.Self() != mod || guest.TxTimeUnixNano() != 42 || guest.BlockHeight() != 7 {
			t.Error("context differs from the chain's")
		}
		// SHA-256("abc"), FIPS 180-2 appendix B.1.
		want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
		d := guest.Sha256([]byte("abc"))
		if got := guest.Address(d).String(); got != want {
			t.Errorf("sha256 %s", got)
		}
		guest.Log("hello")
		pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 32)))
		sig := ed25519.Sign(priv, []byte("msg"))
		if !guest.VerifyEd25519([32]byte(pub), []byte("msg"), [64]byte(sig)) || guest.VerifyEd25519([32]byte(pub), []byte("msh"), [64]byte(sig)) {
			t.Error("ed25519 verification disagrees with crypto/ed25519")
		}
	})
	if logs := c.Logs(); len(logs) != 1 || logs[0] != "hello" {
		t.Fatalf("logs %q", logs)
	}
}
