package node

import (
	"testing"
	"time"
)

// TestRejoinWhileRunning: validator 3 is cut off from the network (every
// consensus message in and out dropped, requests failing) while the others
// advance far beyond the gc depth and compact their logs past its last
// round. Reconnected, without a restart, it finds itself behind their
// compacted checkpoint, catches up by certified blocks, replaces its core
// and then executes new transactions with the same blocks and roots.
func TestRejoinWhileRunning(t *testing.T) {
	const gc = 10
	comm := smallGCCommittee(t, 4, gc)
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee = comm
	})
	c.waves(0, 2)
	nd := c.nodes[3]
	t.Cleanup(func() { nd.Close() }) // Close is idempotent
	nd.isolated.Store(true)
	c.nodes[3] = nil // the waves neither submit to it nor wait for it
	last := nd.round.Load()
	c.waves(100, 8)
	c.waitFor("the others advance well beyond the gc depth and compact", 60*time.Second, func() bool {
		for _, p := range c.nodes[:3] {
			if p.Status().Round < last+4*gc || p.cmp.runs.Load() < 2 {
				return false
			}
		}
		return true
	})
	c.cutLogsPast(last)
	behind := nd.Status().Height
	nd.isolated.Store(false)
	c.nodes[3] = nd
	later := c.waves(200, 3)
	c.waitFor("the rejoined node executes the later waves", 60*time.Second, func() bool {
		return c.executedAll(nd, later)
	})
	nd.sync.mu.Lock()
	rejoins, blocks := nd.sync.rejoins, nd.sync.blocks
	nd.sync.mu.Unlock()
	if rejoins == 0 || blocks == 0 {
		t.Fatalf("rejoined with %d catch-ups of %d blocks: the test does not cover a node stuck behind compacted logs", rejoins, blocks)
	}
	h := c.sameChainAbove(c.prunedTo())
	t.Logf("cut off at round %d height %d; %d catch-ups of %d blocks; blocks up to %d equal on all nodes", last, behind, rejoins, blocks, h)
}
