package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// outcome is how a transaction ended: kind and the height it happened at.
type outcome struct {
	kind   string // "executed", "failed" (refused, never deferred), "expired"
	height uint64
}

// deferModel is the dumb reference of the deferral: per sender, the
// delivered transactions not settled yet; every block expires the old
// ones, then runs each sender's next nonces while they are there.
type deferModel struct {
	lim     DeferLimits
	acct    map[types.Address]uint64
	pending map[types.Address]map[uint64]*modelTx
	out     map[types.Hash]outcome
}

type modelTx struct {
	tx     *types.Tx
	expiry int64
}

func (m *deferModel) block(b *types.Block, txs []*types.Tx) {
	for s, p := range m.pending {
		for n, t := range p {
			if t.expiry < b.Time {
				m.out[t.tx.ID()] = outcome{"expired", b.Height}
				delete(p, n)
			}
		}
		_ = s
	}
	arrived := map[types.Hash]bool{}
	for i, tx := range txs {
		s := tx.SenderAddress()
		if tx.Body.ValidUntil < b.Time || tx.Body.Nonce <= m.acct[s] {
			m.out[tx.ID()] = outcome{"failed", b.Height}
			continue
		}
		if m.pending[s] == nil {
			m.pending[s] = map[uint64]*modelTx{}
		}
		m.pending[s][tx.Body.Nonce] = &modelTx{tx: tx, expiry: deferExpiry(tx, b.Txs[i].TS, m.lim)}
		arrived[tx.ID()] = true
	}
	for s, p := range m.pending {
		for {
			t, ok := p[m.acct[s]+1]
			if !ok {
				break
			}
			m.out[t.tx.ID()] = outcome{"executed", b.Height}
			delete(p, m.acct[s]+1)
			m.acct[s]++
		}
		for n, t := range p {
			if arrived[t.tx.ID()] && t.expiry < b.Time {
				m.out[t.tx.ID()] = outcome{"failed", b.Height}
				delete(p, n)
			}
		}
	}
}

// outcomes reads what the executor's result says about each transaction.
func outcomes(h uint64, b *types.Block, res *DeferredBlockResult, into map[types.Hash]outcome) error {
	set := func(id types.Hash, o outcome) error {
		if prev, ok := into[id]; ok {
			return fmt.Errorf("tx %s settled twice: %v at height %d, then %v", id, prev, prev.height, o)
		}
		into[id] = o
		return nil
	}
	for i, rc := range res.Receipts {
		if res.Deferred[i] {
			continue
		}
		kind := "executed"
		if rc.Status == types.StatusInvalid {
			kind = "failed"
		}
		if err := set(b.Txs[i].ID, outcome{kind, h}); err != nil {
			return err
		}
	}
	for _, r := range res.Resolved {
		kind := "executed"
		if r.Receipt.Status == types.StatusInvalid {
			kind = "expired"
		}
		if err := set(r.Receipt.TxID, outcome{kind, h}); err != nil {
			return err
		}
	}
	return nil
}

// deferredKeys lists the keys of DeferredModule at the store's latest
// version.
func deferredKeys(t *testing.T, s *state.Store) []string {
	t.Helper()
	var ks []string
	if err := s.Iterate(context.Background(), DeferredModule, nil, func(k, _ []byte) error {
		ks = append(ks, fmt.Sprintf("%x", k))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ks
}

// outOfOrderChain is a random stream of transfers of a few senders with
// consecutive nonces, some dropped (a gap that never closes) and some
// with a short validity, shuffled and cut into blocks one second apart.
func outOfOrderChain(seed uint64) (blocks []*types.Block, bodies [][]*types.Tx) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const start = int64(1e12)
	senders, last := 2+rng.IntN(4), 8+rng.IntN(8)
	var all []*types.Tx
	for s := range senders {
		for n := uint64(1); n <= uint64(2+rng.IntN(10)); n++ {
			if rng.IntN(12) == 0 {
				continue // never sent: the later nonces wait, then expire
			}
			valid := start + int64(last+10)*1e9
			if rng.IntN(8) == 0 {
				valid = start + int64(2+rng.IntN(last))*1e9
			}
			all = append(all, transfer(s, s+1, 1, n, valid))
		}
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for h := uint64(2); len(all) > 0; h++ {
		n := min(len(all), rng.IntN(6))
		blocks = append(blocks, mkBlock(h, start+int64(h)*1e9, all[:n]))
		bodies = append(bodies, all[:n])
		all = all[n:]
	}
	// A block long after: every transaction still waiting expires.
	h := uint64(len(blocks) + 2)
	flush := []*types.Tx{transfer(9, 8, 1, 1, start+1e15)}
	blocks = append(blocks, mkBlock(h, start+int64(h+100)*1e9, flush))
	return blocks, append(bodies, flush)
}

// TestDeferralProperty: random out-of-order nonce streams split over
// blocks. Every transaction executes exactly once in nonce order, or is
// refused or expires, exactly as the reference model says; the results
// and roots are identical with 1 and 3 workers and on a pebble store that
// is closed and reopened halfway; the set is empty at the end.
func TestDeferralProperty(t *testing.T) {
	lim := DeferLimits{PerSender: 1000, Total: 1000, MaxAge: 6e9}
	run := NewNativeRunner(NativeModules())
	xs := []*Executor{New(run, Options{Workers: 1}), New(run, Options{Workers: 3}), New(run, Options{Workers: 2})}
	ctx := context.Background()
	var executed, expired, deferredTotal, deferHints int
	for seed := range uint64(seeds(t, 40)) {
		blocks, bodies := outOfOrderChain(seed)
		stores := []*state.Store{newStore(t, 12, 1000), newStore(t, 12, 1000)}
		dir := filepath.Join(t.TempDir(), "state")
		disk, err := state.OpenPebble(dir, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := disk.Commit(ctx, 1, genesisOf(t, stores[0])); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, disk)
		m := &deferModel{lim: lim, acct: map[types.Address]uint64{}, pending: map[types.Address]map[uint64]*modelTx{}, out: map[types.Hash]outcome{}}
		got := map[types.Hash]outcome{}
		for bi, b := range blocks {
			if bi == len(blocks)/2 {
				// Restart the disk store: the set lives in the state.
				if err := stores[2].Close(); err != nil {
					t.Fatal(err)
				}
				if stores[2], err = state.OpenPebble(dir, state.Options{}); err != nil {
					t.Fatal(err)
				}
			}
			var want []byte
			var wantRoot types.Root
			for i, x := range xs {
				res, err := x.ExecuteBlockDeferred(ctx, stores[i], b, bodies[bi], lim)
				if err != nil {
					t.Fatalf("seed %d height %d: %v", seed, b.Height, err)
				}
				if _, _, err := checkHints(ctx, stores[i], res.Writes); err != nil {
					t.Fatalf("seed %d height %d: %v", seed, b.Height, err)
				}
				for _, w := range res.Writes {
					if len(w.Old) > 0 && w.Key.Module == DeferredModule {
						deferHints++
					}
				}
				root, err := stores[i].Commit(ctx, b.Height, res.Writes)
				if err != nil {
					t.Fatal(err)
				}
				enc := append(encodeResult(&res.BlockResult), types.MustEncode(res.Resolved)...)
				enc = fmt.Appendf(enc, "%v", res.Deferred)
				if i == 0 {
					want, wantRoot = enc, root
					if err := outcomes(b.Height, b, res, got); err != nil {
						t.Fatalf("seed %d: %v", seed, err)
					}
					deferredTotal += countTrue(res.Deferred)
					continue
				}
				if !bytes.Equal(enc, want) || root != wantRoot {
					t.Fatalf("seed %d height %d: executor %d differs from executor 0", seed, b.Height, i)
				}
			}
			m.block(b, bodies[bi])
		}
		for id, w := range m.out {
			if got[id] != w {
				t.Fatalf("seed %d: tx %s: got %+v, model %+v", seed, id, got[id], w)
			}
			switch w.kind {
			case "executed":
				executed++
			case "expired":
				expired++
			}
		}
		if len(got) != len(m.out) {
			t.Fatalf("seed %d: %d settled, model %d", seed, len(got), len(m.out))
		}
		if ks := deferredKeys(t, stores[0]); len(ks) != 0 {
			t.Fatalf("seed %d: deferred set not empty at the end: %v", seed, ks)
		}
		stores[2].Close()
	}
	// The generator must exercise the feature, or the test proves nothing.
	if deferredTotal == 0 || expired == 0 || executed == 0 || deferHints == 0 {
		t.Fatalf("uninteresting: %d deferred, %d executed, %d expired, %d old-value hints of the deferred set", deferredTotal, executed, expired, deferHints)
	}
	t.Logf("%d deferred, %d executed, %d expired", deferredTotal, executed, expired)
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// genesisOf returns every key of s's latest version as writes.
func genesisOf(t *testing.T, s *state.Store) []state.Write {
	t.Helper()
	var ws []state.Write
	for _, m := range []types.Address{TokenModule, ScanModule} {
		if err := s.Iterate(context.Background(), m, nil, func(k, v []byte) error {
			ws = append(ws, state.Write{Key: types.StateKey{Module: m, Key: bytes.Clone(k)}, Value: bytes.Clone(v)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

// TestDeferralCases: the limits, a re-released deferred transaction, and
// the settling of a deferred one by another with its nonce.
func TestDeferralCases(t *testing.T) {
	const T = int64(1e12)
	valid := T + 100e9
	lim := DeferLimits{PerSender: 2, Total: 3, MaxAge: 50e9}
	type blk struct {
		txs          []*types.Tx
		wantDeferred []bool
		wantResolved []string // receipt status of each resolved
		wantErr      string   // substring of some block receipt's error
	}
	n := func(s int, nonce uint64) *types.Tx { return transfer(s, 5, 1, nonce, valid) }
	other := transfer(0, 5, 2, 2, valid) // same nonce as n(0, 2), another body
	cases := []struct {
		name   string
		blocks []blk
		keys   int // keys left in DeferredModule
		maxTxs int // Options.MaxTxs (0 = default)
	}{
		{"per sender limit", []blk{
			{txs: []*types.Tx{n(0, 3), n(0, 4), n(0, 5)}, wantDeferred: []bool{true, true, false}, wantErr: "sender has 2 deferred"},
			{txs: []*types.Tx{n(0, 1), n(0, 2)}, wantDeferred: []bool{false, false}, wantResolved: []string{"ok", "ok"}},
		}, 0, 0},
		{"total limit", []blk{
			{txs: []*types.Tx{n(0, 3), n(1, 3), n(2, 3), n(3, 3)}, wantDeferred: []bool{true, true, true, false}, wantErr: "3 transactions deferred"},
		}, 3*2 + 1, 0},
		{"re-released", []blk{
			{txs: []*types.Tx{n(0, 2)}, wantDeferred: []bool{true}},
			{txs: []*types.Tx{n(0, 2)}, wantDeferred: []bool{true}},
			{txs: []*types.Tx{n(0, 1), n(0, 2)}, wantDeferred: []bool{false, false}},
		}, 0, 0},
		{"nonce taken by another", []blk{
			{txs: []*types.Tx{n(0, 2), other}, wantDeferred: []bool{true, true}},
			{txs: []*types.Tx{n(0, 1)}, wantDeferred: []bool{false}, wantResolved: []string{"invalid", "ok"}},
		}, 0, 0},
		{"deferred runs before the block's same nonce", []blk{
			{txs: []*types.Tx{n(0, 2)}, wantDeferred: []bool{true}},
			{txs: []*types.Tx{n(0, 1), other}, wantDeferred: []bool{false, false}, wantResolved: []string{"ok"}, wantErr: "bad nonce"},
		}, 0, 0},
		{"block limit holds entries back", []blk{
			{txs: []*types.Tx{n(0, 2), n(0, 3)}, wantDeferred: []bool{true, true}},
			{txs: []*types.Tx{n(0, 1), n(1, 1), n(2, 1)}, wantDeferred: []bool{false, false, false}, wantResolved: []string{}},
			{txs: []*types.Tx{n(0, 4)}, wantDeferred: []bool{false}, wantResolved: []string{"ok", "ok"}},
		}, 0, 3},
		{"gap closes partly", []blk{
			{txs: []*types.Tx{n(0, 2), n(0, 4)}, wantDeferred: []bool{true, true}},
			{txs: []*types.Tx{n(0, 1)}, wantDeferred: []bool{false}, wantResolved: []string{"ok"}},
		}, 2 + 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, 6, 1000)
			x := New(NewNativeRunner(NativeModules()), Options{Workers: 2, MaxTxs: c.maxTxs})
			for i, bk := range c.blocks {
				h := uint64(2 + i)
				b := mkBlock(h, T+int64(i)*1e9, bk.txs)
				res, err := x.ExecuteBlockDeferred(ctx, s, b, bk.txs, lim)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(res.Deferred, bk.wantDeferred) {
					t.Fatalf("block %d: deferred %v, want %v", i, res.Deferred, bk.wantDeferred)
				}
				var resolved []string
				for _, r := range res.Resolved {
					resolved = append(resolved, r.Receipt.Status.String())
				}
				slices.Sort(resolved) // the order of equal nonces is the ids'
				if bk.wantResolved != nil && !slices.Equal(resolved, bk.wantResolved) {
					t.Fatalf("block %d: resolved %v, want %v", i, resolved, bk.wantResolved)
				}
				if bk.wantErr != "" && !slices.ContainsFunc(res.Receipts, func(r types.Receipt) bool { return strings.Contains(r.Error, bk.wantErr) }) {
					t.Fatalf("block %d: no receipt says %q: %+v", i, bk.wantErr, res.Receipts)
				}
				if _, err := s.Commit(ctx, h, res.Writes); err != nil {
					t.Fatal(err)
				}
			}
			if ks := deferredKeys(t, s); len(ks) != c.keys {
				t.Fatalf("%d deferred keys left, want %d: %v", len(ks), c.keys, ks)
			}
		})
	}
}

// TestDeferralCorrupt: a deferred-set record the executor did not write
// stops the block with ErrDeferredCorrupt.
func TestDeferralCorrupt(t *testing.T) {
	ctx := context.Background()
	tx := transfer(0, 1, 1, 1, 2e12)
	a0 := addr(0)
	for name, w := range map[string]state.Write{
		"count":     {Key: types.StateKey{Module: DeferredModule, Key: deferCountKey}, Value: []byte{1}},
		"entry":     {Key: types.StateKey{Module: DeferredModule, Key: deferEntryKey(addr(0), 5, types.Hash{})}, Value: []byte{0xff}},
		"key":       {Key: types.StateKey{Module: DeferredModule, Key: append([]byte{deferEntryTag}, a0[:]...)}, Value: []byte{1}},
		"no entry":  {Key: types.StateKey{Module: DeferredModule, Key: deferExpiryKey(1, addr(0), 5, types.Hash{})}, Value: []byte{1}},
		"other key": {Key: types.StateKey{Module: DeferredModule, Key: deferEntryKey(addr(0), 5, types.Hash{})}, Value: types.MustEncode(&deferredEntry{Raw: types.MustEncode(tx)})},
	} {
		t.Run(name, func(t *testing.T) {
			ws := []state.Write{w}
			if name != "count" {
				ws = append(ws, state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferCountKey}, Value: []byte{0, 0, 0, 0, 0, 0, 0, 1}})
			}
			s := newStore(t, 2, 100, ws...)
			_, err := New(NewNativeRunner(NativeModules()), Options{}).ExecuteBlockDeferred(ctx, s, mkBlock(2, 1e12, []*types.Tx{tx}), []*types.Tx{tx}, DefaultDeferLimits)
			if !errors.Is(err, ErrDeferredCorrupt) {
				t.Fatalf("err %v, want ErrDeferredCorrupt", err)
			}
		})
	}
}

// BenchmarkDeferralOverhead: a block of 1 000 transfers of distinct
// senders executed plainly and through ExecuteBlockDeferred with an empty
// set (one read of the count), and with one transaction ahead (the full
// path: final nonces, one deferral written).
func BenchmarkDeferralOverhead(b *testing.B) {
	const n = 1000
	s := newStore(b, n+1, 1000)
	txs := make([]*types.Tx, n)
	for i := range txs {
		txs[i] = transfer(i, i+1, 1, 1, 2e12)
	}
	ahead := slices.Clone(txs)
	ahead[n-1] = transfer(n-1, n, 1, 3, 2e12)
	blk, aheadBlk := mkBlock(2, 1e12, txs), mkBlock(2, 1e12, ahead)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	ctx := context.Background()
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"plain", func() error { _, err := x.ExecuteBlock(ctx, s, blk, txs); return err }},
		{"deferred/none", func() error { _, err := x.ExecuteBlockDeferred(ctx, s, blk, txs, DefaultDeferLimits); return err }},
		{"deferred/one-ahead", func() error {
			_, err := x.ExecuteBlockDeferred(ctx, s, aheadBlk, ahead, DefaultDeferLimits)
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
