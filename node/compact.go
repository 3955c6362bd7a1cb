package node

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Compaction limits. The heights compacted at are the genesis parameter
// consensus.Params.CompactEvery, the same on every validator.
const (
	// DefaultRetainBlocks is how many heights of blocks, transaction
	// records and receipts stay below the last compacted checkpoint.
	DefaultRetainBlocks = 100_000
	// maxCompactCandidates bounds the encoded ordering states kept while
	// their checkpoint certificates are awaited.
	maxCompactCandidates = 4
	// pruneBatchHeights bounds the heights one pruning batch deletes.
	pruneBatchHeights = 256
)

var (
	// keyOState holds the ordering state of the last compaction and its
	// checkpoint certificate in one record (encodeOrderingPair): stored
	// as two, a reader could get one from before a compaction and one
	// from after it.
	keyOState   = ds.NewKey("/node/ostate")
	keyPrunedTo = ds.NewKey("/node/prunedto") // blocks at or below were pruned
)

// compactState decides when the log is compacted. The executor offers the
// encoded ordering state of every height due for compaction (a multiple
// of every, so that peers compact at the same heights and can all serve
// the snapshot of the latest one); the first one a checkpoint certificate
// confirms goes to the compactor goroutine.
type compactState struct {
	mu    sync.Mutex
	every uint64
	next  uint64            // lowest height due
	cand  map[uint64][]byte // encoded states of due heights, not certified yet
	jobs  chan compactJob

	// run is held by a compaction and by a state sync while running
	// (syncReplace): both rewrite the persisted ordering state, the pins
	// and the pruned mark, which must move forward only.
	run sync.Mutex

	runs    atomic.Uint64 // compactions done
	deleted atomic.Uint64 // log records deleted
}

type compactJob struct {
	cc    *consensus.CheckpointCert
	state []byte
}

func (c *compactState) init(every, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.every, c.next = every, from+1
	c.cand = map[uint64][]byte{}
}

// offer keeps the encoding of st, the ordering state after height h, if h
// is due. Only due heights pay for the encoding (megabytes at high rates:
// the released ids); checkpoint votes hash st without it.
func (c *compactState) offer(h uint64, st *consensus.OrderingState) {
	if !c.due(h) {
		return
	}
	enc := st.Encode()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cand) < maxCompactCandidates {
		c.cand[h] = enc
	}
}

// due drops candidates whose certificate is not coming and reports
// whether h is a height to keep the state of.
func (c *compactState) due(h uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.cand {
		if k+consensus.MaxCheckpointHeights < h {
			delete(c.cand, k) // its certificate is not coming
		}
	}
	return h >= c.next && h%c.every == 0 && len(c.cand) < maxCompactCandidates
}

// certified is called with a certificate this node's own block, root and
// ordering state of that height agree with.
func (c *compactState) certified(cc *consensus.CheckpointCert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	enc := c.cand[cc.Height]
	if enc == nil || sha256.Sum256(enc) != cc.OrderingStateHash {
		return
	}
	for k := range c.cand {
		if k <= cc.Height {
			delete(c.cand, k)
		}
	}
	select {
	case c.jobs <- compactJob{cc: cc, state: enc}:
		c.next = cc.Height + 1
	default: // one is running; the next certified height goes instead
	}
}

// compactor runs compactions until the node stops.
func (n *Node) compactor() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case j := <-n.cmp.jobs:
			if err := n.compact(n.ctx, j); err != nil && n.ctx.Err() == nil {
				n.halt(fmt.Errorf("%w: compaction at %d: %w", ErrPersist, j.cc.Height, err))
				return
			}
		}
	}
}

// compact makes j's ordering state the one a restart continues from, then
// deletes the log records a restart or a syncing peer can no longer need
// and the blocks below the retention. The retention rule: log records of
// rounds below the previous compaction's gc round go (one compaction
// interval of slack, so a peer that fetched the previous state can still
// fetch the certificates after it); blocks, transaction records and
// receipts of heights at or below checkpoint − RetainBlocks go; checkpoint
// certificates stay (they keep retained state provable).
func (n *Node) compact(ctx context.Context, j compactJob) error {
	st, err := n.cfg.Committee.DecodeOrderingState(j.state)
	if errors.Is(err, consensus.ErrTooLarge) {
		// More released ids than a peer would accept: keep the log until
		// the load drops rather than persist what nobody can sync from.
		n.log.Warn("compaction skipped", "height", j.cc.Height, "err", err)
		return nil
	} else if err != nil {
		return err
	}
	n.cmp.run.Lock()
	defer n.cmp.run.Unlock()
	prev, _, err := loadOrderingState(ctx, n.d, n.cfg.Committee)
	if err != nil {
		return err
	}
	if prev != nil && prev.Height > st.Height {
		// A state sync while running went past it meanwhile.
		return nil
	}
	// The state version of the checkpoint stays readable while it is the
	// one served to syncing peers, whatever KeepVersions says.
	if err := n.store.Pin(ctx, st.Height); errors.Is(err, state.ErrPruned) {
		n.log.Warn("compaction skipped: state version already pruned", "height", st.Height)
		return nil
	} else if err != nil {
		return err
	}
	if err := n.d.Put(ctx, keyOState, encodeOrderingPair(j.cc, j.state)); err != nil {
		return err
	}
	if prev != nil {
		if prev.Height != st.Height {
			if err := n.store.Unpin(ctx, prev.Height); err != nil {
				return err
			}
		}
		k, err := compactLog(ctx, n.d, prev.GCRound)
		if err != nil {
			return err
		}
		n.cmp.deleted.Add(uint64(k))
	}
	if st.Height > n.cfg.RetainBlocks {
		if err := n.pruneBlocks(ctx, st.Height-n.cfg.RetainBlocks); err != nil {
			return err
		}
	}
	n.cmp.runs.Add(1)
	n.log.Debug("compacted", "height", st.Height, "gc", st.GCRound)
	return nil
}

// loadOrderingState returns the persisted ordering state and its
// certificate, or nils before the first compaction.
func loadOrderingState(ctx context.Context, d ds.Datastore, c *consensus.Committee) (*consensus.OrderingState, *consensus.CheckpointCert, error) {
	b, cc, err := readOrderingPair(ctx, d)
	if b == nil || err != nil {
		return nil, nil, err
	}
	st, err := c.DecodeOrderingState(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ordering state: %w", ErrCorrupt, err)
	}
	if st.Height != cc.Height {
		return nil, nil, fmt.Errorf("%w: ordering state of %d under the certificate of %d", ErrCorrupt, st.Height, cc.Height)
	}
	return st, cc, nil
}

// encodeOrderingPair is the record of keyOState: the ordering state's
// canonical bytes and its certificate, encoded as the sync-state answer
// that serves them.
func encodeOrderingPair(cc *consensus.CheckpointCert, state []byte) []byte {
	return types.MustEncode(&syncStateResponse{Cert: *cc, State: state})
}

// readOrderingPair reads the persisted ordering state's bytes and its
// certificate, or nils before the first compaction.
func readOrderingPair(ctx context.Context, d ds.Datastore) ([]byte, *consensus.CheckpointCert, error) {
	var r syncStateResponse
	if err := getCBOR(ctx, d, keyOState, &r); errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	if sha256.Sum256(r.State) != r.Cert.OrderingStateHash {
		return nil, nil, fmt.Errorf("%w: ordering state does not hash to its certificate's value (height %d)", ErrCorrupt, r.Cert.Height)
	}
	return r.State, &r.Cert, nil
}

// recordRound is the round a log record belongs to.
func recordRound(r *consensus.Record) uint64 {
	switch {
	case r.Cert != nil:
		return r.Cert.Header.Round
	case r.Vote != nil:
		return r.Vote.Round
	}
	return r.Own.Round
}

// compactLog deletes the records of rounds below cut, except the latest
// own header (the next one is never made at or below its round), and
// returns how many it deleted. Records appended meanwhile have higher
// sequence numbers and rounds near the top; they are not touched.
func compactLog(ctx context.Context, d ds.Batching, cut uint64) (int, error) {
	type entry struct {
		seq, round uint64
	}
	var all []entry
	lastOwn := -1
	err := scanLog(ctx, d, func(seq uint64, rec *consensus.Record) error {
		if rec.Own != nil {
			lastOwn = len(all)
		}
		all = append(all, entry{seq, recordRound(rec)})
		return nil
	})
	if err != nil {
		return 0, err
	}
	var drop []ds.Key
	for i, e := range all {
		if e.round < cut && i != lastOwn {
			drop = append(drop, heightKey(nsLog, e.seq))
		}
	}
	b, err := d.Batch(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range drop {
		if err := b.Delete(ctx, k); err != nil {
			return 0, err
		}
	}
	return len(drop), b.Commit(ctx)
}

// pruneBlocks deletes blocks, their transaction records, receipts and
// root records at heights in (last pruned, upTo], in batches that also
// advance the pruned mark, so a crash resumes where it stopped.
func (n *Node) pruneBlocks(ctx context.Context, upTo uint64) error {
	var from uint64
	if b, err := n.d.Get(ctx, keyPrunedTo); err == nil {
		if err := types.Decode(b, &from); err != nil {
			return fmt.Errorf("%w: pruned mark: %w", ErrCorrupt, err)
		}
	} else if !errors.Is(err, ds.ErrNotFound) {
		return err
	}
	for from < upTo {
		to := min(upTo, from+pruneBatchHeights)
		b, err := n.d.Batch(ctx)
		if err != nil {
			return err
		}
		for h := from + 1; h <= to; h++ {
			var blk types.Block
			if err := getCBOR(ctx, n.d, heightKey(nsBlock, h), &blk); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			// A transaction deferred at h keeps its records: the height
			// that settles it rewrites them and deletes them when pruned.
			var ht heightTxs
			if err := getCBOR(ctx, n.d, heightKey(nsHeightTxs, h), &ht); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			// A repeat's records are those of its first height.
			repeats, err := n.repeatsAt(ctx, h)
			if err != nil {
				return err
			}
			for _, t := range blk.Txs {
				if slices.Contains(ht.Deferred, t.ID) || slices.Contains(repeats, t.ID) {
					continue
				}
				if err := b.Delete(ctx, idKey(nsTx, t.ID)); err != nil {
					return err
				}
			}
			for _, id := range ht.Resolved {
				if err := b.Delete(ctx, idKey(nsTx, id)); err != nil {
					return err
				}
			}
			if err := errors.Join(b.Delete(ctx, heightKey(nsBlock, h)), b.Delete(ctx, heightKey(nsRoot, h)), b.Delete(ctx, heightKey(nsHeightTxs, h)), b.Delete(ctx, heightKey(nsRepeats, h))); err != nil {
				return err
			}
		}
		if err := b.Put(ctx, keyPrunedTo, types.MustEncode(to)); err != nil {
			return err
		}
		if err := b.Commit(ctx); err != nil {
			return err
		}
		from = to
	}
	return nil
}

// logCerts returns the certificates of rounds [from, below) in the log, in
// (round, author) order, at most limit: a syncing peer restored at an
// ordering state whose gc round is below this core's needs them.
func logCerts(ctx context.Context, d ds.Datastore, c *consensus.Committee, from, below uint64, limit int) ([]*consensus.Certificate, error) {
	var out []*consensus.Certificate
	seen := map[consensus.Digest]bool{}
	err := scanLog(ctx, d, func(_ uint64, rec *consensus.Record) error {
		if cert := rec.Cert; cert != nil && cert.Header.Round >= from && cert.Header.Round < below {
			if dg := c.Digest(&cert.Header); !seen[dg] {
				seen[dg] = true
				out = append(out, cert)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *consensus.Certificate) int {
		if c := cmp.Compare(a.Header.Round, b.Header.Round); c != 0 {
			return c
		}
		return cmp.Compare(a.Header.Author, b.Header.Author)
	})
	return out[:min(len(out), limit)], nil
}

// pruned reports whether height h is at or below the pruned mark (blocks
// gone, or never held: a state sync starts above them).
func (n *Node) pruned(h uint64) bool {
	var to uint64
	return getCBOR(n.ctx, n.d, keyPrunedTo, &to) == nil && h <= to
}
