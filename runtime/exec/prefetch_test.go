package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
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

// ownOf returns a copy of the values f laid out by entry.
func ownOf(f *feed) [][]byte { return slices.Clone(f.own) }

// TestFeedBatchEqualsGet: the prefetch through GetMany gives every entry
// the value the key-by-key prefetch gives and the parent's Get gives (nil
// for a prefix), for 1, 2 and 3 lanes, when the block declares keys no
// state holds, an over-long key, prefixes and calls of one module in a
// row (whose record entries take the value read once per run).
func TestFeedBatchEqualsGet(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	s, present, absent := randomStore(t, rng, false, 600)
	var txs []*types.Tx
	for i := range 300 {
		access := []types.Access{rw(present[2*i].Module, present[2*i].Key), rd(absent[i].Module, absent[i].Key)}
		switch i {
		case 150:
			access = append(access, rd(TokenModule, make([]byte, types.StateKeyMax+1)))
		case 151:
			access = append(access, pfx(present[3].Module, present[3].Key[:1], types.Read))
		}
		module := TokenModule
		if i%7 == 0 {
			module = CounterModule
		}
		txs = append(txs, mkTx(i, 1, 1e12, call(module, "transfer", nil), access...))
	}
	tab := newAccessTable(txs, sendersOf(txs), 2)
	f := newFeed(ctx, getOnly{s}, tab, txs, 1, 1)
	loadAll(t, f)
	want := ownOf(f)
	for j, e := range tab.sc.flat[:tab.start[len(txs)]] {
		var v []byte
		if !e.prefix && len(e.k)-types.AddressLen <= types.StateKeyMax {
			var err error
			if v, err = s.Get(ctx, splitKey(e.k)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(want[j], v) || (want[j] == nil) != (v == nil) {
			t.Fatalf("entry %d (%x): %q, Get %q", j, e.k, want[j], v)
		}
	}
	for _, lanes := range []int{1, 2, 3} {
		f := newFeed(ctx, s, tab, txs, lanes, 1)
		loadAll(t, f)
		got := ownOf(f)
		for j := range want {
			if !bytes.Equal(got[j], want[j]) || (got[j] == nil) != (want[j] == nil) {
				t.Fatalf("%d lanes, entry %d: %q, key by key %q", lanes, j, got[j], want[j])
			}
		}
	}
}

// TestFeedOrder: every transaction is in one chunk, the chunks are
// claimed lane by lane from each lane's front, and the chunks are
// contiguous and at most feedChunk long, for block sizes around the chunk
// and lane boundaries.
func TestFeedOrder(t *testing.T) {
	for _, n := range []int{1, 63, 64, 65, 200, 257} {
		for _, lanes := range []int{1, 2, 3} {
			txs := make([]*types.Tx, n)
			for i := range txs {
				txs[i] = mkTx(i, 1, 1e12, call(TokenModule, "transfer", nil))
			}
			f := newFeed(context.Background(), nil, newAccessTable(txs, sendersOf(txs), 1), txs, lanes, 1)
			seen := make([]bool, len(f.order))
			for _, c := range f.order {
				if seen[c] {
					t.Fatalf("n %d, %d lanes: chunk %d claimed twice", n, lanes, c)
				}
				seen[c] = true
			}
			if len(f.order) != len(f.bounds)-1 || slices.Contains(seen, false) {
				t.Fatalf("n %d, %d lanes: order %v for bounds %v", n, lanes, f.order, f.bounds)
			}
			for c := range f.order {
				if size := f.bounds[c+1] - f.bounds[c]; size < 1 || size > feedChunk {
					t.Fatalf("n %d, %d lanes: chunk %d has %d transactions", n, lanes, c, size)
				}
				for i := f.bounds[c]; i < f.bounds[c+1]; i++ {
					if f.chunkOf[i] != int32(c) {
						t.Fatalf("n %d, %d lanes: tx %d in chunk %d, want %d", n, lanes, i, f.chunkOf[i], c)
					}
				}
			}
			// The first lanes claims are the chunks of the lanes' fronts.
			for p := range min(lanes, n) {
				if lo := f.bounds[f.order[p]]; lo != p*n/lanes {
					t.Fatalf("n %d, %d lanes: claim %d starts at tx %d, want %d", n, lanes, p, lo, p*n/lanes)
				}
			}
		}
	}
}

// gatedView holds back every GetMany but the one that starts with the
// block's first account key until release is closed: by the first
// transaction run, or when goroutines calls are held back (a goroutine
// waiting for the first chunk claims others, so with two of them both can
// be held back here while the first chunk has landed). Until then only
// the first chunk can land.
type gatedView struct {
	*state.Store
	first      types.StateKey
	goroutines int32
	held       atomic.Int32
	release    func()
	released   chan struct{}
}

func (g *gatedView) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	if len(keys) > 0 && keys[0].Compare(g.first) != 0 {
		if g.held.Add(1) == g.goroutines {
			g.release()
		}
		select {
		case <-g.released:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
	return g.Store.GetMany(ctx, keys, dst)
}

// checkingRunner checks, before running each transaction, that the value
// it reads of every key it declared exactly is the parent's (the block's
// transactions share no key, so no earlier one wrote it), and closes
// release at the first.
type checkingRunner struct {
	Runner
	parent  StateView
	release func()
	mu      sync.Mutex
	bad     []string
}

func (r *checkingRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	r.release()
	sender := env.Sender
	keys := []types.StateKey{{Module: AccountsModule, Key: sender[:]}}
	for _, a := range tx.Body.Access {
		keys = append(keys, types.StateKey{Module: a.Module, Key: a.Key})
	}
	for _, k := range keys {
		got, err := o.Get(k.Module, k.Key)
		want, err2 := r.parent.Get(ctx, k)
		if err != nil || err2 != nil || !bytes.Equal(got, want) {
			r.mu.Lock()
			r.bad = append(r.bad, fmt.Sprintf("tx %d key %x: read %q (%v), parent %q (%v)", env.Index, k.Key, got, err, want, err2))
			r.mu.Unlock()
		}
	}
	return r.Runner.Run(ctx, o, tx, env)
}

// TestTxWaitsForItsPrefetch: a transaction never reads a declared key
// before its chunk of the prefetch landed. The parent lets only the first
// chunk land before the first transaction runs, so a transaction of a
// later chunk that did not wait for it would read a stale or empty
// entry; checked with 1 worker (the caller alone reads the chunks, as it
// reaches them), 2 workers and serially (a helper reads ahead), on fresh
// executors and on ones whose scratch holds the previous block's values.
// (A chunk published before its values are written is what -race, which
// runs this package, reports here: the reads are then not ordered after
// the loader's writes.)
func TestTxWaitsForItsPrefetch(t *testing.T) {
	ctx := context.Background()
	blk, txs, genesis, err := TransferWorkload(600, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Commit(ctx, 1, genesis); err != nil {
		t.Fatal(err)
	}
	sender := txs[0].SenderAddress()
	for _, workers := range []int{1, 2} {
		r := &checkingRunner{Runner: NewNativeRunner(NativeModules()), parent: s}
		x := New(r, Options{Workers: workers})
		for round := range 3 {
			for _, serial := range []bool{false, true} {
				released := make(chan struct{})
				var once sync.Once
				r.release = func() { once.Do(func() { close(released) }) }
				g := &gatedView{Store: s, first: types.StateKey{Module: AccountsModule, Key: sender[:]},
					goroutines: int32(workers), release: r.release, released: released}
				run := x.ExecuteBlock
				if serial {
					run = x.ExecuteSerial
				}
				if _, err := run(ctx, g, blk, txs); err != nil {
					t.Fatal(err)
				}
				if len(r.bad) > 0 {
					t.Fatalf("%d workers, round %d, serial %v: %d reads before the prefetch landed, first %s", workers, round, serial, len(r.bad), r.bad[0])
				}
			}
		}
	}
}

// TestPrefetchFailureFailsTheBlock: a parent whose reads fail makes the
// block fail with ErrState, in every mode, whichever goroutine reads the
// failing chunk, and the executor runs its next block normally.
func TestPrefetchFailureFailsTheBlock(t *testing.T) {
	ctx := context.Background()
	blk, txs, genesis, err := TransferWorkload(600, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Commit(ctx, 1, genesis); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk gone")
	for _, workers := range []int{1, 2} {
		x := New(NewNativeRunner(NativeModules()), Options{Workers: workers})
		want, err := x.ExecuteSerial(ctx, s, blk, txs)
		if err != nil {
			t.Fatal(err)
		}
		for _, failAt := range []int{0, 2} {
			for _, serial := range []bool{false, true} {
				run := x.ExecuteBlock
				if serial {
					run = x.ExecuteSerial
				}
				if _, err := run(ctx, &failingBatch{Store: s, failAt: int32(failAt), err: boom}, blk, txs); !errors.Is(err, ErrState) || !errors.Is(err, boom) {
					t.Fatalf("%d workers, failure at read %d, serial %v: %v", workers, failAt, serial, err)
				}
				got, err := run(ctx, s, blk, txs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(encodeResult(got), encodeResult(want)) {
					t.Fatalf("%d workers: the block after a failed one differs", workers)
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

// TestByEntryMatchesGet: after prepare (numbering, the nonce order's
// permutation) and the prefetch, each transaction's own values are, entry
// by entry in execution order, what the parent holds for the entry's key
// (nil for a prefix), with 1 and 2 workers, in both chunk orders, on
// random blocks with prefixes, hot keys and senders with several
// transactions.
func TestByEntryMatchesGet(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 40, 1000)
	for seed := range uint64(4) {
		blk, txs := newGen(seed, 12).block(2, 1e9, 300)
		for _, workers := range []int{1, 2} {
			for _, parallel := range []bool{false, true} {
				x := New(NewNativeRunner(NativeModules()), Options{Workers: workers})
				bl, err := x.prepare(ctx, s, blk, txs, parallel)
				if err != nil {
					t.Fatal(err)
				}
				permuted := false
				for i := range bl.txs {
					if err := bl.feed.wait(i); err != nil {
						t.Fatal(err)
					}
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
}
