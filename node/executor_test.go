package node

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/kairos-network/kairos/types"
)

// TestBodiesFetchedFromPeers: a block whose transaction is not in this
// node's pool (here: executed already, so removed) gets the body from the
// peers' transaction records, and the fetch is counted.
func TestBodiesFetchedFromPeers(t *testing.T) {
	c := newCluster(t, 4)
	raw := counterTx(7, "k")
	id, err := c.nodes[0].SubmitTx(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor("all nodes execute", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !c.executedAll(nd, []types.Hash{id}) {
				return false
			}
		}
		return true
	})
	nd := c.nodes[1]
	// The executor removes a block's transactions after it serves the block.
	c.waitFor("node 1 drops the executed transaction", 10*time.Second, func() bool {
		_, ok := nd.pool.Get(id)
		return !ok
	})
	before := nd.bodyFetches.Load()
	raws, txs, err := nd.bodies(&types.Block{Height: 99, Txs: []types.OrderedTx{{ID: id}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raws[0], raw) || txs[0].ID() != id {
		t.Fatalf("body %x (id %s), want the submitted transaction", raws[0], txs[0].ID())
	}
	if got := nd.bodyFetches.Load() - before; got != 1 {
		t.Fatalf("body fetches counted %d, want 1", got)
	}
}
