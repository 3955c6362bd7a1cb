package node

import (
	"testing"
	"time"
)

// TestStateSyncWhileRunning: validator 3 is cut off while the others
// advance, compact, and prune their blocks past its state (RetainBlocks is
// small), so a catch-up by blocks cannot work. Reconnected, without a
// restart, it syncs the state of their compacted checkpoint over its own
// non-empty store, replaces its core, and then executes new transactions
// with the same blocks and roots as the others.
func TestStateSyncWhileRunning(t *testing.T) {
	const gc, retain = 10, 3
	comm := smallGCCommittee(t, 4, gc)
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee, cfg.RetainBlocks = comm, retain
	})
	c.waves(0, 2)
	nd := c.nodes[3]
	t.Cleanup(func() { nd.Close() }) // Close is idempotent
	nd.isolated.Store(true)
	c.nodes[3] = nil // the waves neither submit to it nor wait for it
	last := nd.round.Load()
	behind := nd.Status().Height
	middle := c.waves(100, 8)
	c.waitFor("the others compact and prune their blocks past the cut-off node's state", 60*time.Second, func() bool {
		for _, p := range c.nodes[:3] {
			if p.Status().Round < last+4*gc || p.cmp.runs.Load() < 2 || !p.pruned(behind+1) {
				return false
			}
		}
		return true
	})
	c.cutLogsPast(last)
	// Transaction gossip reaches the cut-off node; the blocks that executed
	// these transactions it never gets.
	inPool := func() (k int) {
		for _, id := range middle {
			if _, ok := nd.pool.Get(id); ok {
				k++
			}
		}
		return k
	}
	held := inPool()
	if held == 0 {
		t.Fatal("the cut-off node holds none of the transactions executed meanwhile: the pool cleanup is not covered")
	}
	nd.isolated.Store(false)
	// Transactions the others execute before the node has synced are in
	// the synced state but not in its receipts (it never gets their
	// blocks), so the later waves wait for the rejoin.
	replaces := 0
	c.waitFor("a state sync while running", 60*time.Second, func() bool {
		if err := nd.Err(); err != nil {
			t.Fatalf("the cut-off node halted: %v", err)
		}
		nd.sync.mu.Lock()
		defer nd.sync.mu.Unlock()
		replaces = nd.sync.replaces
		return replaces > 0 && nd.sync.rejoins > 0
	})
	c.nodes[3] = nd
	// waves waits for every running node, nd among them, to execute each
	// wave: asking again afterwards would race the compactor pruning the
	// receipts (RetainBlocks is 3).
	c.waves(200, 3)
	// Those executed at or below the synced height were dropped by the
	// sync, those above it by executing their blocks.
	if k := inPool(); k != 0 {
		t.Fatalf("%d of the %d held transactions the others executed meanwhile are still in the pool", k, held)
	}
	if _, _, err := nd.Block(behind); err == nil {
		t.Fatalf("block %d from before the cut-off is still held after the state sync", behind)
	}
	h := c.sameChainAbove(c.prunedTo())
	t.Logf("cut off at round %d height %d; %d state syncs while running; blocks up to %d equal on all nodes", last, behind, replaces, h)
}
