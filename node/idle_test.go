package node

import (
	"context"
	"errors"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/consensus"
)

// TestIdleChainCompacts: a chain without transactions still makes empty
// blocks (EmptyBlockInterval), signs checkpoints at multiples of the
// genesis CheckpointInterval only, and compacts at multiples of the
// genesis CompactEvery, identically on every node.
func TestIdleChainCompacts(t *testing.T) {
	base := testCommittee(t, 4)
	p := base.Params
	p.GCDepth, p.EmptyBlockInterval, p.CheckpointInterval, p.CompactEvery = 20, int64(100*time.Millisecond), 2, 4
	comm, err := consensus.NewCommittee(base.ChainID, base.Epoch, base.Validators, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, 4, func(i int, cfg *Config) { cfg.Committee = comm })
	c.waitFor("two compactions on every node without a transaction", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.cmp.runs.Load() < 2 {
				return false
			}
		}
		return true
	})
	h := c.sameChain()
	ctx := context.Background()
	for i, nd := range c.nodes {
		for k := uint64(1); k <= h; k++ {
			b, _, err := nd.Block(k)
			if errors.Is(err, ErrNotFound) && nd.pruned(k) {
				continue
			}
			if err != nil || len(b.Txs) != 0 {
				t.Fatalf("node %d height %d: %+v, %v", i, k, b, err)
			}
			// Odd heights are never certified; the two compacted
			// heights (4 and 8, reached by every node) are.
			_, err = nd.d.Get(ctx, heightKey(nsCP, k))
			if err != nil && !errors.Is(err, ds.ErrNotFound) {
				t.Fatal(err)
			}
			if certified := err == nil; (k%2 == 1 && certified) || (k%4 == 0 && k <= 8 && !certified) {
				t.Fatalf("node %d height %d: certificate held: %v", i, k, certified)
			}
		}
	}
	t.Logf("height %d, all empty", h)
}
