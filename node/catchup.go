package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// Catch-up of a node whose disk is intact but whose state is behind the
// peers' latest compacted checkpoint (it was away longer than the peers'
// gc depth plus their log retention, so it cannot replay the DAG): before
// its core starts it fetches the blocks up to that checkpoint in runs that
// end at a checkpoint height (consensus.Params.CheckpointInterval): the
// run's certificate names its last block and each block names its parent.
// It executes them and checks the root at every checkpoint height, then
// starts its core from the checkpoint's ordering state and DAG-syncs after
// it. Blocks are kept for RetainBlocks heights, so this works for a lag of
// up to that many blocks; beyond it a restart needs an empty disk, while a
// running node syncs the checkpoint's state over its own (syncReplace).
const protoSyncBlock protocol.ID = "/kairos/sync/block/1"

type syncBlockResponse struct {
	_     struct{} `cbor:",toarray"`
	Block types.Block
	Cert  consensus.CheckpointCert
}

// serveSyncBlock answers with the executed block of a height and the
// checkpoint certificate of that height (none between checkpoint heights).
func (n *Node) serveSyncBlock(ctx context.Context, _ peer.ID, req []byte) ([]byte, error) {
	var r syncChunkRequest
	if err := decodeSyncRequest(req, &r); err != nil {
		return nil, err
	}
	if h, _ := n.servedLatest(); r.Height > h {
		return nil, fmt.Errorf("%w: block %d not served", ErrNotFound, r.Height)
	}
	var resp syncBlockResponse
	if err := getCBOR(ctx, n.d, heightKey(nsBlock, r.Height), &resp.Block); err != nil {
		return nil, err
	}
	// Only checkpoint heights have certificates; a block between them is
	// served without one (a zero certificate) and checked by its links.
	if err := getCBOR(ctx, n.d, heightKey(nsCP, r.Height), &resp.Cert); err != nil &&
		(!errors.Is(err, ErrNotFound) || r.Height%n.cfg.Committee.Params.CheckpointInterval == 0) {
		return nil, err
	}
	return types.MustEncode(&resp), nil
}

// checkSyncBlock verifies a fetched block: a quorum certificate of its
// height that names its id.
func checkSyncBlock(comm *consensus.Committee, h uint64, r *syncBlockResponse) error {
	if err := comm.CheckCheckpointCert(&r.Cert); err != nil {
		return fmt.Errorf("%w: block %d: certificate: %w", ErrSyncAnswer, h, err)
	}
	if r.Block.Height != h || r.Cert.Height != h || r.Block.ID() != types.Hash(r.Cert.BlockID) {
		return fmt.Errorf("%w: block %d: block of height %d id %s under a certificate of %d naming %x",
			ErrSyncAnswer, h, r.Block.Height, r.Block.ID(), r.Cert.Height, r.Cert.BlockID)
	}
	return nil
}

// fetchBlockRun fetches blocks from..top from one peer, trying each in
// turn, and checks them: the certificate of top names top's id, and each
// block's parent is the id of the one before it. One honest peer that
// holds them is enough: a run that fails the checks is not mixed with
// another peer's blocks but fetched again elsewhere.
func (n *Node) fetchBlockRun(comm *consensus.Committee, from, top uint64) ([]syncBlockResponse, error) {
	var got []syncBlockResponse
	n.tryPeers(func(v uint32) bool {
		run := make([]syncBlockResponse, top-from+1)
		for i := range run {
			if err := n.request(v, protoSyncBlock, &syncChunkRequest{Height: from + uint64(i)}, &run[i]); err != nil {
				return false
			}
		}
		if err := checkBlockRun(comm, from, run); err != nil {
			n.sync.reject(fmt.Errorf("peer %d: %w", v, err))
			return false
		}
		got = run
		return true
	})
	if got == nil {
		return nil, fmt.Errorf("%w: no peer served blocks %d..%d", ErrSyncFailed, from, top)
	}
	return got, nil
}

// checkBlockRun verifies blocks of heights from, from+1, ...: the last
// under a quorum certificate of its height naming its id, each of the
// others at its height and named as parent by the next.
func checkBlockRun(comm *consensus.Committee, from uint64, run []syncBlockResponse) error {
	last := from + uint64(len(run)) - 1
	if err := checkSyncBlock(comm, last, &run[len(run)-1]); err != nil {
		return err
	}
	for i := len(run) - 2; i >= 0; i-- {
		h := from + uint64(i)
		if run[i].Block.Height != h || run[i+1].Block.Parent != run[i].Block.ID() {
			return fmt.Errorf("%w: block %d (height %d) is not the parent of block %d", ErrSyncAnswer, h, run[i].Block.Height, h+1)
		}
	}
	return nil
}

// orderBlock is the inverse of order.Block.Types.
func orderBlock(b *types.Block) *order.Block {
	ob := &order.Block{Height: b.Height, Parent: [32]byte(b.Parent), Time: b.Time, Watermark: b.Watermark,
		Txs: make([]order.Tx, len(b.Txs))}
	for i, t := range b.Txs {
		ob.Txs[i] = order.Tx{ID: order.TxID(t.ID), TS: t.TS}
	}
	return ob
}

// catchUp brings a node with an intact disk up to the peers' latest
// compacted checkpoint when its state is below it, and returns that
// checkpoint's ordering state to start the core from (nil: no catch-up
// needed, the log replay will do).
func (n *Node) catchUp() (*consensus.OrderingState, error) {
	comm := *n.cfg.Committee // own copy: verification counts are not shared
	c := n.findCheckpoint(&comm)
	latest, _ := n.store.Latest()
	if c == nil || c.cert.Height <= latest {
		return nil, nil
	}
	return n.catchUpTo(&comm, c, latest)
}

// catchUpTo executes the blocks after latest up to c's height, fetched
// from peers, and makes c's ordering state the one a restart continues
// from. The executor must be idle.
func (n *Node) catchUpTo(comm *consensus.Committee, c *syncCandidate, latest uint64) (*consensus.OrderingState, error) {
	n.log.Info("catching up by blocks", "from", latest, "to", c.cert.Height)
	every := comm.Params.CheckpointInterval
	for h := latest + 1; h <= c.cert.Height; {
		// Blocks h..top, where top is the next checkpoint height: its
		// certificate names top's id, and each block names its parent's,
		// so the fetched run is authentic before any of it executes.
		top := min(c.cert.Height, (h+every-1)/every*every)
		run, err := n.fetchBlockRun(comm, h, top)
		if err != nil {
			return nil, err
		}
		for _, r := range run {
			if err := n.executeBlock(orderBlock(&r.Block), nil); err != nil {
				return nil, err
			}
			n.sync.mu.Lock()
			n.sync.blocks++
			n.sync.mu.Unlock()
		}
		cert := &run[len(run)-1].Cert
		if _, root := n.servedLatest(); root != cert.StateRoot {
			return nil, fmt.Errorf("%w: height %d: own root %s, certified %s", ErrStateDiverged, top, root, cert.StateRoot)
		}
		if err := n.storeCheckpoint(cert, top == c.cert.Height); err != nil {
			return nil, err
		}
		h = top + 1
	}
	// The checkpoint is where a restart continues from.
	return c.state, n.d.Put(n.ctx, keyOState, encodeOrderingPair(c.cert, c.raw))
}

// LagCheckInterval is how often a running node checks whether it fell
// behind what its peers can still serve by DAG sync.
const LagCheckInterval = time.Second

// lagStalledChecks is how many checks in a row must find the node behind
// the certified height and not executing before it catches up by blocks:
// a node that is merely slow, or fetching certificates, makes progress.
const lagStalledChecks = 2

// errIsolated is a request of a node a test cut off (Node.isolated).
var errIsolated = errors.New("node: isolated by a test")

// errExecutorBusy: the executor is running a block, so a catch-up cannot
// take its place now; the next check tries again.
var errExecutorBusy = errors.New("node: executor busy")

// watchLag runs the genesis check (genesis.go) until every peer answered,
// and the catch-up of a node whose disk is intact while it runs
// (catchUp does it only before the core starts): when certificates of
// heights above its executed one arrive (so the others went on) but it has
// executed nothing for lagStalledChecks checks, it asks the peers for
// their latest compacted checkpoint. If that is above its executed height
// its core cannot get the rounds in between any more (the peers compacted
// their logs), so it fetches and executes the blocks up to it and replaces
// its core with one restored from that checkpoint's ordering state, on the
// driver, as a restart would. A node behind the peers' retained blocks
// (RetainBlocks) cannot fetch them and syncs the checkpoint's state
// instead (syncReplace). Errors other than a divergence are logged and the
// check goes on.
func (n *Node) watchLag() {
	t := time.NewTicker(LagCheckInterval)
	defer t.Stop()
	comm := *n.cfg.Committee // own copy: verification counts are not shared
	var last uint64
	stalled := 0
	var gen genesisCheck
	genesisDone := false
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if !genesisDone {
			var err error
			if genesisDone, err = n.checkGenesis(&gen); err != nil {
				n.halt(err)
				return
			}
		}
		h, _ := n.servedLatest()
		if h != last || !n.running.Load() || n.cp.latestHeight() <= h {
			last, stalled = h, 0
			continue
		}
		if stalled++; stalled < lagStalledChecks {
			continue
		}
		stalled = 0
		c := n.findCheckpoint(&comm)
		if c == nil || c.cert.Height <= h {
			continue
		}
		n.log.Info("behind the peers' compacted checkpoint while running", "executed", h, "checkpoint", c.cert.Height)
		var err error
		if cerr := n.call(n.ctx, func() { err = n.rejoin(&comm, c) }); cerr != nil {
			return // stopped
		}
		switch {
		case errors.Is(err, ErrStateDiverged):
			n.halt(err)
			return
		case err != nil && n.ctx.Err() == nil:
			n.log.Warn("catch-up while running", "err", err)
		}
	}
}

// rejoin runs on the driver: it catches up to c with the executor held
// idle, by blocks or, when the peers no longer serve them, by state sync,
// and replaces the core, as a restart from the checkpoint would. The
// driver then steps Start on the new core (coreReplaced).
func (n *Node) rejoin(comm *consensus.Committee, c *syncCandidate) error {
	if !n.exe.run.TryLock() {
		return errExecutorBusy
	}
	defer n.exe.run.Unlock()
	latest, _ := n.store.Latest()
	if c.cert.Height <= latest {
		return nil // executed meanwhile
	}
	// Blocks the old core released and the executor has not taken are
	// below the checkpoint (it could not go further): the fetched blocks
	// replace them.
	n.exe.mu.Lock()
	n.exe.queue = nil
	n.exe.mu.Unlock()
	st, err := n.catchUpTo(comm, c, latest)
	if errors.Is(err, ErrSyncFailed) {
		// No peer serves the blocks after this node's state any more
		// (pruned below their RetainBlocks): take the checkpoint's state
		// instead, as a node with an empty disk would.
		n.log.Info("catch-up by blocks failed, syncing the state", "err", err)
		st, err = n.syncReplace(comm, c)
	}
	if err != nil {
		return err
	}
	recs, _, err := loadLog(n.ctx, n.d)
	if err != nil {
		return err
	}
	if err := n.startCore(st, recs); err != nil {
		return err
	}
	n.sync.coreReplaced = true
	n.sync.mu.Lock()
	n.sync.rejoins++
	n.sync.mu.Unlock()
	return nil
}
