package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
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

// TestFeedBatchEqualsGet: the prefetch through GetMany gives every entry
// the value the key-by-key prefetch gives and the parent's Get gives (nil
// for a prefix), on the caller alone and on a crew, when the block
// declares keys no state holds, an over-long key, prefixes, lifecycle
// transactions and calls of one module in a row (whose record entries
// take the value read once per run of a chunk).
func TestFeedBatchEqualsGet(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	s, present, absent := randomStore(t, rng, false, 600)
	// The called modules' records, which the repeated record entries
	// take from the chunk's first: distinct, so a value taken from the
	// wrong entry shows.
	records := []state.Write{
		{Key: types.StateKey{Module: ModulesModule, Key: recordKey(TokenModule)}, Value: []byte("token record")},
		{Key: types.StateKey{Module: ModulesModule, Key: recordKey(CounterModule)}, Value: []byte("counter record")},
	}
	if _, err := s.Commit(ctx, 2, records); err != nil {
		t.Fatal(err)
	}
	var txs []*types.Tx
	for i := range 300 {
		access := []types.Access{rw(present[2*i].Module, present[2*i].Key), rd(absent[i].Module, absent[i].Key)}
		switch i {
		case 150:
			access = append(access, rd(TokenModule, make([]byte, types.StateKeyMax+1)))
		case 151:
			access = append(access, pfx(present[3].Module, present[3].Key[:1], types.Read))
		}
		p := call(TokenModule, "transfer", nil)
		switch {
		case i%7 == 0:
			p = call(CounterModule, "add", nil)
		case i == 100:
			p = types.Payload{Kind: types.SetAdmin, Module: TokenModule}
		}
		txs = append(txs, mkTx(i, 1, 1e12, p, access...))
	}
	tab := newAccessTable(txs, sendersOf(txs), 2)
	want, err := newFeed(ctx, getOnly{s}, tab, txs, 1).finish()
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Clone(want)
	for j, e := range tab.sc.flat[:tab.start[len(txs)]] {
		var v []byte
		if !e.prefix && len(e.k)-types.AddressLen <= types.StateKeyMax {
			if v, err = s.Get(ctx, splitKey(e.k)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(want[j], v) || (want[j] == nil) != (v == nil) {
			t.Fatalf("entry %d (%x): %q, Get %q", j, e.k, want[j], v)
		}
	}
	for _, helpers := range []int{0, 1, 3} {
		c := newCrew(helpers)
		f := newFeed(ctx, s, tab, txs, 1+helpers)
		poison(f.own) // the scratch still holds the last feed's values
		f.start(c)
		got, err := f.finish()
		c.stop()
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if !bytes.Equal(got[j], want[j]) || (got[j] == nil) != (want[j] == nil) {
				t.Fatalf("%d helpers, entry %d: %q, key by key %q", helpers, j, got[j], want[j])
			}
		}
	}
}

// lastChunkView holds back the first GetMany (a chunk of the prefetch)
// until every other one has returned, so that chunk lands last, after the
// goroutine that did not read it has claimed and read all the others.
type lastChunkView struct {
	*state.Store
	others   int32 // GetMany calls besides the first
	calls    atomic.Int32
	returned atomic.Int32
	release  chan struct{}
}

func (v *lastChunkView) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	if v.calls.Add(1) == 1 {
		<-v.release
		return v.Store.GetMany(ctx, keys, dst)
	}
	defer func() {
		if v.returned.Add(1) == v.others {
			close(v.release)
		}
	}()
	return v.Store.GetMany(ctx, keys, dst)
}

// TestPrepareWaitsForEveryChunk: prepare returns only once the prefetch's
// last chunk has landed, even when that chunk is the helper's and the
// caller has read all the others: every entry then holds the parent's
// value. (A prepare that did not wait for the helper returns while the
// held-back chunk is still being read: -race, which runs this package in
// make test, reports the helper's writes unordered with the reads here,
// checked by removing the wait; without -race the helper usually lands
// it before these reads reach it.) Two workers: the held-back reader is
// the helper unless it joined only after the caller's numbering.
func TestPrepareWaitsForEveryChunk(t *testing.T) {
	ctx := context.Background()
	blk, txs, genesis, err := TransferWorkload(1200, 600, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := genesisStore(t, genesis)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	chunks := int32((len(txs) + feedChunk - 1) / feedChunk)
	for round := range 5 {
		v := &lastChunkView{Store: s, others: chunks - 1, release: make(chan struct{})}
		bl, err := x.prepare(ctx, v, blk, txs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range bl.txs {
			for j, e := range bl.access.all[i] {
				want, err := s.Get(ctx, splitKey(e.k))
				if err != nil {
					t.Fatal(err)
				}
				if got := bl.own[bl.access.start[i]+j]; !bytes.Equal(got, want) {
					t.Fatalf("round %d, tx %d, entry %d: %q before its chunk landed, parent %q", round, i, j, got, want)
				}
			}
		}
		// The next round's scratch must not find this round's values.
		poison(bl.sc.own)
		poison(bl.sc.ownPermuted)
		x.done(bl)
	}
}

// poison fills vals with a value no state holds, so that an entry a
// prefetch leaves unwritten fails a comparison instead of passing with a
// value left by an earlier block.
func poison(vals [][]byte) {
	for i := range vals {
		vals[i] = []byte("poison: not written by this prefetch")
	}
}

// TestPrefetchFailureFailsTheBlock: a parent whose reads fail makes the
// block fail with ErrState in both modes, with 1 and 2 workers, whichever
// chunk fails and whichever goroutine reads it, and the executor runs its
// next block as if nothing happened.
func TestPrefetchFailureFailsTheBlock(t *testing.T) {
	ctx := context.Background()
	blk, txs, genesis, err := TransferWorkload(600, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := genesisStore(t, genesis)
	boom := errors.New("disk gone")
	for _, workers := range []int{1, 2} {
		x := New(NewNativeRunner(NativeModules()), Options{Workers: workers})
		want, err := x.ExecuteSerial(ctx, s, blk, txs)
		if err != nil {
			t.Fatal(err)
		}
		for _, failAt := range []int32{0, 2} {
			for _, serial := range []bool{false, true} {
				run := x.ExecuteBlock
				if serial {
					run = x.ExecuteSerial
				}
				if _, err := run(ctx, &failingBatch{Store: s, failAt: failAt, err: boom}, blk, txs); !errors.Is(err, ErrState) || !errors.Is(err, boom) {
					t.Fatalf("%d workers, failure at read %d, serial %v: %v", workers, failAt, serial, err)
				}
				got, err := run(ctx, s, blk, txs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(encodeResult(got), encodeResult(want)) {
					t.Fatalf("%d workers, serial %v: the block after a failed one differs", workers, serial)
				}
			}
		}
	}
}

// failingBatch fails its GetMany calls from the failAt-th on.
type failingBatch struct {
	*state.Store
	calls  atomic.Int32
	failAt int32
	err    error
}

func (f *failingBatch) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	if f.calls.Add(1)-1 >= f.failAt {
		return dst, f.err
	}
	return f.Store.GetMany(ctx, keys, dst)
}

// TestByEntryMatchesGet: after prepare (the prefetch beside the
// numbering, the nonce order's permutation of both), each transaction's own values are, entry by
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
			if bl.order != nil && &bl.own[0] == &bl.sc.own[0] {
				t.Fatalf("seed %d: the block was permuted, its values were not", seed)
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
