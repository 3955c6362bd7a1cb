package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// nsHeightTxs holds, per height, the heightTxs record of a block that
// deferred or settled deferred transactions.
const (
	nsHeightTxs = "/node/htx/" // <height %016x> heightTxs
	nsRepeats   = "/node/rep/" // <height %016x> []types.Hash: block transactions ordered before
)

// ErrDeferred is the status of a transaction that reached a block with a
// nonce ahead of its sender's account: it waits in the state's deferred set
// and has no receipt yet.
var ErrDeferred = errors.New("node: transaction deferred")

// bodyRetryDelay spaces fetches of transaction bodies a block needs and no
// peer has served yet.
const bodyRetryDelay = 50 * time.Millisecond

// executorState is the queue of released blocks. The driver appends, the
// executor goroutine takes them in height order. Its length is bounded by
// how far execution trails consensus (blocks are not a peer's choice).
type executorState struct {
	mu    sync.Mutex
	queue []consensus.Released
	last  uint64 // height of the last block queued (or executed before start)
	// run is held while a block executes, and by a catch-up while running
	// (rejoin), so the two never execute at once.
	run sync.Mutex
}

func (e *executorState) init(ctx context.Context, n *Node) error {
	h, root := n.store.Latest()
	e.last = h
	n.cp.mu.Lock()
	n.cp.executed = h
	// Certificates of heights a catch-up or state sync skipped are never
	// taken by an executed block: they would hold MaxPendingCheckpoints.
	for k := range n.cp.pending {
		if k <= h {
			delete(n.cp.pending, k)
		}
	}
	n.cp.mu.Unlock()
	if h == 0 {
		n.setServed(h, root)
		return nil
	}
	// A crash between the state commit and the root record leaves the
	// record missing; the state itself knows its latest root.
	ok, err := n.d.Has(ctx, heightKey(nsRoot, h))
	if err != nil {
		return err
	}
	if !ok {
		if err := n.d.Put(ctx, heightKey(nsRoot, h), root[:]); err != nil {
			return err
		}
	}
	n.setServed(h, root)
	return nil
}

// enqueue keeps a released block unless it was executed or queued already
// (a restarted core re-releases every block after its ordering state). A
// block above the next height is ErrBlockGap.
func (e *executorState) enqueue(r consensus.Released) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch b := r.Block; {
	case b.Height == e.last+1:
		e.queue = append(e.queue, r)
		e.last = b.Height
	case b.Height > e.last+1:
		return fmt.Errorf("%w: height %d after %d", ErrBlockGap, b.Height, e.last)
	}
	return nil
}

func (e *executorState) pop() (consensus.Released, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) == 0 {
		return consensus.Released{}, false
	}
	r := e.queue[0]
	e.queue = e.queue[1:]
	return r, true
}

// execute runs released blocks in height order until the node stops.
func (n *Node) execute() {
	for {
		r, ok := n.exe.pop()
		if !ok {
			select {
			case <-n.ctx.Done():
				return
			case <-n.blocks:
				continue
			}
		}
		n.exe.run.Lock()
		if h, _ := n.store.Latest(); r.Block.Height <= h {
			// Taken before a catch-up while running executed past it.
			n.exe.run.Unlock()
			continue
		}
		err := n.executeBlock(r.Block, r.State)
		n.exe.run.Unlock()
		if err != nil {
			if n.ctx.Err() == nil {
				n.halt(err)
			}
			return
		}
	}
}

// executeBlock executes one block against the latest state, stores the
// block, its transactions and receipts, commits the state, and signs and
// sends a checkpoint vote with the ordering state st after the block (none
// without st: a block fetched during catch-up, certified already).
// Records are written before the state commit, so a crash in between
// re-executes the block (identically) on restart.
func (n *Node) executeBlock(ob *order.Block, st *consensus.OrderingState) error {
	ctx := n.ctx
	b := ob.Types()
	raws, txs, err := n.bodies(b)
	if err != nil {
		return err
	}
	res, err := n.x.ExecuteBlockDeferred(ctx, n.store, b, txs, exec.DefaultDeferLimits)
	if err != nil {
		return fmt.Errorf("node: execute block %d: %w", b.Height, err)
	}
	settled, err := n.storeBlock(ctx, b, raws, res)
	if err != nil {
		return err
	}
	root, err := n.store.Commit(ctx, b.Height, res.Writes)
	if err != nil {
		return fmt.Errorf("node: commit block %d: %w", b.Height, err)
	}
	if n.cfg.afterStateCommit != nil {
		n.cfg.afterStateCommit(b.Height)
	}
	ids := make([]types.Hash, len(b.Txs))
	for i, t := range b.Txs {
		ids[i] = t.ID
	}
	// The root record and the deletes of the block's pool records share
	// one batch. The entries leave memory only after the served
	// height moved: an admit that finds one gone then sees its receipt.
	// A deferred transaction leaves the pool too: its body is in the
	// state's deferred set and in its transaction record. The batch is
	// not synced: a crash that loses it leaves a state ahead of its root
	// record, which executorState.init writes again, and executed
	// transactions in the pool, which open drops.
	batch, err := n.store.UnsyncedBatch(ctx)
	if err != nil {
		return err
	}
	if err := batch.Put(ctx, heightKey(nsRoot, b.Height), root[:]); err != nil {
		return err
	}
	dropPooled, err := n.pool.RemoveWith(ctx, batch, ids)
	if err != nil {
		return err
	}
	if err := batch.Commit(ctx); err != nil {
		return fmt.Errorf("node: root record of %d: %w", b.Height, err)
	}
	n.setServed(b.Height, root)
	dropPooled()
	n.executedTxs.Add(uint64(len(settled)))
	n.lat.executed(settled)
	if _, err := n.pool.Expire(ctx, n.clock.Now()); err != nil {
		return err
	}
	n.log.Debug("executed", "height", b.Height, "txs", len(b.Txs), "root", root)
	if st == nil {
		return nil // a block fetched during catch-up: certified already
	}
	if b.Height%n.cfg.Committee.Params.CheckpointInterval != 0 {
		// Not a checkpoint height (a genesis parameter): no vote.
		n.cp.mu.Lock()
		n.cp.executed = b.Height
		n.cp.mu.Unlock()
		return nil
	}
	return n.checkpoint(b, root, st)
}

// heightTxs lists what a height did beyond its block's own settled
// transactions; stored only when not empty.
type heightTxs struct {
	_        struct{}     `cbor:",toarray"`
	Deferred []types.Hash // block transactions deferred at this height
	Resolved []types.Hash // earlier-deferred transactions settled here
}

// storeBlock writes b and its transaction records, with the receipts
// settled at its height, in one batch, and returns the ids of the settled
// transactions: the block's not deferred, then res.Resolved. A deferred
// transaction has a record (peers fetch its body for the block) but no
// receipt until a later height settles it; that height's record then
// replaces it, so Receipt reports the height it executed or expired at.
//
// A transaction ordered a second time (a quorum acked it again after the
// orderer forgot its release; see consensus.FetchResult.Executed) ran
// again and failed on its nonce on every node alike. Its records keep the
// first execution: the repeat is listed under nsRepeats instead, and the
// height's events and compaction leave it out.
func (n *Node) storeBlock(ctx context.Context, b *types.Block, raws [][]byte, res *exec.DeferredBlockResult) ([]types.Hash, error) {
	// Not synced: the state commit that follows is, and makes it durable
	// (state.Store.UnsyncedBatch); a crash before that commit re-executes the block.
	batch, err := n.store.UnsyncedBatch(ctx)
	if err != nil {
		return nil, err
	}
	// Puts go straight to the batch, in this order: a key put twice keeps
	// its last value (a transaction deferred and settled at one height
	// keeps its settled record).
	var perr error
	put := func(k ds.Key, v []byte) {
		if perr == nil {
			perr = batch.Put(ctx, k, v)
		}
	}
	put(heightKey(nsBlock, b.Height), types.MustEncode(b))
	settled := make([]types.Hash, 0, len(b.Txs)+len(res.Resolved))
	var ht heightTxs
	var repeats []types.Hash
	for i, t := range b.Txs {
		if !res.Deferred[i] && n.recordedBelow(ctx, t.ID, b.Height) {
			repeats = append(repeats, t.ID)
			continue
		}
		rec := txRecord{Height: b.Height, Index: uint32(i), Raw: raws[i]}
		if res.Deferred[i] {
			ht.Deferred = append(ht.Deferred, t.ID)
		} else {
			rec.Receipt = &res.Receipts[i]
			settled = append(settled, t.ID)
		}
		put(idKey(nsTx, t.ID), types.MustEncode(&rec))
	}
	for j := range res.Resolved {
		r := &res.Resolved[j]
		id := r.Receipt.TxID
		put(idKey(nsTx, id), types.MustEncode(&txRecord{Height: b.Height, Index: uint32(len(b.Txs) + j), Raw: r.Raw, Receipt: &r.Receipt}))
		ht.Resolved = append(ht.Resolved, id)
		settled = append(settled, id)
	}
	if len(ht.Deferred)+len(ht.Resolved) > 0 {
		put(heightKey(nsHeightTxs, b.Height), types.MustEncode(&ht))
		n.deferredTxs.Add(uint64(len(ht.Deferred)))
	}
	if len(repeats) > 0 {
		put(heightKey(nsRepeats, b.Height), types.MustEncode(repeats))
		n.log.Warn("block repeats executed transactions", "height", b.Height, "count", len(repeats))
	}
	if perr != nil {
		return nil, perr
	}
	// The index learns the ids before their records become readable, so
	// an admit that misses them in the index ran before this point and
	// the pool removal after the commit follows its add.
	n.executed.add(b.Height, settled...)
	n.executed.add(b.Height, ht.Deferred...)
	n.executed.deferral(ht.Deferred, ht.Resolved)
	if len(settled) > 0 && n.executed.generations() > 1 {
		n.executed.dropPruned(n.pruned)
	}
	if err := batch.Commit(ctx); err != nil {
		return nil, fmt.Errorf("node: store block %d: %w", b.Height, err)
	}
	return settled, nil
}

// recordedBelow reports whether id has a transaction record (executed, or
// deferred and waiting) at a height below h, served or not. A record at h
// itself is this block's own, written before a crash that stopped the
// block short of its root record: the block runs again, not a repeat.
func (n *Node) recordedBelow(ctx context.Context, id types.Hash, h uint64) bool {
	if !n.executed.mayHave(id) {
		return false
	}
	var r txRecord
	return getCBOR(ctx, n.d, idKey(nsTx, id), &r) == nil && r.Height < h
}

// repeatsAt returns the transactions of block h ordered at an earlier height.
func (n *Node) repeatsAt(ctx context.Context, h uint64) ([]types.Hash, error) {
	var ids []types.Hash
	if err := getCBOR(ctx, n.d, heightKey(nsRepeats, h), &ids); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return ids, nil
}

// bodies returns the bodies of b's transactions from the mempool, or from
// peers. A block cannot execute without them, so it retries until the node
// stops; Q validators acked each id and promised to hold its payload.
func (n *Node) bodies(b *types.Block) ([][]byte, []*types.Tx, error) {
	raws := make([][]byte, len(b.Txs))
	txs := make([]*types.Tx, len(b.Txs))
	for tries := 0; ; tries++ {
		var missing []types.Hash
		for i, t := range b.Txs {
			if txs[i] != nil {
				continue
			}
			if e, ok := n.pool.Get(t.ID); ok {
				raws[i], txs[i] = e.Raw, e.Tx
				continue
			}
			missing = append(missing, t.ID)
		}
		if len(missing) == 0 {
			return raws, txs, nil
		}
		if tries == 0 {
			n.bodyFetches.Add(1)
		} else if tries%100 == 0 {
			n.log.Warn("block waits for transaction bodies", "height", b.Height, "missing", len(missing))
		}
		got, filled := n.fetchBodies(missing), 0
		for i, t := range b.Txs {
			if f, ok := got[t.ID]; ok && txs[i] == nil {
				raws[i], txs[i] = f.raw, f.tx
				filled++
			}
		}
		// Wait before asking again only when no peer had any of them:
		// a fetch that filled the block (the common case) or made
		// progress goes straight on, so the block is not held 50 ms.
		if filled > 0 {
			continue
		}
		select {
		case <-n.ctx.Done():
			return nil, nil, n.ctx.Err()
		case <-time.After(bodyRetryDelay):
		}
	}
}

// decodeBodies checks fetched bodies for a block, their signatures in one
// batch. The time checks are left to the executor, at the block time (an
// expired transaction is a receipt status, not a missing body), so each is
// validated at its own ValidUntil.
func (n *Node) decodeBodies(raws [][]byte) []types.DecodedTx {
	lim := n.cfg.Mempool.Limits
	if lim == (types.TxLimits{}) {
		lim = types.DefaultTxLimits
	}
	return types.DecodeBodies(raws, n.cfg.Committee.ChainID, lim)
}

// fetchedBody is a transaction body a peer sent for a block, checked.
type fetchedBody struct {
	raw []byte
	tx  *types.Tx
}

// fetchBodies asks each other validator once for ids and keeps the bodies
// that pass decodeBodies (one signature batch per answer), by their id:
// each is decoded and its id computed once. Unlike fetchTxs it does not go
// through the mempool: a body a block needs may already be expired by the
// local clock, which the mempool would refuse.
func (n *Node) fetchBodies(ids []types.Hash) map[types.Hash]fetchedBody {
	if len(ids) > MaxFetchTxs {
		ids = ids[:MaxFetchTxs]
	}
	got := map[types.Hash]fetchedBody{}
	for v := range n.peers {
		if uint32(v) == n.me || len(got) == len(ids) {
			continue
		}
		var r txResponse
		if err := n.request(uint32(v), protoTxs, &txRequest{IDs: ids}, &r); err != nil {
			continue
		}
		for k, d := range n.decodeBodies(r.Raw) {
			if d.Err == nil {
				got[d.ID] = fetchedBody{r.Raw[k], d.Tx}
			}
		}
	}
	return got
}

// txBody returns the body of a held or executed transaction, or nil.
func (n *Node) txBody(id types.Hash) []byte {
	if e, ok := n.pool.Get(id); ok {
		return e.Raw
	}
	var r txRecord
	if getCBOR(n.ctx, n.d, idKey(nsTx, id), &r) != nil {
		return nil
	}
	return r.Raw
}

// checkpointState collects checkpoint votes into certificates and checks
// them against this node's roots.
type checkpointState struct {
	mu       sync.Mutex
	comm     consensus.Committee // own copy: verification counts are not shared
	col      *consensus.Checkpoints
	executed uint64                               // highest height with a root record
	pending  map[uint64]*consensus.CheckpointCert // certified, not yet executed here
	latest   uint64                               // highest certificate held
	// own holds this node's ordering state hash of the last
	// MaxPendingCheckpoints executed heights (a certificate may arrive
	// after execution).
	own map[uint64][32]byte
}

func (c *checkpointState) init(comm *consensus.Committee) {
	c.comm = *comm
	c.col = consensus.NewCheckpoints(&c.comm)
	c.pending = map[uint64]*consensus.CheckpointCert{}
	c.own = map[uint64][32]byte{}
}

func (c *checkpointState) latestHeight() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// checkpoint signs and sends this node's checkpoint vote for b, then
// checks a certificate of b's height that arrived before execution. The
// ordering state after b is hashed here, off the driver, streaming its
// released ids rather than copying them (consensus.OrderingState.Hash);
// it is encoded only when b's height is due for compaction.
func (n *Node) checkpoint(b *types.Block, root types.Root, st *consensus.OrderingState) error {
	v := &consensus.CheckpointVote{Height: b.Height, BlockID: b.ID(), StateRoot: root, OrderingStateHash: st.Hash(), Signer: n.me}
	n.cmp.offer(b.Height, st)
	n.cp.mu.Lock()
	n.cp.comm.SignCheckpoint(consensus.Ed25519Signer(n.cfg.Key), v)
	n.cp.executed = b.Height
	n.cp.own[b.Height] = v.OrderingStateHash
	delete(n.cp.own, b.Height-min(b.Height, MaxPendingCheckpoints))
	cc := n.cp.pending[b.Height]
	delete(n.cp.pending, b.Height)
	n.cp.mu.Unlock()
	n.broadcast(consensus.EncodeMessage(&consensus.Message{Checkpoint: v}))
	n.onCheckpointVote(v)
	if cc != nil {
		return n.verifyCheckpoint(cc)
	}
	return nil
}

// onCheckpointVote adds a vote; a completed certificate is stored and
// checked against this node's root of that height.
func (n *Node) onCheckpointVote(v *consensus.CheckpointVote) {
	n.cp.mu.Lock()
	cc, err := n.cp.col.Add(v)
	if err != nil || cc == nil {
		n.cp.mu.Unlock()
		if err != nil {
			n.log.Debug("checkpoint vote", "err", err)
		}
		return
	}
	executed := cc.Height <= n.cp.executed
	if !executed && len(n.cp.pending) < MaxPendingCheckpoints {
		n.cp.pending[cc.Height] = cc
	}
	newest := cc.Height > n.cp.latest
	if newest {
		n.cp.latest = cc.Height
	}
	n.cp.mu.Unlock()
	if err := n.storeCheckpoint(cc, newest); err != nil {
		n.halt(err)
		return
	}
	if executed {
		if err := n.verifyCheckpoint(cc); err != nil {
			n.halt(err)
		}
	}
}

// storeCheckpoint writes a certificate, and the latest one when it is
// the newest, in one batch. The batch is not synced (state.Store.UnsyncedBatch): at
// CheckpointInterval 1 that was an fsync per block on each validator, on
// the executor's path for its own vote and on a peer's receive path for
// the others'. Nothing waits on it: the next synced commit in the same
// log (the driver's group commit, the next block's state commit) makes
// it durable, the compactor stores the certificate it compacts at in its
// own synced batch, and a certificate lost in a crash (in the
// milliseconds before the next synced commit) only leaves its height
// without one here: serving that block to a catching-up peer fails with
// ErrNotFound and the peer asks another validator, and the next
// certificate this node collects is the latest it serves.
func (n *Node) storeCheckpoint(cc *consensus.CheckpointCert, newest bool) error {
	enc := types.MustEncode(cc)
	b, err := n.store.UnsyncedBatch(n.ctx)
	if err == nil {
		err = b.Put(n.ctx, heightKey(nsCP, cc.Height), enc)
	}
	if err == nil && newest {
		err = b.Put(n.ctx, keyCPLatest, enc)
	}
	if err == nil {
		err = b.Commit(n.ctx)
	}
	if err != nil {
		return fmt.Errorf("node: store checkpoint %d: %w", cc.Height, err)
	}
	return nil
}

// verifyCheckpoint compares a certificate with this node's executed block
// and root of its height.
func (n *Node) verifyCheckpoint(cc *consensus.CheckpointCert) error {
	var root types.Root
	b, err := n.d.Get(n.ctx, heightKey(nsRoot, cc.Height))
	if errors.Is(err, ds.ErrNotFound) && n.pruned(cc.Height) {
		return nil // nothing left to compare
	}
	if err != nil {
		return fmt.Errorf("node: root of %d: %w", cc.Height, err)
	}
	copy(root[:], b)
	var blk types.Block
	if err := getCBOR(n.ctx, n.d, heightKey(nsBlock, cc.Height), &blk); err != nil {
		if errors.Is(err, ErrNotFound) && n.pruned(cc.Height) {
			return nil // pruned, or the height a state sync started at
		}
		return err
	}
	if root != cc.StateRoot || blk.ID() != types.Hash(cc.BlockID) {
		return fmt.Errorf("%w: height %d: own root %s block %s, certified root %s block %x",
			ErrStateDiverged, cc.Height, root, blk.ID(), cc.StateRoot, cc.BlockID)
	}
	n.cp.mu.Lock()
	own, ok := n.cp.own[cc.Height]
	n.cp.mu.Unlock()
	if ok && own != cc.OrderingStateHash {
		return fmt.Errorf("%w: height %d: own ordering state %x, certified %x", ErrStateDiverged, cc.Height, own, cc.OrderingStateHash)
	}
	n.cmp.certified(cc)
	return nil
}

// LatestCheckpoint returns the highest checkpoint certificate held.
func (n *Node) LatestCheckpoint() (*consensus.CheckpointCert, error) {
	var cc consensus.CheckpointCert
	if err := getCBOR(n.ctx, n.d, keyCPLatest, &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

// Block returns the executed block at height h and the state root after it.
func (n *Node) Block(h uint64) (*types.Block, types.Root, error) {
	var b types.Block
	if err := getCBOR(n.ctx, n.d, heightKey(nsBlock, h), &b); err != nil {
		return nil, types.Root{}, err
	}
	raw, err := n.d.Get(n.ctx, heightKey(nsRoot, h))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, types.Root{}, fmt.Errorf("%w: block %d not committed", ErrNotFound, h)
	}
	if err != nil {
		return nil, types.Root{}, err
	}
	var root types.Root
	copy(root[:], raw)
	return &b, root, nil
}

// Receipt returns the receipt of an executed transaction and its height.
// A transaction waiting in the deferred set (its nonce was ahead of its
// sender's; see exec.ExecuteBlockDeferred) is ErrDeferred, with the height
// of the block that ordered it.
// Receipts are stored before the state commit of their block and become
// visible with its root record (the served height), like the block.
func (n *Node) Receipt(id types.Hash) (*types.Receipt, uint64, error) {
	var r txRecord
	if err := getCBOR(n.ctx, n.d, idKey(nsTx, id), &r); err != nil {
		return nil, 0, err
	}
	if h, _ := n.servedLatest(); r.Height > h {
		return nil, 0, fmt.Errorf("%w: transaction %s not committed", ErrNotFound, id)
	}
	if r.Receipt == nil {
		// A record without a receipt: deferred at r.Height (the height
		// that settles it rewrites the record with its receipt).
		return nil, r.Height, fmt.Errorf("%w: transaction %s at height %d", ErrDeferred, id, r.Height)
	}
	return r.Receipt, r.Height, nil
}

// HeightTxs returns the ids of the transactions settled at height h, in
// the order their receipts' events count: the block's own transactions
// not deferred, then the earlier-deferred ones settled at h.
func (n *Node) HeightTxs(h uint64) ([]types.Hash, error) {
	b, _, err := n.Block(h)
	if err != nil {
		return nil, err
	}
	var ht heightTxs
	if err := getCBOR(n.ctx, n.d, heightKey(nsHeightTxs, h), &ht); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	repeats, err := n.repeatsAt(n.ctx, h)
	if err != nil {
		return nil, err
	}
	ids := make([]types.Hash, 0, len(b.Txs)+len(ht.Resolved))
	for _, t := range b.Txs {
		if !slices.Contains(ht.Deferred, t.ID) && !slices.Contains(repeats, t.ID) {
			ids = append(ids, t.ID)
		}
	}
	return append(ids, ht.Resolved...), nil
}

// StateValue is a value read at a height, with an optional Merkle proof
// against the root of that height.
type StateValue struct {
	Height uint64
	Root   types.Root
	Value  []byte // nil when absent
	Proof  *types.Proof
}

// State reads key at height (0 = the served height, whose block is
// fetchable), with a proof when prove is set.
// Heights outside the retained versions fail with the state errors
// (state.ErrPruned, state.ErrUnknownVersion).
func (n *Node) State(ctx context.Context, key types.StateKey, height uint64, prove bool) (*StateValue, error) {
	if height == 0 {
		height, _ = n.servedLatest()
	}
	v, err := n.store.View(ctx, height)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	out := &StateValue{Height: height, Root: v.Root()}
	if out.Value, err = v.Get(ctx, key); err != nil {
		return nil, err
	}
	if prove {
		if out.Proof, err = v.Prove(ctx, key); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Pending reports whether the mempool holds id.
func (n *Node) Pending(id types.Hash) bool {
	_, ok := n.pool.Get(id)
	return ok
}
