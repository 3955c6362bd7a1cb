package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// TestRepeatKeepsFirstRecords: a block that orders an executed transaction
// again (its second run fails on its nonce) leaves the transaction's
// record and receipt those of its first height, and lists the repeat; a
// height stored a second time is not a repeat of itself.
func TestRepeatKeepsFirstRecords(t *testing.T) {
	c := newCluster(t, 4)
	ids := c.submit(0, 2)
	nd := c.nodes[0]
	c.waitFor("node 0 executes both", 60*time.Second, func() bool { return c.executedAll(nd, ids) })
	id, fresh := ids[0], ids[1]
	first, h, err := nd.Receipt(id)
	if err != nil {
		t.Fatal(err)
	}
	// A height no real block reaches in this test, written on the driver
	// as the executor writes blocks.
	const far = 1 << 40
	b := &types.Block{Height: far, Txs: []types.OrderedTx{{ID: id, TS: 1}}}
	res := &exec.DeferredBlockResult{
		BlockResult: exec.BlockResult{Receipts: []types.Receipt{{TxID: id, Status: types.StatusInvalid, Error: "bad nonce"}}},
		Deferred:    []bool{false},
	}
	var settled []types.Hash
	var serr error
	ctx := context.Background()
	if err := nd.call(ctx, func() { settled, serr = nd.storeBlock(ctx, b, [][]byte{{0}}, res) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if len(settled) != 0 {
		t.Fatalf("a repeat counted as settled: %v", settled)
	}
	again, h2, err := nd.Receipt(id)
	if err != nil || h2 != h || again.Status != first.Status || again.Error != first.Error {
		t.Fatalf("receipt after the repeat: %+v at %d (%v), want %+v at %d", again, h2, err, first, h)
	}
	if reps, err := nd.repeatsAt(ctx, far); err != nil || !slices.Equal(reps, []types.Hash{id}) {
		t.Fatalf("repeats at %d: %v, %v", far, reps, err)
	}
	// Not a repeat: a transaction never recorded is stored as usual.
	b.Height, b.Txs[0].ID, res.Receipts[0].TxID = far+1, types.Hash{7}, types.Hash{7}
	if err := nd.call(ctx, func() { settled, serr = nd.storeBlock(ctx, b, [][]byte{{0}}, res) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if !slices.Equal(settled, []types.Hash{{7}}) {
		t.Fatalf("a new transaction not settled: %v", settled)
	}
	// The same height stored again (a crash stopped it short of its root
	// record, and it runs again): its own records are no repeat.
	if err := nd.call(ctx, func() { settled, serr = nd.storeBlock(ctx, b, [][]byte{{0}}, res) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if reps, err := nd.repeatsAt(ctx, far+1); !slices.Equal(settled, []types.Hash{{7}}) || err != nil || len(reps) != 0 {
		t.Fatalf("a height stored again: settled %v, repeats %v (%v)", settled, reps, err)
	}
	if _, _, err := nd.Receipt(fresh); err != nil {
		t.Fatal(err)
	}
}
