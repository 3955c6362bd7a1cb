package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/kairos-network/kairos/types"
)

// ErrReplaceBackend reports a Replace on a store whose batches are not
// atomic: its recovery undoes a torn version latest+1 only, and a replaced
// version is above that.
var ErrReplaceBackend = errors.New("state: replace needs atomic batches")

// ErrReplaceBusy reports a Replace while a View of a version below the
// snapshot is open: the replace would make it unreadable. Try again once
// readers moved on.
var ErrReplaceBusy = errors.New("state: replace waits for views of older versions")

// Replace makes the fully staged snapshot the latest version of s, a store
// that already holds versions below the snapshot's height (a running node
// that fell behind what its peers keep as blocks): it commits, as version
// Manifest().Height, the difference between s's latest state and the
// snapshot — every snapshot value that is new or changed, and a deletion
// for every key the snapshot lacks — so that the version is the snapshot's
// set of (key, value) pairs, and checks the resulting root against the
// manifest before anything is written. It then clears the staging area.
//
// The switch is one synced atomic batch, like any Commit: a crash leaves
// either the old latest version or the snapshot's, never a mix (hence
// ErrReplaceBackend without Options.AtomicBatches). The versions between
// the old latest and the snapshot's height never exist, and the versions
// below it become unreadable (ErrPruned), as after an Install: the
// snapshot's version is the new minimum, written in the switch's batch. The nodes only older versions used are in their
// stale lists or listed stale at the new version, so Prune reclaims them.
// A View open below the snapshot makes Replace fail with ErrReplaceBusy
// before anything is written; pins below it are not kept readable.
//
// Unlike Install it holds the snapshot's leaves and the difference in
// memory at once: it is meant for states that fit (the staged snapshot is
// read chunk by chunk, but the tree update needs every write sorted).
func (im *Importer) Replace(ctx context.Context, s *Store) (types.Root, error) {
	m := im.m
	latest, root, err := s.lockWriter()
	defer s.unlockWriter()
	if err != nil {
		return types.Root{}, err
	}
	if latest == m.Height && types.Root(root.h) == m.Root {
		// Switched already (a crash before the staging area was cleared).
		return m.Root, clearSnapshotStaging(ctx, im.d)
	}
	if !s.opts.AtomicBatches {
		return types.Root{}, ErrReplaceBackend
	}
	if m.Height <= latest {
		return types.Root{}, fmt.Errorf("%w: snapshot of version %d, latest is %d", ErrHeight, m.Height, latest)
	}
	if n := len(im.Missing()); n > 0 {
		return types.Root{}, fmt.Errorf("%w: %d of %d chunks missing", ErrSnapshotIncomplete, n, len(m.Chunks))
	}
	items, err := im.replaceItems(ctx, s)
	if err != nil {
		return types.Root{}, err
	}
	c := &committer{s: s, ctx: ctx, height: m.Height}
	var o out
	s.modules.assignWrites(items)
	newRoot, err := c.update(&o, root, 0, items)
	if err != nil {
		return types.Root{}, err
	}
	// The version below becomes unreadable with this one (the minimum
	// moves to it in the same batch), and only versions below read a
	// version's history: it writes none.
	o.history = nil
	if types.Root(newRoot.h) != m.Root {
		// Staged chunks were verified on arrival: only a corrupted staging
		// area or flat index gets here. Nothing was written; the import
		// starts over, as after a failed Install.
		err := fmt.Errorf("%w: replaced %s, manifest %s", ErrSnapshotRoot, types.Root(newRoot.h), m.Root)
		return types.Root{}, errors.Join(err, clearSnapshotStaging(ctx, im.d))
	}
	// New readers below the snapshot are refused from here on (the
	// durable minimum follows in the batch); a reader already open there
	// would meet pruned nodes later, so it makes the replace wait.
	s.mu.Lock()
	for h := range s.views {
		if h < m.Height {
			s.mu.Unlock()
			return types.Root{}, fmt.Errorf("%w: a view of version %d is open", ErrReplaceBusy, h)
		}
	}
	s.min = m.Height
	s.mu.Unlock()
	o.modules = s.modules.take() // from here on, written or the store fails
	if err := s.writeReplace(ctx, m.Height, newRoot, &o); err != nil {
		return types.Root{}, s.fail(fmt.Errorf("%w: replace with version %d: %w", ErrNeedsReopen, m.Height, err))
	}
	s.cache.replace(o.replaced, o.nodes)
	s.mu.Lock()
	s.latest, s.root = m.Height, newRoot
	s.mu.Unlock()
	return m.Root, clearSnapshotStaging(ctx, im.d)
}

// writeReplace writes version height as Commit's write does on an atomic
// backend, with the new minimum in the same synced batch: the versions
// below are unreadable from the switch on, and Prune reclaims what only
// they used (the stale lists up to height say which).
func (s *Store) writeReplace(ctx context.Context, height uint64, root slot, o *out) error {
	b, err := s.commitBatch(ctx, height, root, o)
	if err != nil {
		return err
	}
	if err := b.Put(ctx, keyMin, binary.AppendUvarint(nil, height)); err != nil {
		discardBatch(b)
		return err
	}
	return b.Commit(ctx) // synced, as every version batch
}

// replaceItems returns the writes that turn s's latest state into the
// staged snapshot, sorted by key path: snapshot values s lacks or holds
// with another value, and deletions of keys absent from the snapshot.
func (im *Importer) replaceItems(ctx context.Context, s *Store) ([]item, error) {
	want := map[types.Hash]*builtLeaf{}
	for i := range im.m.Chunks {
		ls, err := im.prepare(ctx, i)
		if err != nil {
			return nil, err
		}
		for k := range ls {
			want[ls[k].kp] = &ls[k]
		}
	}
	var items []item
	err := s.iterateIndex(ctx, func(k types.StateKey, v []byte) error {
		kp := types.KeyPath(k)
		l, ok := want[kp]
		switch {
		case !ok:
			items = append(items, item{kp: kp, key: k, isNew: true})
		case bytes.Equal(l.value, v):
			delete(want, kp) // unchanged
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range want {
		items = append(items, item{kp: l.kp, key: l.key, value: l.value, vh: l.vh, isNew: true})
	}
	sort.Slice(items, func(i, j int) bool { return bytes.Compare(items[i].kp[:], items[j].kp[:]) < 0 })
	return items, nil
}
