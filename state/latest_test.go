package state

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// latestKey returns a key of a small universe in which keys are prefixes
// of one another (module ‖ "ab" against module ‖ "abc").
func latestKey(rng *rand.Rand) types.StateKey {
	k := types.StateKey{Key: make([]byte, rng.IntN(5))}
	k.Module[0] = byte(rng.IntN(3))
	for i := range k.Key {
		k.Key[i] = "ab./"[rng.IntN(4)]
	}
	return k
}

// TestLatestIndexAgainstMap runs random puts and deletes through the
// table with the hash cut to a few bits (long probes, every key colliding
// with others; with 30 keys in the smallest table, probes and deletes
// that shift slots back across the table's end) and checks every key of
// the universe against a map, one by one and through GetMany's passes
// (lookup), whose candidate slot can hold another key with the same tag.
func TestLatestIndexAgainstMap(t *testing.T) {
	for _, c := range []struct {
		hashMask uint64
		keys     int
	}{{0x6, 400}, {0x7e, 30}, {0x7e, 400}, {^uint64(0), 30}, {^uint64(0), 400}} {
		hashMask := c.hashMask
		t.Run(fmt.Sprintf("mask=%x/keys=%d", hashMask, c.keys), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, hashMask))
			x := &latestIndex{hashMask: hashMask}
			if err := x.build(context.Background(), mustMemory(t)); err != nil {
				t.Fatal(err)
			}
			model := map[string][]byte{}
			var universe []types.StateKey
			seen := map[string]bool{}
			for len(universe) < c.keys {
				k := latestKey(rng)
				if id := string(k.Module[:]) + string(k.Key); !seen[id] {
					seen[id] = true
					universe = append(universe, k)
				}
			}
			for step := range 10_000 {
				k := universe[rng.IntN(len(universe))]
				id := string(k.Module[:]) + string(k.Key)
				if rng.IntN(3) == 0 {
					x.del(k)
					delete(model, id)
				} else {
					v := fmt.Appendf(nil, "v%d", step)
					if rng.IntN(8) == 0 {
						v = []byte{} // stored as it is, as the datastore does
					}
					x.put(k, v)
					model[id] = v
				}
				if x.n != len(model) {
					t.Fatalf("step %d: %d entries, model %d", step, x.n, len(model))
				}
				if step%(c.keys/3) != 0 {
					continue
				}
				many, n := x.lookup(new(keyBuf), universe, nil)
				if n != len(universe) {
					t.Fatalf("step %d: lookup read %d of %d keys", step, n, len(universe))
				}
				for i, k := range universe {
					want, ok := model[string(k.Module[:])+string(k.Key)]
					got := x.get(x.hash(x.moduleHash(k.Module), k.Key), &k.Module, k.Key)
					if !bytes.Equal(got, want) || (got == nil) != !ok {
						t.Fatalf("step %d, key %x/%q: got %q, want %q (present %v)", step, k.Module[0], k.Key, got, want, ok)
					}
					if !bytes.Equal(many[i], want) || (many[i] == nil) != !ok {
						t.Fatalf("step %d, key %x/%q: lookup %q, want %q (present %v)", step, k.Module[0], k.Key, many[i], want, ok)
					}
				}
			}
		})
	}
}

func mustMemory(t *testing.T) *Store {
	t.Helper()
	s, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkGetMany reads every key of keys with GetMany and with Get and
// fails on any difference.
func checkGetMany(t *testing.T, s *Store, keys []types.StateKey, when string) {
	t.Helper()
	ctx := context.Background()
	got, err := s.GetMany(ctx, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		want, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i], want) || (got[i] == nil) != (want == nil) {
			t.Fatalf("%s: key %x/%q: GetMany %q, Get %q", when, k.Module[0], k.Key, got[i], want)
		}
	}
}

// TestGetManyFollowsCommits: on an in-memory store GetMany returns what
// Get returns after each of a series of commits (writes, overwrites,
// deletes), after a Seed that changed the flat index behind the index's
// back, and while a writer holds the commit lock (the index stands aside).
func TestGetManyFollowsCommits(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 9))
	s := mustMemory(t)
	var universe []types.StateKey
	seen := map[types.Hash]bool{}
	for len(universe) < 300 {
		k := latestKey(rng)
		k.Key = fmt.Appendf(k.Key, "%d", rng.IntN(200))
		if kp := types.KeyPath(k); !seen[kp] {
			seen[kp] = true
			universe = append(universe, k)
		}
	}
	checkGetMany(t, s, universe, "empty store")
	// A seed changes the latest root without a commit.
	var leaves []SnapshotLeaf
	for _, k := range universe[:100] {
		leaves = append(leaves, SnapshotLeaf{Key: k, Value: fmt.Appendf(nil, "seeded %q", k.Key)})
	}
	slices.SortFunc(leaves, func(a, b SnapshotLeaf) int {
		ka, kb := types.KeyPath(a.Key), types.KeyPath(b.Key)
		return bytes.Compare(ka[:], kb[:])
	})
	if _, err := seed(t, s, 1, leaves); err != nil {
		t.Fatal(err)
	}
	checkGetMany(t, s, universe, "after seed")
	for h := uint64(2); h < 30; h++ {
		var writes []Write
		for _, i := range rng.Perm(len(universe))[:40] {
			var v []byte
			if rng.IntN(3) > 0 {
				v = fmt.Appendf(nil, "h%d", h)
			}
			writes = append(writes, Write{Key: universe[i], Value: v})
		}
		if _, err := s.Commit(ctx, h, writes); err != nil {
			t.Fatal(err)
		}
		checkGetMany(t, s, universe, fmt.Sprintf("after commit %d", h))
	}
	if !s.latestIdx.built {
		t.Fatal("the index was not in use")
	}
	s.commitMu.Lock()
	s.latestIdx.apply(types.Hash{1}, types.Hash{2}, nil) // as if a writer ran
	checkGetMany(t, s, universe, "writer running")
	if s.latestIdx.built {
		t.Fatal("the index was rebuilt while a writer held the lock")
	}
	s.commitMu.Unlock()
	checkGetMany(t, s, universe, "after the writer")
	if !s.latestIdx.built {
		t.Fatal("the index was not rebuilt")
	}
	// A pipelined write (CommitAsync) changes the flat index after the
	// commit lock is released: no rebuild may read it meanwhile.
	prev := s.inflight
	s.inflight = &pendingWrite{done: make(chan struct{})}
	s.latestIdx.apply(types.Hash{1}, types.Hash{2}, nil) // as if the write applied its change
	checkGetMany(t, s, universe, "pipelined write in flight")
	if s.latestIdx.built {
		t.Fatal("the index was rebuilt while a pipelined write was in flight")
	}
	close(s.inflight.done)
	checkGetMany(t, s, universe, "after the pipelined write")
	if !s.latestIdx.built {
		t.Fatal("the index was not rebuilt after the pipelined write")
	}
	s.inflight = prev
}

// TestGetManyDuringCommits reads with GetMany while commits run (for the
// race detector) and checks each read against the values some version
// held: a key's value is the one of the commit before the read or of a
// later one.
func TestGetManyDuringCommits(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) { getManyDuringCommits(t, pipelined) })
	}
}

// getManyDuringCommits is TestGetManyDuringCommits with Commit or with
// CommitAsync, each version's wait called after the next one is handed
// over (a write in flight while GetMany reads and may rebuild its index).
func getManyDuringCommits(t *testing.T, pipelined bool) {
	ctx := context.Background()
	s := mustMemory(t)
	keys := make([]types.StateKey, 200)
	for i := range keys {
		keys[i] = types.StateKey{Key: fmt.Appendf(nil, "k%d", i)}
	}
	const heights = 40
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		var lastWait func() error
		for h := uint64(1); h <= heights; h++ {
			writes := make([]Write, len(keys))
			for i, k := range keys {
				writes[i] = Write{Key: k, Value: fmt.Appendf(nil, "%04d", h)}
			}
			if !pipelined {
				if _, err := s.Commit(ctx, h, writes); err != nil {
					t.Error(err)
					return
				}
				continue
			}
			_, wait, err := s.CommitAsync(ctx, h, writes)
			if err == nil && lastWait != nil {
				err = lastWait()
			}
			if err != nil {
				t.Error(err)
				return
			}
			lastWait = wait
		}
		if lastWait != nil {
			if err := lastWait(); err != nil {
				t.Error(err)
			}
		}
	}()
	for {
		select {
		case <-done:
			wg.Wait()
			checkGetMany(t, s, keys, "at the end")
			return
		default:
		}
		before, _ := s.Latest()
		got, err := s.GetMany(ctx, keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if before == 0 {
				continue // absent or the first commit's
			}
			if v == nil || string(v) < fmt.Sprintf("%04d", before) {
				t.Fatalf("key %d read %q after commit %d", i, v, before)
			}
		}
	}
}

// TestLatestIndexDeleteAcrossTheEnd: keys whose probes run from the last
// slots of the table over its end are deleted in every order, and every
// key left is still found after each delete (the shift-back rule at the
// wrap, which random keys rarely reach).
func TestLatestIndexDeleteAcrossTheEnd(t *testing.T) {
	homes := []uint64{62, 62, 63, 62, 0, 63}
	var perm func([]int, int)
	orders := 0
	perm = func(order []int, n int) {
		if n < len(order) {
			for i := n; i < len(order); i++ {
				order[n], order[i] = order[i], order[n]
				perm(order, n+1)
				order[n], order[i] = order[i], order[n]
			}
			return
		}
		orders++
		x := &latestIndex{slots: make([]latestSlot, latestMinSlots), mask: latestMinSlots - 1}
		key := func(i int) (uint64, types.StateKey) {
			return uint64(i)<<32 | homes[i]<<1 | 1, types.StateKey{Key: []byte{byte(i)}}
		}
		for i := range homes {
			tag, k := key(i)
			x.putTag(tag, k, []byte{byte(i)})
		}
		gone := map[int]bool{}
		for _, d := range order {
			tag, k := key(d)
			x.delTag(tag, k)
			gone[d] = true
			for i := range homes {
				tag, k := key(i)
				if found := x.find(tag, &k.Module, k.Key) >= 0; found == gone[i] {
					t.Fatalf("order %v: key %d found %v after deleting %v", order, i, found, gone)
				}
			}
		}
	}
	perm([]int{0, 1, 2, 3, 4, 5}, 0)
	if orders != 720 {
		t.Fatalf("%d orders", orders)
	}
}

// BenchmarkLatestApply is what Commit adds to an in-memory store's commit
// for its GetMany index: applying 10 000 overwrites to an index of 20 000
// keys (a new key costs its key string too).
func BenchmarkLatestApply(b *testing.B) {
	x := &latestIndex{}
	s, err := OpenMemory(Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := x.build(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	key := func(i int) types.StateKey {
		return types.StateKey{Module: types.Address{7}, Key: fmt.Appendf(nil, "b%032d", i)}
	}
	for i := range 20_000 {
		x.put(key(i), []byte("value"))
	}
	changes := make([]Change, 10_000)
	for i := range changes {
		changes[i] = Change{Key: key(2 * i), New: []byte("new value")}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.apply(x.root, x.root, changes)
	}
}

// get returns the value of (module, key), whose hash is h, or nil: one
// key through find, beside GetMany's passes (lookup).
func (x *latestIndex) get(h uint64, module *types.Address, key []byte) []byte {
	i := x.find(x.tagOf(h), module, key)
	if i < 0 {
		return nil
	}
	return x.slots[i].value()
}
