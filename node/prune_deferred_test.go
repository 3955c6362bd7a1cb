package node

import (
	"context"
	"errors"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// TestPruneDeferredRecords: pruning a height keeps the records of a
// transaction deferred there (the height that settled it owns them now)
// and deletes those of the transactions settled there, including the
// earlier-deferred ones; the per-height record goes with its height.
func TestPruneDeferredRecords(t *testing.T) {
	ctx := context.Background()
	n := driverNode(t, dssync.MutexWrap(ds.NewMapDatastore()))
	a, b, c := types.Hash{1}, types.Hash{2}, types.Hash{3}
	put := func(k ds.Key, v any) {
		t.Helper()
		if err := n.d.Put(ctx, k, types.MustEncode(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Height 1 orders a (deferred) and b; height 2 orders c and settles a.
	put(heightKey(nsBlock, 1), &types.Block{Height: 1, Txs: []types.OrderedTx{{ID: a}, {ID: b}}})
	put(heightKey(nsBlock, 2), &types.Block{Height: 2, Txs: []types.OrderedTx{{ID: c}}})
	put(heightKey(nsHeightTxs, 1), &heightTxs{Deferred: []types.Hash{a}})
	put(heightKey(nsHeightTxs, 2), &heightTxs{Resolved: []types.Hash{a}})
	for id, h := range map[types.Hash]uint64{a: 2, b: 1, c: 2} {
		put(idKey(nsTx, id), &txRecord{Height: h, Receipt: &types.Receipt{TxID: id}})
	}
	held := func(id types.Hash) bool {
		t.Helper()
		ok, err := n.d.Has(ctx, idKey(nsTx, id))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if err := n.pruneBlocks(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !held(a) || held(b) || !held(c) {
		t.Fatalf("after pruning height 1: a %v (want kept), b %v (want gone), c %v (want kept)", held(a), held(b), held(c))
	}
	if err := n.pruneBlocks(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if held(a) || held(c) {
		t.Fatalf("after pruning height 2: a %v, c %v (want both gone)", held(a), held(c))
	}
	for h := uint64(1); h <= 2; h++ {
		if _, err := n.d.Get(ctx, heightKey(nsHeightTxs, h)); !errors.Is(err, ds.ErrNotFound) {
			t.Fatalf("height record %d after pruning: %v", h, err)
		}
	}
}
