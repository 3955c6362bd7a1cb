package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// getOnly hides a store's GetMany: the prefetch then reads key by key.
type getOnly struct{ StateView }

// randomStore commits n random keys (with the bytes the datastore key
// escapes) to a fresh memory or pebble store and returns it, the keys and
// keys that are absent.
func randomStore(t *testing.T, rng *rand.Rand, pebble bool, n int) (*state.Store, []types.StateKey, []types.StateKey) {
	t.Helper()
	var s *state.Store
	var err error
	if pebble {
		s, err = state.OpenPebble(t.TempDir(), state.Options{})
	} else {
		s, err = state.OpenMemory(state.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The last module has bytes the datastore key escapes.
	modules := []types.Address{benchAddress("getmany", 0), benchAddress("getmany", 1), {'.', '/', 'a', '.'}}
	mk := func(i int) types.StateKey {
		k := types.StateKey{Module: modules[rng.IntN(3)], Key: make([]byte, 1+rng.IntN(40))}
		for j := range k.Key {
			k.Key[j] = []byte("./a\x00\xff")[rng.IntN(5)]
		}
		k.Key = fmt.Appendf(k.Key, "%d", i) // distinct
		return k
	}
	var present, absent []types.StateKey
	var writes []state.Write
	for i := range n {
		k := mk(i)
		present = append(present, k)
		writes = append(writes, state.Write{Key: k, Value: fmt.Appendf(nil, "value %d %x", i, k.Key)})
		absent = append(absent, mk(n+i))
	}
	if _, err := s.Commit(context.Background(), 1, writes); err != nil {
		t.Fatal(err)
	}
	return s, present, absent
}

// TestGetManyMatchesGet: state.Store.GetMany returns what Get returns for
// every key, present or absent, repeated or not, shuffled or sorted (runs
// of one module, whose escaped bytes it reuses), on the in-memory store
// (over several lock holds) and on pebble, appends after what dst holds,
// and refuses an over-long key as Get does.
func TestGetManyMatchesGet(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ pebble, sorted bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("pebble=%v/sorted=%v", c.pebble, c.sorted), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			s, present, absent := randomStore(t, rng, c.pebble, 1500)
			keys := append(append([]types.StateKey(nil), present...), absent...)
			keys = append(keys, present[:300]...)
			rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			if c.sorted {
				slices.SortFunc(keys, types.StateKey.Compare)
			}
			got, err := s.GetMany(ctx, keys, [][]byte{[]byte("before")})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1+len(keys) || string(got[0]) != "before" {
				t.Fatalf("%d values for %d keys, or dst overwritten", len(got), len(keys))
			}
			found := 0
			for i, k := range keys {
				want, err := s.Get(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[1+i], want) || (got[1+i] == nil) != (want == nil) {
					t.Fatalf("key %x: GetMany %q, Get %q", k.Key, got[1+i], want)
				}
				if want != nil {
					found++
				}
			}
			if found != len(present)+300 {
				t.Fatalf("%d keys found, want %d", found, len(present)+300)
			}
			long := types.StateKey{Key: make([]byte, types.StateKeyMax+1)}
			before, err := s.GetMany(ctx, append(keys[:3:3], long), nil)
			if !errors.Is(err, state.ErrKeyTooLong) {
				t.Fatalf("over-long key: %v", err)
			}
			for i := range before {
				if !bytes.Equal(before[i], got[1+i]) || (before[i] == nil) != (got[1+i] == nil) {
					t.Fatalf("before the over-long key, value %d: %q, want %q", i, before[i], got[1+i])
				}
			}
			if len(before) != 3 {
				t.Fatalf("%d values read before the over-long key, want 3", len(before))
			}
		})
	}
}

// TestPrefetchBatchEqualsGet: the prefetch through GetMany gives every
// slot the value the key-by-key prefetch gives, with 1 and 2 readers,
// when the block declares keys no state holds and an over-long key.
func TestPrefetchBatchEqualsGet(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	s, present, absent := randomStore(t, rng, false, 600)
	var txs []*types.Tx
	for i := range 300 {
		access := []types.Access{rw(present[2*i].Module, present[2*i].Key), rd(absent[i].Module, absent[i].Key)}
		if i == 150 {
			access = append(access, rd(TokenModule, make([]byte, types.StateKeyMax+1)))
		}
		txs = append(txs, mkTx(i, 1, 1e12, call(TokenModule, "transfer", nil), access...))
	}
	tab := newAccessTable(txs, sendersOf(txs), 2)
	want, err := prefetch(ctx, getOnly{s}, tab, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, readers := range []int{1, 2} {
		got, err := prefetch(ctx, s, tab, readers)
		if err != nil {
			t.Fatal(err)
		}
		for slot := range want {
			if !bytes.Equal(got[slot], want[slot]) || (got[slot] == nil) != (want[slot] == nil) {
				t.Fatalf("%d readers, slot %d: %q, key by key %q", readers, slot, got[slot], want[slot])
			}
		}
	}
}

// TestByEntryMatchesGet: after prepare (numbering, the nonce order's
// permutation, the prefetch), each transaction's own values are, entry by
// entry in execution order, what the parent holds for the entry's key
// (nil for a prefix), with 1 and 2 workers, on random blocks with
// prefixes, hot keys and senders with several transactions.
func TestByEntryMatchesGet(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 40, 1000)
	for seed := range uint64(4) {
		blk, txs := newGen(seed, 12).block(2, 1e9, 300)
		for _, workers := range []int{1, 2} {
			x := New(NewNativeRunner(NativeModules()), Options{Workers: workers})
			bl, err := x.prepare(ctx, s, blk, txs)
			if err != nil {
				t.Fatal(err)
			}
			permuted := false
			for i := range bl.txs {
				permuted = permuted || bl.txs[i] != txs[i]
				for j, e := range bl.access.all[i] {
					got := bl.own[bl.access.start[i]+j]
					if e.prefix {
						if got != nil {
							t.Fatalf("seed %d, %d workers, tx %d: prefix entry %d has %q", seed, workers, i, j, got)
						}
						continue
					}
					want, err := s.Get(ctx, splitKey(e.k))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("seed %d, %d workers, tx %d, entry %d: %q, parent %q", seed, workers, i, j, got, want)
					}
				}
			}
			if !permuted && seed == 0 {
				t.Fatalf("seed %d: the block kept its order, so the permutation went untested", seed)
			}
			x.done(bl)
		}
	}
}
