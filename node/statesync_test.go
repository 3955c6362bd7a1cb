package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// badPeer makes a node serve a wrong ordering state and corrupt snapshot
// chunks to syncing peers.
func badPeer(p protocol.ID, resp []byte) []byte {
	switch p {
	case protoSyncState:
		var r syncStateResponse
		if types.Decode(resp, &r) == nil && len(r.State) > 0 {
			r.State = append([]byte(nil), r.State...)
			r.State[len(r.State)-1] ^= 1
			return types.MustEncode(&r)
		}
	case protoSyncChunk:
		out := append([]byte(nil), resp...)
		out[len(out)-1] ^= 1
		return out
	}
	return resp
}

// TestStateSyncAfterWipe: four real nodes with a small gc depth; one is
// stopped and wiped while the others advance far beyond the gc depth, so
// the certificates it would need to replay from genesis are gone. With an
// empty disk it fetches the latest compacted checkpoint, the snapshot of
// that height (chunks from several peers, verified on arrival) and the
// ordering state, then DAG-syncs after it, executes what follows and
// reaches the same blocks and roots as the others. One peer serves a wrong
// ordering state and corrupt chunks: those are refused with their errors
// and other peers are used. The first sync is interrupted when it fetches
// chunk 2, with chunks 0 and 1 built in durable install batches; the
// restarted node's install goes on after them and fetches only the rest.
func TestStateSyncAfterWipe(t *testing.T) {
	const gc = 10
	comm := smallGCCommittee(t, 4, gc)
	errInterrupt := errors.New("test: sync interrupted")
	interrupted := false
	// One durable batch per chunk: an interrupted install resumes after
	// the last chunk it built.
	syncBatchBytes = 1
	t.Cleanup(func() { syncBatchBytes = 0 })
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee, cfg.SyncChunkLeaves = comm, 4
		switch i {
		case 2:
			cfg.tamperSync = badPeer
		case 3:
			// The first sync stops at chunk 2; the restarted node must
			// not fetch the chunks before it again.
			cfg.afterChunk = func(index int) error {
				if !interrupted && index == 2 {
					interrupted = true
					return errInterrupt
				}
				return nil
			}
		}
	})
	stopped := wipeWhileOthersAdvance(t, c, gc)
	// No transactions come until the restart below, so the peers'
	// last compaction is final once each compacted its last multiple of
	// CompactEvery: the restarted sync then finds the same checkpoint.
	c.waitFor("the peers' last compaction", 60*time.Second, func() bool {
		for _, p := range c.nodes[:3] {
			st, _, err := loadOrderingState(t.Context(), p.d, comm)
			if err != nil || st == nil || st.Height != p.Status().Height/3*3 {
				return false
			}
		}
		return true
	})
	// Replaying from genesis is impossible now: no peer holds round 1.
	for i, p := range c.nodes[:3] {
		var low uint64 = 1 << 62
		err := scanLog(t.Context(), p.d, func(_ uint64, r *consensus.Record) error {
			if r.Cert != nil {
				low = min(low, r.Cert.Header.Round)
			}
			return nil
		})
		if err != nil || low <= 1 {
			t.Fatalf("node %d still holds certificates from round %d (%v)", i, low, err)
		}
	}
	c.start(3)
	select { // the node stops itself (c.waitFor would fail on that)
	case <-c.nodes[3].Halted():
	case <-time.After(60 * time.Second):
		t.Fatal("the first sync was not interrupted")
	}
	if err := c.nodes[3].Err(); !errors.Is(err, errInterrupt) {
		t.Fatalf("interrupted sync: node error %v", err)
	}
	first := c.nodes[3].Rejected()
	c.stop(3)
	c.start(3)
	nd := c.nodes[3]
	// No transactions until the sync is done: new blocks would let the
	// peers compact past the synced height, and the node would rightly
	// move on to the newer one instead of resuming.
	c.waitFor("the restarted node syncs", 60*time.Second, func() bool { return nd.Status().Height > 0 })
	later := c.waves(200, 3)
	c.waitFor("the synced node executes the later waves", 60*time.Second, func() bool {
		return c.executedAll(nd, later)
	})
	st, cc, err := loadOrderingState(t.Context(), nd.d, comm)
	if err != nil || st == nil {
		t.Fatalf("synced node has no ordering state: %v", err)
	}
	var synced uint64
	if err := getCBOR(t.Context(), nd.d, keyPrunedTo, &synced); err != nil || synced == 0 {
		t.Fatalf("the wiped node did not start from a synced state: %v", err)
	}
	nd.sync.mu.Lock()
	chunks, resumed, fetched := nd.sync.chunks, nd.sync.resumed, nd.sync.fetched
	nd.sync.mu.Unlock()
	if resumed < 2 || resumed+fetched != chunks {
		t.Fatalf("resumed sync: %d of %d chunks found built, %d fetched", resumed, chunks, fetched)
	}
	var badState, badChunk bool
	for _, err := range append(first, nd.Rejected()...) {
		t.Logf("rejected: %v", err)
		badState = badState || errors.Is(err, ErrSyncAnswer)
		badChunk = badChunk || errors.Is(err, state.ErrChunkProof) || errors.Is(err, state.ErrChunkHash) || errors.Is(err, state.ErrChunkMalformed)
	}
	if !badState || !badChunk {
		t.Fatalf("the bad peer's ordering state refused: %v, a chunk refused: %v", badState, badChunk)
	}
	above := c.prunedTo()
	h := c.sameChainAbove(above)
	if h <= above {
		t.Fatalf("nothing to compare above height %d", above)
	}
	t.Logf("synced at height %d (round gap %d, latest compaction %d, %d of %d chunks resumed); blocks (%d, %d] equal on all nodes",
		synced, c.nodes[0].Status().Round-stopped, cc.Height, resumed, chunks, above, h)
}

// TestCatchUpAfterLongAbsence: a node that keeps its disk but stays away
// while the others advance far beyond the gc depth and compact (no peer
// holds the rounds after its last one any more) fetches the blocks up to
// their latest compacted checkpoint, verified by certificates, executes
// them, starts its core from that checkpoint's ordering state and then
// produces the same blocks and roots as the others.
//
// Checkpoints are signed every testCompactEvery heights here, so the blocks
// between them are taken on their parent links to a certified one.
func TestCatchUpAfterLongAbsence(t *testing.T) {
	const gc = 10
	small := smallGCCommittee(t, 4, gc)
	p := small.Params
	p.CheckpointInterval = testCompactEvery
	comm, err := consensus.NewCommittee(small.ChainID, small.Epoch, small.Validators, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee = comm
	})
	c.waves(0, 2)
	old := c.nodes[3]
	c.stop(3)
	last := old.round.Load()
	c.waves(100, 8)
	c.waitFor("the others advance well beyond the gc depth and compact", 60*time.Second, func() bool {
		for _, nd := range c.nodes[:3] {
			if nd.Status().Round < last+4*gc || nd.cmp.runs.Load() < 2 {
				return false
			}
		}
		return true
	})
	c.cutLogsPast(last)
	c.start(3)
	nd := c.nodes[3]
	later := c.waves(200, 3)
	c.waitFor("the node back executes the later waves", 60*time.Second, func() bool {
		return c.executedAll(nd, later)
	})
	nd.sync.mu.Lock()
	blocks := nd.sync.blocks
	nd.sync.mu.Unlock()
	if blocks == 0 {
		t.Fatal("the node caught up without fetching blocks: the test does not cover a long absence")
	}
	h := c.sameChainAbove(c.prunedTo())
	t.Logf("absent from round %d; caught up %d blocks; blocks up to %d equal on all nodes", last, blocks, h)
}

// TestStateSyncMovesOn: while a wiped node fetches the snapshot of the
// peers' compacted checkpoint, they advance and compact past it and stop
// serving it. The node must move on to their newer checkpoint and still
// end at their blocks and roots.
func TestStateSyncMovesOn(t *testing.T) {
	const gc = 10
	comm := smallGCCommittee(t, 4, gc)
	var c *cluster
	var mu sync.Mutex // the hook runs on the node's goroutine
	var hookErr error
	hooked := false
	c = newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee, cfg.SyncChunkLeaves = comm, 1 // many chunks: most are fetched after the hook
		if i != 3 {
			return
		}
		cfg.afterChunk = func(int) error {
			mu.Lock()
			defer mu.Unlock()
			if !hooked {
				hooked = true
				hookErr = advancePeers(c, comm, 300)
			}
			return nil
		}
	})
	wipeWhileOthersAdvance(t, c, gc)
	c.start(3)
	nd := c.nodes[3]
	c.waitFor("the wiped node syncs", 90*time.Second, func() bool { return nd.Status().Height > 0 })
	mu.Lock()
	herr, hk := hookErr, hooked
	mu.Unlock()
	if herr != nil {
		t.Fatal(herr)
	}
	nd.sync.mu.Lock()
	moves := nd.sync.moves
	nd.sync.mu.Unlock()
	if !hk || moves == 0 {
		t.Fatalf("the sync did not move on (hooked %v, moves %d)", hk, moves)
	}
	later := c.waves(400, 2)
	c.waitFor("the synced node executes the later waves", 60*time.Second, func() bool {
		return c.executedAll(nd, later)
	})
	c.sameChainAbove(nd.Status().Height - 1)
}

// wipeWhileOthersAdvance stops validator 3 and deletes its disk, then runs
// transactions until the others are well beyond the gc depth and have
// compacted twice: replaying from genesis is no longer possible for it.
// It returns the round at which validator 3 stopped.
func wipeWhileOthersAdvance(t *testing.T, c *cluster, gc uint64) (stopped uint64) {
	t.Helper()
	c.waves(0, 2)
	c.stop(3)
	if err := os.RemoveAll(c.dirs[3]); err != nil {
		t.Fatal(err)
	}
	stopped = c.nodes[0].Status().Round
	c.waves(100, 8)
	c.waitFor("the others advance well beyond the gc depth and compact", 60*time.Second, func() bool {
		for _, nd := range c.nodes[:3] {
			if nd.Status().Round < stopped+4*gc || nd.cmp.runs.Load() < 2 {
				return false
			}
		}
		return true
	})
	return stopped
}

// advancePeers submits transactions to validators 0–2 until each has
// compacted at a height above the one they served when it was called.
func advancePeers(c *cluster, comm *consensus.Committee, from int) error {
	ctx := context.Background()
	st, _, err := loadOrderingState(ctx, c.nodes[0].d, comm)
	if err != nil || st == nil {
		return fmt.Errorf("peer 0 has no compacted state: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := from; time.Now().Before(deadline); i++ {
		if _, err := c.nodes[i%3].SubmitTx(ctx, counterTx(i, fmt.Sprintf("k%d", i%3))); err != nil {
			return err
		}
		past := 0
		for _, p := range c.nodes[:3] {
			if s, _, err := loadOrderingState(ctx, p.d, comm); err == nil && s != nil && s.Height > st.Height {
				past++
			}
		}
		if past == 3 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the peers did not compact past height %d", st.Height)
}

// cutLogsPast submits waves to the running nodes until none holds a
// certificate of a round up to last+1 in its log: a log is cut at the
// previous compaction's gc round, so the rounds right after an absent
// node's last may survive a while, and more blocks bring more compactions.
func (c *cluster) cutLogsPast(last uint64) {
	c.t.Helper()
	for w := 0; ; w++ {
		held := ""
		for i, p := range c.nodes {
			if p == nil {
				continue
			}
			var low uint64 = 1 << 62
			err := scanLog(context.Background(), p.d, func(_ uint64, r *consensus.Record) error {
				if r.Cert != nil {
					low = min(low, r.Cert.Header.Round)
				}
				return nil
			})
			if err != nil || low <= last+1 {
				held = fmt.Sprintf("node %d still holds certificates from round %d, the absent node's last is %d (%v)", i, low, last, err)
			}
		}
		if held == "" {
			return
		}
		if w == 10 {
			c.t.Fatal(held)
		}
		c.waves(300+10*w, 1)
	}
}
