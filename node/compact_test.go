package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// testCompactEvery is the compaction interval of smallGCCommittee.
const testCompactEvery = 3

// smallGCCommittee is testCommittee with a gc depth of gc rounds and
// compaction every testCompactEvery heights, so that compaction has log
// records to drop within a short test.
func smallGCCommittee(t testing.TB, n int, gc uint64) *consensus.Committee {
	c := testCommittee(t, n)
	p := c.Params
	p.GCDepth, p.CompactEvery = gc, testCompactEvery
	cc, err := consensus.NewCommittee(c.ChainID, c.Epoch, c.Validators, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// waves submits txs in waves of three, waiting for every running node to
// execute each wave, so that every wave makes at least one block.
func (c *cluster) waves(from, n int) []types.Hash {
	c.t.Helper()
	var all []types.Hash
	for w := 0; w < n; w++ {
		ids := c.submit(from+3*w, from+3*w+3)
		c.waitFor(fmt.Sprintf("wave %d executed", w), 60*time.Second, func() bool {
			for _, nd := range c.nodes {
				if nd != nil && !c.executedAll(nd, ids) {
					return false
				}
			}
			return true
		})
		all = append(all, ids...)
	}
	return all
}

// sameChainAbove checks that the running nodes hold identical blocks and
// roots in (from, lowest height] and returns the lowest height.
func (c *cluster) sameChainAbove(from uint64) uint64 {
	c.t.Helper()
	low, _ := c.compareChainsAbove(from)
	return low
}

// compareChainsAbove is sameChainAbove, also returning how many heights
// it compared. A height that a node's compactor prunes while the heights
// are read (compaction goes on after the caller's last wait: a
// certificate completes, the compactor takes it) is skipped: from, read
// before, does not bound what is pruned meanwhile.
func (c *cluster) compareChainsAbove(from uint64) (low uint64, compared int) {
	c.t.Helper()
	low = uint64(1 << 63)
	for _, nd := range c.nodes {
		if nd != nil {
			low = min(low, nd.Status().Height)
		}
	}
heights:
	for h := from + 1; h <= low; h++ {
		var ref *types.Block
		var refRoot types.Root
		for i, nd := range c.nodes {
			if nd == nil {
				continue
			}
			b, root, err := nd.Block(h)
			if errors.Is(err, ErrNotFound) && nd.pruned(h) {
				continue heights
			}
			if err != nil {
				c.t.Fatalf("node %d block %d: %v", i, h, err)
			}
			if ref == nil {
				ref, refRoot = b, root
			} else if b.ID() != ref.ID() || root != refRoot {
				c.t.Fatalf("node %d differs at height %d", i, h)
			}
		}
		compared++
	}
	return low, compared
}

// loadOrderingStateAt reads the persisted ordering state of a stopped
// node's directory.
func loadOrderingStateAt(t *testing.T, dir string, comm *consensus.Committee) (*consensus.OrderingState, *consensus.CheckpointCert, error) {
	s, err := state.OpenPebble(filepath.Join(dir, "db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return loadOrderingState(context.Background(), s.Datastore(), comm)
}

// prunedTo returns the highest pruned height among the running nodes.
func (c *cluster) prunedTo() uint64 {
	c.t.Helper()
	var top uint64
	for _, nd := range c.nodes {
		var h uint64
		if nd == nil || getCBOR(context.Background(), nd.d, keyPrunedTo, &h) != nil {
			continue
		}
		top = max(top, h)
	}
	return top
}

// TestCompactionRestart: nodes persist a certified ordering state every
// few heights, drop the log records below the previous one's gc round and
// the blocks below the retention; a node restarted after compactions reads
// only the tail of its log, continues from the ordering state, and then
// produces the same blocks and roots as the others.
func TestCompactionRestart(t *testing.T) {
	comm := smallGCCommittee(t, 4, 20)
	const every, retain = testCompactEvery, 4
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee, cfg.RetainBlocks = comm, retain
	})
	first := c.waves(0, 12)
	c.waitFor("two compactions with log records dropped on every node", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.cmp.runs.Load() < 2 || nd.cmp.deleted.Load() == 0 {
				return false
			}
		}
		return true
	})
	st, cc, err := loadOrderingState(context.Background(), c.nodes[0].d, comm)
	if err != nil || st == nil {
		t.Fatalf("persisted ordering state: %v, %v", st, err)
	}
	if cc.OrderingStateHash == ([32]byte{}) || cc.Height != st.Height {
		t.Fatalf("certificate of the persisted state: %+v", cc)
	}
	// Blocks at or below the retention are gone, with their receipts.
	pruned := st.Height - retain
	if _, _, err := c.nodes[0].Block(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("block 1 after pruning to %d: %v", pruned, err)
	}
	if _, _, err := c.nodes[0].Receipt(first[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("receipt in block 1 after pruning: %v", err)
	}

	// Restarted at once: a node that stays away longer than the gc depth
	// plus the peers' log retention needs a state sync instead.
	old := c.nodes[1]
	c.stop(1)
	appended := old.logSeq // sequence numbers count every record ever appended
	if st, _, err := loadOrderingStateAt(t, c.dirs[1], comm); st == nil || err != nil {
		t.Fatalf("stopped node has no ordering state to restart from: %v", err)
	}
	c.start(1)
	nd := c.nodes[1]
	if nd.logRead == 0 || uint64(nd.logRead) >= appended {
		t.Fatalf("restart read %d records of %d appended: the log was not compacted", nd.logRead, appended)
	}
	t.Logf("restart read %d of %d log records, ordering state at height %d", nd.logRead, appended, st.Height)
	// The waves are the check that the restarted node executes what it
	// missed and then keeps up: each waits for every running node, this
	// one too, to execute it before the next is sent. Asking for the
	// receipts of all the waves afterwards raced the compactors (a
	// failure seen once): with RetainBlocks 4, the compaction at the
	// checkpoint after the last wave may prune the first wave's records.
	c.waves(100, 6)
	above := c.prunedTo()
	h, compared := c.compareChainsAbove(above)
	if compared < 3 {
		t.Fatalf("only %d heights of (%d, %d] left to compare", compared, above, h)
	}
	t.Logf("after the restart: %d blocks of (%d, %d] equal on all nodes", compared, above, h)
}

// TestLoadOrderingState: the pair written last is read back; a record
// whose state does not hash to its certificate's value, or that does not
// decode, is ErrCorrupt; none is nils.
func TestLoadOrderingState(t *testing.T) {
	ctx := context.Background()
	comm := testCommittee(t, 4)
	d := dssync.MutexWrap(ds.NewMapDatastore())
	put := func(stateHeight, certHeight uint64) {
		st := &consensus.OrderingState{Height: stateHeight, Order: orderState(stateHeight)}
		cert := &consensus.OrderingState{Height: certHeight, Order: orderState(certHeight)}
		rec := encodeOrderingPair(&consensus.CheckpointCert{Height: certHeight, OrderingStateHash: cert.Hash()}, st.Encode())
		if err := d.Put(ctx, keyOState, rec); err != nil {
			t.Fatal(err)
		}
	}
	if st, cc, err := loadOrderingState(ctx, d, comm); st != nil || cc != nil || err != nil {
		t.Fatalf("nothing persisted: %+v, %+v, %v; want nils", st, cc, err)
	}
	put(2, 2)
	put(3, 3)
	if st, cc, err := loadOrderingState(ctx, d, comm); err != nil || st.Height != 3 || cc.Height != 3 {
		t.Fatalf("state %+v, certificate %+v, %v; want the pair of 3", st, cc, err)
	}
	put(2, 3)
	if _, _, err := loadOrderingState(ctx, d, comm); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("mismatched pair: %v, want %v", err, ErrCorrupt)
	}
	if err := d.Put(ctx, keyOState, []byte{0x82, 0x01}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrderingState(ctx, d, comm); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("record that does not decode: %v, want %v", err, ErrCorrupt)
	}
}
