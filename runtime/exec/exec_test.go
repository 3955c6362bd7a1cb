package exec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// seeds returns how many random seeds a property test runs: a few in
// `make test`, more with KAIROS_EXEC_SEEDS=N.
func seeds(t *testing.T, def int) int {
	if s := os.Getenv("KAIROS_EXEC_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("KAIROS_EXEC_SEEDS=%q: %v", s, err)
		}
		return n
	}
	return def
}

// config is one way of executing blocks.
type config struct {
	name string
	x    *Executor
	// serial selects ExecuteSerial.
	serial bool
}

func configs(r Runner) []config {
	cs := []config{{name: "serial", x: New(r, Options{}), serial: true}}
	for _, w := range []int{1, 2, 3, 8} {
		cs = append(cs, config{name: fmt.Sprintf("workers=%d", w), x: New(r, Options{Workers: w})})
	}
	return cs
}

func (c config) execute(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx) (*BlockResult, error) {
	if c.serial {
		return c.x.ExecuteSerial(ctx, parent, b, txs)
	}
	return c.x.ExecuteBlock(ctx, parent, b, txs)
}

// runChain executes the same random chain under every config, each into
// its own real store, and returns the first difference from the first
// config: result bytes or state root. The writes' old-value hints are not
// part of the result compared (they differ by path: a write under a
// prefix has none): each must be the parent's value instead, and every
// config must give some in a chain of 20 transactions or more.
func runChain(t *testing.T, seed uint64, cs []config, blocks, txsPerBlock int, w *wasmWorld) error {
	t.Helper()
	ctx := context.Background()
	const senders = 10
	stores := make([]*state.Store, len(cs))
	var genesis []state.Write
	g := newGen(seed, senders)
	if w != nil {
		genesis, g.wasm = w.genesis, w
	}
	for i := range cs {
		stores[i] = newStore(t, senders+4, 1000, genesis...)
	}
	// Writes of a present key carry its old value, except writes under a
	// declared prefix: a chain of a few transactions may replace only
	// those, so only a longer one must give some write a hint.
	hinted, replacing := make([]int, len(cs)), make([]int, len(cs))
	defer func() {
		for i, n := range hinted {
			if n == 0 && replacing[i] > 0 && blocks*txsPerBlock >= 20 && !t.Failed() {
				t.Errorf("seed %d: %s gave none of %d writes of a present key an old-value hint", seed, cs[i].name, replacing[i])
			}
		}
	}()
	for h := uint64(2); h < uint64(2+blocks); h++ {
		b, txs := g.block(h, int64(h)*1e12, txsPerBlock)
		var want []byte
		var wantRoot types.Root
		for i, c := range cs {
			res, err := c.execute(ctx, stores[i], b, txs)
			if err != nil {
				t.Fatalf("seed %d height %d %s: %v", seed, h, c.name, err)
			}
			n, r, err := checkHints(ctx, stores[i], res.Writes)
			if err != nil {
				return fmt.Errorf("seed %d height %d %s: %w", seed, h, c.name, err)
			}
			hinted[i] += n
			replacing[i] += r
			root, err := stores[i].Commit(ctx, h, res.Writes)
			if err != nil {
				t.Fatalf("seed %d height %d %s: commit: %v", seed, h, c.name, err)
			}
			got := encodeResult(res)
			if i == 0 {
				want, wantRoot = got, root
				continue
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("seed %d height %d: %s result differs from %s", seed, h, c.name, cs[0].name)
			}
			if root != wantRoot {
				return fmt.Errorf("seed %d height %d: %s root %s != %s root %s", seed, h, c.name, root, cs[0].name, wantRoot)
			}
		}
	}
	return nil
}

// TestParallelEqualsSerial is the metamorphic test of the package: random
// blocks executed serially and with 1, 2, 3 and 8 workers give identical
// receipts, events, gas, write sets and state roots.
func TestParallelEqualsSerial(t *testing.T) {
	cs := configs(NewNativeRunner(NativeModules()))
	for seed := range uint64(seeds(t, 40)) {
		if err := runChain(t, seed, cs, 3, 60, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRandomBlocksAreInteresting guards the generator: the random blocks
// must actually contain every status, or the equality test proves little.
func TestRandomBlocksAreInteresting(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 14, 1000)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	g := newGen(1, 10)
	seen := map[types.Status]int{}
	for h := uint64(2); h < 6; h++ {
		b, txs := g.block(h, int64(h)*1e12, 100)
		res, err := x.ExecuteBlock(ctx, s, b, txs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Receipts {
			seen[r.Status]++
		}
		if _, err := s.Commit(ctx, h, res.Writes); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("statuses: %v", seen)
	for st := types.StatusOK; st <= types.StatusInvalid; st++ {
		if st == types.StatusTrapped {
			continue // native modules cannot trap
		}
		if seen[st] == 0 {
			t.Errorf("no %s transaction in 400 random ones: %v", st, seen)
		}
	}

	// With wasm: lifecycle transactions succeed and fail in the mix.
	w := wasmSetup(t, 3)
	s = newStore(t, 14, 1000, w.genesis...)
	x = New(w.runner, Options{Workers: 2})
	g = newGen(1, 10)
	g.wasm = w
	life := map[string]int{}
	for h := uint64(2); h < 8; h++ {
		b, txs := g.block(h, int64(h)*1e12, 100)
		res, err := x.ExecuteBlock(ctx, s, b, txs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res.Receipts {
			life[txs[i].Body.Payload.Kind.String()+"/"+r.Status.String()]++
		}
		if _, err := s.Commit(ctx, h, res.Writes); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wasm mix: %v", life)
	for _, k := range []string{"deploy/ok", "upgrade/ok", "upgrade/aborted", "set-admin/ok", "call/access_violation", "call/out_of_gas", "call/trapped"} {
		if life[k] == 0 {
			t.Errorf("no %s in the wasm mix: %v", k, life)
		}
	}
}

// TestComparisonCanFail runs the same comparison against an executor that
// merges write sets in reverse block order: it must be caught.
func TestComparisonCanFail(t *testing.T) {
	r := NewNativeRunner(NativeModules())
	broken := config{name: "reverse-merge", x: New(r, Options{Workers: 2, reverseMerge: true})}
	cs := []config{configs(r)[0], broken}
	caught := 0
	for seed := range uint64(5) {
		if err := runChain(t, seed, cs, 2, 60, nil); err != nil {
			caught++
		}
	}
	if caught == 0 {
		t.Fatal("a reverse-order merge went unnoticed on every seed")
	}
	// And on a minimal block: two increments of one counter.
	ctx := context.Background()
	s := newStore(t, 2, 0)
	k := []byte("k")
	txs := []*types.Tx{
		mkTx(0, 1, 1e18, call(CounterModule, "incr", k), rw(CounterModule, k)),
		mkTx(1, 1, 1e18, call(CounterModule, "incr", k), rw(CounterModule, k)),
	}
	b := mkBlock(2, 1e12, txs)
	good, err := New(r, Options{Workers: 2}).ExecuteBlock(ctx, s, b, txs)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := broken.x.ExecuteBlock(ctx, s, b, txs)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(encodeResult(good), encodeResult(bad)) {
		t.Fatal("reverse merge gave the same write set")
	}
	if got := valueOf(good.Writes, CounterModule, k); u64(got) != 2 {
		t.Fatalf("counter = %d, want 2", u64(got))
	}
}

func valueOf(ws []state.Write, module types.Address, k []byte) []byte {
	for _, w := range ws {
		if w.Key.Module == module && bytes.Equal(w.Key.Key, k) {
			return w.Value
		}
	}
	return nil
}

// FuzzParallelEqualsSerial explores generator seeds, block sizes and worker
// counts: serial and parallel execution must agree.
func FuzzParallelEqualsSerial(f *testing.F) {
	f.Add(uint64(0), uint8(40), uint8(2))
	f.Add(uint64(7), uint8(200), uint8(3))
	f.Add(uint64(99), uint8(1), uint8(8))
	r := NewNativeRunner(NativeModules())
	f.Fuzz(func(t *testing.T, seed uint64, n, workers uint8) {
		cs := []config{configs(r)[0], {name: fmt.Sprintf("workers=%d", workers%16+1), x: New(r, Options{Workers: int(workers%16) + 1})}}
		if err := runChain(t, seed, cs, 2, int(n), nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestResultsOutliveTheScratch: an executor reuses a block's working
// memory (its scratch, with the entries' key strings) for its next block,
// so a result must own everything in it. Metamorphic: the encoded results
// of earlier blocks read the same after the same executor ran later
// blocks, in every configuration.
func TestResultsOutliveTheScratch(t *testing.T) {
	ctx := context.Background()
	for _, c := range configs(NewNativeRunner(NativeModules())) {
		s := newStore(t, 30, 1000)
		var kept []*BlockResult
		var want [][]byte
		for h := uint64(2); h < 6; h++ {
			// Other senders each block, so other keys, in fewer
			// transactions (a later block fits in the arrays of an
			// earlier one): a kept result that shared the scratch would
			// see them. Several listing parts each.
			b, txs := newGen(h, 30-5*int(h)).block(h, int64(h)*1e12, 1000-100*int(h))
			res, err := c.execute(ctx, s, b, txs)
			if err != nil {
				t.Fatalf("%s height %d: %v", c.name, h, err)
			}
			kept, want = append(kept, res), append(want, encodeResult(res))
			for i := range kept {
				if !bytes.Equal(encodeResult(kept[i]), want[i]) {
					t.Fatalf("%s: the result of height %d changed while height %d ran", c.name, 2+i, h)
				}
			}
		}
	}
}

// TestConcurrentBlocksShareNoScratch: blocks run at once on one executor
// each get their own working memory (one takes the spare scratch, the
// others new ones): each result equals that block's serial result on a
// fresh executor. Run with -race, it also checks the hand-over.
func TestConcurrentBlocksShareNoScratch(t *testing.T) {
	ctx := context.Background()
	r := NewNativeRunner(NativeModules())
	s := newStore(t, 30, 1000)
	type blk struct {
		b    *types.Block
		txs  []*types.Tx
		want []byte
	}
	var blocks []blk
	for h := uint64(2); h < 6; h++ {
		b, txs := newGen(h, 30-5*int(h)).block(h, int64(h)*1e12, 1000-100*int(h))
		res, err := New(r, Options{}).ExecuteSerial(ctx, s, b, txs)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, blk{b, txs, encodeResult(res)})
	}
	x := New(r, Options{Workers: 2})
	for range 3 {
		errs := make(chan error, len(blocks))
		for _, bk := range blocks {
			go func() {
				res, err := x.ExecuteBlock(ctx, s, bk.b, bk.txs)
				if err == nil && !bytes.Equal(encodeResult(res), bk.want) {
					err = fmt.Errorf("height %d: result differs from serial", bk.b.Height)
				}
				errs <- err
			}()
		}
		for range blocks {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
