package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// PruneStats reports what one Prune did.
type PruneStats struct {
	Min     uint64 // lowest readable version afterwards
	Deleted int    // stale entries processed: node records deleted
}

// Prune makes versions below the horizon unreadable and deletes what only
// they used. The horizon is latest+1-K (Options.KeepVersions), held back by
// open Views and persistent pins. In order: the new minimum is refused to
// new readers and made durable, then stale entries with stale_since <= min
// are processed in chunks of Options.PruneChunk, each entry deleting the
// node record it names by (born, id) or the history record it names by
// (key path, stale_since) (only older versions read those). An id written
// again later (A → B → A) is a record of its own, under its own born, so no
// entry needs a check before its delete. Prune is idempotent: a crashed
// run is finished by the next one (deleting a deleted record does nothing).
// With KeepVersions 0 it does nothing.
func (s *Store) Prune(ctx context.Context) (PruneStats, error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	s.mu.Lock()
	target := s.horizonLocked()
	raised := target > s.min
	if raised {
		s.min = target // new readers below target get ErrPruned from now on
	}
	min, done := s.min, s.pruneDone
	s.mu.Unlock()
	st := PruneStats{Min: min}
	if raised {
		if err := s.d.Put(ctx, keyMin, binary.AppendUvarint(nil, min)); err != nil {
			return st, err
		}
		if err := s.d.Sync(ctx, keyMin); err != nil {
			return st, err
		}
	}
	for v := done + 1; v <= min; v++ {
		if err := s.pruneVersion(ctx, v, &st); err != nil {
			return st, err
		}
		s.mu.Lock()
		s.pruneDone = v
		s.mu.Unlock()
	}
	return st, nil
}

// horizonLocked returns the lowest version Prune may keep readable now.
func (s *Store) horizonLocked() uint64 {
	k := s.opts.KeepVersions
	if k == 0 || s.latest+1 <= k {
		return s.min
	}
	target := s.latest + 1 - k
	for h := range s.views {
		target = min(target, h)
	}
	for h := range s.pins {
		target = min(target, h)
	}
	return max(target, s.min)
}

// pruneVersion processes the stale list of version v: deletes the node
// records and the history records it names (v's history holds values of
// v-1 and older, which no retained version reads any more), and drops the
// root record and change set of version v-1, which is now below the
// minimum. The list goes last, with the progress mark: a crash before that
// repeats the version, and every step is safe to repeat.
func (s *Store) pruneVersion(ctx context.Context, v uint64, st *PruneStats) error {
	raw, err := s.d.Get(ctx, staleKey(v))
	if err != nil && !errors.Is(err, ds.ErrNotFound) {
		return err
	}
	l, err := decodeStale(raw)
	if err != nil {
		return err
	}
	for lo := 0; lo < len(l.refs); lo += s.opts.PruneChunk {
		if err := s.pruneChunk(ctx, l.refs[lo:min(len(l.refs), lo+s.opts.PruneChunk)], st); err != nil {
			return err
		}
	}
	for lo := 0; lo < len(l.paths); lo += s.opts.PruneChunk {
		if err := s.pruneHistory(ctx, v, l.paths[lo:min(len(l.paths), lo+s.opts.PruneChunk)]); err != nil {
			return err
		}
	}
	b, err := s.d.Batch(ctx)
	if err != nil {
		return err
	}
	for _, err := range []error{
		b.Delete(ctx, staleKey(v)),
		b.Delete(ctx, rootKey(v-1)),
		b.Delete(ctx, changesKey(v-1)),
		b.Put(ctx, keyPruneDone, binary.AppendUvarint(nil, v)),
	} {
		if err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	return s.syncIfNeeded(ctx)
}

// pruneChunk deletes the records refs name. A Commit may run meanwhile: it
// writes only records of its own version, above every entry's born, so the
// two never touch the same key.
func (s *Store) pruneChunk(ctx context.Context, refs []nodeRef, st *PruneStats) error {
	err := s.deleteChunk(ctx, len(refs), func(dst []byte, i int) []byte {
		return appendNodeKey(dst, refs[i].born, refs[i].id)
	})
	if err == nil {
		st.Deleted += len(refs)
	}
	return err
}

// pruneHistory deletes the history records version v wrote for the key
// paths paths, a chunk like pruneChunk's. A version's records are
// scattered over the namespace by path, so each is a point delete (a range
// delete per version served format 3, whose records sorted by version
// first; see RATIONALE.md, "Why is the history keyed by key path"). A
// concurrent Commit writes records of its own version only.
func (s *Store) pruneHistory(ctx context.Context, v uint64, paths []types.Hash) error {
	return s.deleteChunk(ctx, len(paths), func(dst []byte, i int) []byte {
		return appendHistKey(dst, paths[i], v)
	})
}

// deleteChunk deletes n records in one pruner chunk, the i-th named by
// the key key appends to dst. On pebble the keys are built in one buffer,
// which the batch copies, not a string each, and the chunk is written
// without sync: pruneVersion's last batch (the progress mark) is synced,
// and pebble's one log makes every earlier write durable with a synced
// one, so a crash can only lose chunks of a version whose mark is not
// durable, which the next Prune repeats (a delete can be repeated). That
// spares a version of 20k stale records five fsyncs.
func (s *Store) deleteChunk(ctx context.Context, n int, key func(dst []byte, i int) []byte) error {
	var kb [max(nodeKeyLen, histKeyLen)]byte
	if s.pdb != nil {
		b := s.pdb.NewBatch()
		for i := range n {
			if err := b.Delete(key(kb[:0], i), nil); err != nil {
				b.Close()
				return err
			}
		}
		if err := (pebbleBatch{b, pebble.NoSync}).Commit(ctx); err != nil {
			return err
		}
		return s.syncIfNeeded(ctx)
	}
	b, err := s.d.Batch(ctx)
	if err != nil {
		return err
	}
	for i := range n {
		if err := b.Delete(ctx, ds.RawKey(string(key(kb[:0], i)))); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	return s.syncIfNeeded(ctx)
}

// UnsyncedBatch returns a batch of the store's datastore whose Commit does
// not wait for an fsync on pebble (one write-ahead log, replayed in order:
// the next synced write makes it durable with itself), and an ordinary
// batch on other backends. For records a later synced write covers or a
// restart rebuilds (the node's block records); keys are datastore keys.
func (s *Store) UnsyncedBatch(ctx context.Context) (ds.Batch, error) {
	if s.pdb != nil {
		return pebbleBatch{s.pdb.NewBatch(), pebble.NoSync}, nil
	}
	return s.d.Batch(ctx)
}

func (s *Store) syncIfNeeded(ctx context.Context) error {
	if s.opts.AtomicBatches {
		return nil // batches are written with sync
	}
	return s.d.Sync(ctx, ds.NewKey("/kairos"))
}

// NodeCacheMisses returns how many node cache lookups found nothing since
// the store opened: each is a read of a node record from the datastore on
// the commit's or a reader's path. A counter for metrics; a cache too small
// for the tree's working set shows as a steady rise (see Options.CacheBytes).
func (s *Store) NodeCacheMisses() uint64 { return s.cache.missCount() }

// PrunerLag returns how many versions below the K-version horizon still
// await pruning (held back by views or pins, or Prune not run yet). It is a
// gauge for metrics; 0 when pruning is off.
func (s *Store) PrunerLag() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.opts.KeepVersions
	if k == 0 || s.latest+1 <= k {
		return 0
	}
	want := s.latest + 1 - k
	if want <= s.pruneDone {
		return 0
	}
	return want - s.pruneDone
}

// MinVersion returns the lowest readable version.
func (s *Store) MinVersion() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.min
}

// Pin keeps version h readable across restarts until Unpin (for snapshots
// being served). A pin holds back pruning of every version after it too.
func (s *Store) Pin(ctx context.Context, h uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h < s.min {
		return fmt.Errorf("%w: version %d < %d", ErrPruned, h, s.min)
	}
	if h > s.latest {
		return fmt.Errorf("%w: version %d > %d", ErrUnknownVersion, h, s.latest)
	}
	if err := s.d.Put(ctx, pinKey(h), []byte{}); err != nil {
		return err
	}
	if err := s.d.Sync(ctx, pinKey(h)); err != nil {
		return err
	}
	s.pins[h] = true
	return nil
}

// Unpin removes a pin set by Pin.
func (s *Store) Unpin(ctx context.Context, h uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.d.Delete(ctx, pinKey(h)); err != nil {
		return err
	}
	delete(s.pins, h)
	return s.d.Sync(ctx, pinKey(h))
}

// AuditReport is the result of Audit.
type AuditReport struct {
	Versions  uint64 // retained versions walked
	Reachable int    // distinct nodes reachable
	// Leaked lists node records stored, unreachable and not awaiting
	// pruning (by id), and history records the pruner will not delete:
	// those of versions already pruned (or above the latest) or not named
	// by their version's stale list (by key path).
	Leaked []types.Hash
	// Missing lists nodes reachable but not stored (or not matching their
	// id), and leaves of older retained versions whose value neither the
	// flat index nor the history holds.
	Missing []types.Hash
	// IndexMismatch counts flat index entries that disagree with the
	// latest tree, plus latest leaves absent from the index.
	IndexMismatch int
}

// Clean reports whether the audit found nothing wrong.
func (r *AuditReport) Clean() bool {
	return len(r.Leaked) == 0 && len(r.Missing) == 0 && r.IndexMismatch == 0
}

// Audit marks everything reachable from the retained roots, reading the
// datastore directly (not the cache), and sweeps the node namespace: it
// reports leaked records (stored but unreachable, excluding ones whose stale
// entry awaits the pruner) and missing ones. It checks the flat index
// against the latest tree, resolves every leaf only older versions hold
// through the history, and reports history records of pruned versions, or
// that no stale list names, as leaked. It blocks Commit and Prune while it
// runs and reads everything, so it is a test and maintenance tool.
func (s *Store) Audit(ctx context.Context) (*AuditReport, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	_ = s.drainLocked() // a failed write shows in the audit
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	s.mu.Lock()
	min, latest, done := s.min, s.latest, s.pruneDone
	s.mu.Unlock()

	rep := &AuditReport{}
	marked := map[nodeRef]bool{}
	latestLeaves := map[types.Hash]types.Hash{}
	// older holds the leaves that only older versions hold, each with the
	// highest version that holds it in the node record it was found in
	// (the first walked): its value there is in the history record of the
	// first version above that changed its key. A node record is used by
	// one unbroken range of versions, so checking its leaves at the top
	// of that range covers the whole range; the same leaf in another
	// record (A → B → A) is another range, with a history record of its
	// own, and is checked there.
	type olderLeaf struct {
		v  uint64
		kp types.Hash
		sl slot
	}
	var older []olderLeaf
	var mark func(v uint64, sl slot) error
	mark = func(v uint64, sl slot) error {
		switch sl.kind {
		case slotEmpty:
			return nil
		case slotLeaf:
			if kp := sl.keyPath(); v == latest {
				latestLeaves[kp] = sl.h
			} else if latestLeaves[kp] != sl.h {
				older = append(older, olderLeaf{v, kp, sl})
			}
			return nil
		}
		if marked[sl.ref()] {
			return nil
		}
		marked[sl.ref()] = true
		raw, err := s.d.Get(ctx, nodeKey(sl.born, sl.h))
		if errors.Is(err, ds.ErrNotFound) {
			rep.Missing = append(rep.Missing, sl.h)
			return nil
		}
		if err != nil {
			return err
		}
		n, err := decodeNode(raw, sl.ref(), s.modules)
		if err != nil || !n.hashMatches(sl.h) {
			rep.Missing = append(rep.Missing, sl.h)
			return nil
		}
		for j := range n.entries() {
			if err := mark(v, n.at(j)); err != nil {
				return err
			}
		}
		return nil
	}
	// The latest version goes first, collecting its leaves for the index
	// check; nothing is marked yet, and within one tree no node repeats.
	// A node shared with an older version is walked once, from the highest
	// version holding it: its leaves read the same history record at every
	// version that holds it.
	for v := latest; ; v-- {
		root, err := s.rootAt(ctx, v)
		if err != nil {
			return nil, err
		}
		if err := mark(v, root); err != nil {
			return nil, err
		}
		rep.Versions++
		if v == min {
			break
		}
	}
	rep.Reachable = len(marked)
	for _, l := range older {
		if _, err := s.leafValue(ctx, l.v, l.kp, &l.sl); errors.Is(err, ErrCorrupt) {
			rep.Missing = append(rep.Missing, l.sl.h)
		} else if err != nil {
			return nil, err
		}
	}

	pending := map[nodeRef]bool{}
	type histRef struct {
		kp types.Hash
		d  uint64
	}
	named := map[histRef]bool{} // history records a stale list names
	for v := done + 1; v <= latest; v++ {
		raw, err := s.d.Get(ctx, staleKey(v))
		if err != nil && !errors.Is(err, ds.ErrNotFound) {
			return nil, err
		}
		l, err := decodeStale(raw)
		if err != nil {
			return nil, err
		}
		for _, r := range l.refs {
			pending[r] = true
		}
		for _, p := range l.paths {
			named[histRef{p, v}] = true
		}
	}
	stored, err := s.keysWithPrefix(ctx, nsNode)
	if err != nil {
		return nil, err
	}
	for _, k := range stored {
		r, err := parseNodeKey(k[len(nsNode):])
		if err != nil {
			return nil, err
		}
		if !marked[r] && !pending[r] {
			rep.Leaked = append(rep.Leaked, r.id)
		}
	}
	// The history of versions done+1..latest is kept (those above min are
	// read by retained versions, the others await the pruner), each record
	// named by its version's stale list, which is how the pruner finds it.
	hist, err := s.keysWithPrefix(ctx, nsHist)
	if err != nil {
		return nil, err
	}
	for _, k := range hist {
		kp, d, err := parseHistKey(k[len(nsHist):])
		if err != nil {
			return nil, err
		}
		if !named[histRef{kp, d}] {
			rep.Leaked = append(rep.Leaked, kp)
		}
	}

	for _, l := range [][]types.Hash{rep.Leaked, rep.Missing} {
		sort.Slice(l, func(i, j int) bool { return bytes.Compare(l[i][:], l[j][:]) < 0 })
	}
	indexed := 0
	err = s.iterateIndex(ctx, func(k types.StateKey, v []byte) error {
		indexed++
		kp := types.KeyPath(k)
		if h, ok := latestLeaves[kp]; !ok || h != types.LeafHash(kp, types.ValueHash(v)) {
			rep.IndexMismatch++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if indexed < len(latestLeaves) {
		rep.IndexMismatch += len(latestLeaves) - indexed
	}
	return rep, nil
}
