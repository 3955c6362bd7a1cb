package exec

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// TestIteratorAgainstModel merges random parent contents, block-layer
// versions and a transaction's own writes, and compares the iteration of
// random prefixes with a map model of the same layering.
func TestIteratorAgainstModel(t *testing.T) {
	ctx := context.Background()
	m := ScanModule
	alphabet := []string{"", "a", "b", "aa", "ab", "ba"}
	rk := func(r *rand.Rand) string {
		return alphabet[r.IntN(len(alphabet))] + alphabet[r.IntN(len(alphabet))]
	}
	for seed := range uint64(seeds(t, 30)) {
		r := rand.New(rand.NewPCG(seed, 1))
		s, err := state.OpenMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		model := map[string]string{}
		var ws []state.Write
		for k := range 12 {
			key := rk(r) + fmt.Sprint(k)
			ws = append(ws, state.Write{Key: types.StateKey{Module: m, Key: []byte(key)}, Value: []byte("p" + key)})
			model[key] = "p" + key
		}
		// A key of another module must never show.
		ws = append(ws, state.Write{Key: types.StateKey{Module: CounterModule, Key: []byte("a")}, Value: []byte("x")})
		if _, err := s.Commit(ctx, 1, ws); err != nil {
			t.Fatal(err)
		}
		keys := func() []string {
			var ks []string
			for k := range model {
				ks = append(ks, k)
			}
			slices.Sort(ks)
			return ks
		}
		mv := newMVStore(nil, 0)
		apply := func(writes map[string][]byte) {
			for k, v := range writes {
				if len(v) == 0 {
					delete(model, k[types.AddressLen:])
				} else {
					model[k[types.AddressLen:]] = string(v)
				}
			}
		}
		randWrites := func(tag string) map[string][]byte {
			w := map[string][]byte{}
			existing := keys()
			for range 1 + r.IntN(4) {
				if len(existing) > 0 && r.IntN(3) == 0 {
					w[key(m, []byte(existing[r.IntN(len(existing))]))] = nil // delete
				} else {
					k := rk(r)
					w[key(m, []byte(k))] = []byte(tag + k)
				}
			}
			return w
		}
		for i := range 3 {
			w := randWrites(fmt.Sprintf("b%d", i))
			mv.publish(i, writesOf(w))
			apply(w)
		}
		// A version published by a later transaction must stay invisible.
		mv.publish(10, writesOf(map[string][]byte{key(m, []byte("a")): []byte("later")}))
		o := &overlay{ctx: ctx, layer: mv, parent: s, idx: 5}
		own := randWrites("o")
		for k, v := range own {
			if err := o.Set(m, []byte(k[types.AddressLen:]), v); err != nil {
				t.Fatal(err)
			}
		}
		apply(own)
		for _, p := range alphabet {
			it, err := o.Iterate(m, []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for it.Next() {
				got = append(got, string(it.Key())+"="+string(it.Value()))
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			it.Close()
			var want []string
			for _, k := range keys() {
				if strings.HasPrefix(k, p) {
					want = append(want, k+"="+model[k])
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d prefix %q:\n got %v\nwant %v", seed, p, got, want)
			}
		}
		s.Close()
	}
}

// TestIteratorCloseEarly: closing before the end stops the parent reader
// (no goroutine left behind), and a parent failure is a node error.
func TestIteratorCloseEarly(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 0, 0)
	before := runtime.NumGoroutine()
	for range 20 {
		o := &overlay{ctx: ctx, layer: &serialLayer{}, parent: s}
		it, err := o.Iterate(ScanModule, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !it.Next() {
			t.Fatal("genesis scan keys missing")
		}
		// Reading the parent while its iteration is open must not block.
		if v, err := o.Get(ScanModule, []byte("b/1")); err != nil || u64(v) != 3 {
			t.Fatalf("get during iteration: %x %v", v, err)
		}
		it.Close()
		it.Close() // idempotent
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after closing iterators, %d before", n, before)
	}
	o := &overlay{ctx: ctx, layer: &serialLayer{}, parent: failingView{}}
	it, err := o.Iterate(ScanModule, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if it.Next() || !errors.Is(it.Err(), ErrState) || !errors.Is(it.Err(), errDisk) {
		t.Fatalf("failing parent: next, err %v", it.Err())
	}
}
