package host_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

// TestArenaResultsEqual: metamorphic, a sequence of WAT token calls
// (mints, transfers, an approval, a spend of it, failing and read-only
// calls) gives the same Results with every transaction's copies in one
// Arena as with copies of their own (nil and empty slices alike), and
// the Results of earlier transactions still read the same after the
// arena served all the later ones.
func TestArenaResultsEqual(t *testing.T) {
	bin, err := os.ReadFile(filepath.Join(repoRoot(t), "contracts/token_wat/token.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	token := addr("token_wat")
	amount := func(a types.Address, n uint64) []byte {
		return binary.BigEndian.AppendUint64(append([]byte(nil), a[:]...), n)
	}
	calls := []call{
		{from: alice, to: token, method: "mint", input: amount(alice, 1000)},
		{from: alice, to: token, method: "transfer", input: amount(bob, 300)},
		{from: bob, to: token, method: "transfer", input: amount(alice, 301)}, // aborts: too little
		{from: bob, to: token, method: "approve", input: amount(alice, 100)},
		{from: alice, to: token, method: "transfer_from", input: append(append(bob[:], alice[:]...), amount(alice, 60)[32:]...)},
		{from: alice, to: token, method: "balance", input: bob[:]},
		{from: alice, to: token, method: "total_supply", input: []byte{1}}, // aborts: input
		{from: bob, to: token, method: "mint", input: amount(bob, 5)},      // aborts: not the admin
		{from: alice, to: token, method: "transfer", input: amount(alice, 0)},
	}
	run := func(arena *host.Arena) []host.Result {
		c := newChain(t, 0)
		c.arena = arena
		if r := c.deploy(token, bin, alice, nil, 1e9); r.Status != types.StatusOK {
			t.Fatalf("deploy: %+v", r)
		}
		var out []host.Result
		for range 3 {
			for _, tc := range calls {
				out = append(out, c.run(tc, false))
			}
		}
		return out
	}
	want, got := run(nil), run(new(host.Arena))
	events, writes := 0, 0
	for i := range want {
		w, g := want[i], got[i]
		if w.Reason() != g.Reason() {
			t.Fatalf("call %d: reason %q, with an arena %q", i, w.Reason(), g.Reason())
		}
		w.Err, g.Err = nil, nil
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("call %d:\n%#v\nwith an arena:\n%#v", i, w, g)
		}
		events, writes = events+len(w.Events), writes+len(w.Writes)
	}
	if events == 0 || writes == 0 {
		t.Fatalf("%d events, %d writes: the calls test nothing", events, writes)
	}
}

// TestArenaRelease: the WAT token's calls with each Result's Writes
// handed back (Arena.Release) after their keys were copied give the same
// writes, values and events as without an arena, the earlier Results'
// values and events still read the same after all later calls, and the
// released memory is handed out again (the next call's Writes and keys
// start where the released ones did), which is the point of Release.
func TestArenaRelease(t *testing.T) {
	bin, err := os.ReadFile(filepath.Join(repoRoot(t), "contracts/token_wat/token.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	token := addr("token_wat")
	amount := func(a types.Address, n uint64) []byte {
		return binary.BigEndian.AppendUint64(append([]byte(nil), a[:]...), n)
	}
	calls := []call{
		{from: alice, to: token, method: "mint", input: amount(alice, 1000)},
		{from: alice, to: token, method: "transfer", input: amount(bob, 300)},
		{from: bob, to: token, method: "transfer", input: amount(alice, 301)}, // aborts: too little
		{from: alice, to: token, method: "transfer", input: amount(bob, 7)},
		{from: bob, to: token, method: "approve", input: amount(alice, 100)},
		{from: alice, to: token, method: "transfer", input: amount(bob, 5)},
	}
	// kept is what a caller keeps of a Result after Release: the keys
	// copied, the rest as the Result holds it.
	type kept struct {
		keys   [][]byte
		res    host.Result
		first  *host.Write // where its Writes started
		firstK *byte       // where its first key started
	}
	run := func(arena *host.Arena) []kept {
		c := newChain(t, 0)
		c.arena = arena
		if r := c.deploy(token, bin, alice, nil, 1e9); r.Status != types.StatusOK {
			t.Fatalf("deploy: %+v", r)
		}
		var out []kept
		for range 3 {
			for _, tc := range calls {
				r := c.run(tc, false)
				released := r.Writes
				k := kept{}
				for _, w := range r.Writes {
					k.keys = append(k.keys, append([]byte(nil), w.Key...))
				}
				if len(r.Writes) > 0 {
					k.first, k.firstK = &r.Writes[0], &r.Writes[0].Key[0]
				}
				// The values and events are the caller's: only the
				// array and keys go back.
				r.Writes = append([]host.Write(nil), r.Writes...)
				for i := range r.Writes {
					r.Writes[i].Key = k.keys[i]
				}
				k.res = r
				arena.Release(k.res.Writes[:0]) // an empty release does nothing
				arena.Release(released)
				out = append(out, k)
			}
		}
		return out
	}
	want, got := run(nil), run(new(host.Arena))
	reused, writes := 0, 0
	for i := range want {
		w, g := want[i].res, got[i].res
		w.Err, g.Err = nil, nil
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("call %d:\n%#v\nwith a released arena:\n%#v", i, w, g)
		}
		writes += len(w.Writes)
		for j := i - 1; j >= 0; j-- {
			if got[j].first == nil {
				continue
			}
			if got[i].first == got[j].first && got[i].firstK == got[j].firstK {
				reused++
			}
			break
		}
	}
	if writes == 0 {
		t.Fatal("the calls wrote nothing: the test tests nothing")
	}
	if reused == 0 {
		t.Fatal("no call's Writes and keys reused the memory of the call before it")
	}
}
