package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// ErrSnapshotTarget reports an import into a store that already holds
// versions: a snapshot replaces nothing, it only seeds an empty store.
var ErrSnapshotTarget = errors.New("state: snapshot import needs an empty store")

// ErrSnapshotTooLarge reports a snapshot too large to install on a backend
// without atomic batches, whose recovery replays the version's change set
// and so bounds it like a block (BlockWritesMax).
var ErrSnapshotTooLarge = errors.New("state: snapshot too large for a backend without atomic batches")

// ExportSnapshot writes a snapshot of version height: each chunk (at most
// perChunk leaves, in key-path order) goes to emit as it is cut, and the
// manifest is returned last. It is View(height).ExportSnapshot.
func (s *Store) ExportSnapshot(ctx context.Context, height uint64, perChunk int, emit func(index int, chunk []byte) error) (*Manifest, error) {
	v, err := s.View(ctx, height)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return v.ExportSnapshot(ctx, perChunk, emit)
}

// ExportSnapshot writes a snapshot of the view's version. The open View
// pins the version, so a concurrent Prune never removes a node the export
// still needs. It walks the tree twice: once for the leaf hashes, which fix
// the chunk ranges and proofs (64 bytes per key in memory), and once for the
// keys and values, one chunk at a time.
func (v *View) ExportSnapshot(ctx context.Context, perChunk int, emit func(index int, chunk []byte) error) (*Manifest, error) {
	if err := v.enter(); err != nil {
		return nil, err
	}
	defer v.mu.RUnlock()
	var leaves []snapLeaf
	err := v.walkLeaves(ctx, v.root, func(sl *slot) error {
		leaves = append(leaves, snapLeaf{path: sl.kp, hash: sl.h})
		return nil
	})
	if err != nil {
		return nil, err
	}
	p, err := planSnapshot(v.height, v.Root(), leaves, perChunk, emit)
	if err != nil {
		return nil, err
	}
	var cur []SnapshotLeaf
	flush := func() error {
		for n := p.wants(); n >= 0 && len(cur) == n; n = p.wants() {
			if err := p.cut(cur); err != nil {
				return err
			}
			cur = nil
		}
		return nil
	}
	err = v.walkLeaves(ctx, v.root, func(sl *slot) error {
		_, k, val, err := v.s.readValue(ctx, sl)
		if err != nil {
			return err
		}
		cur = append(cur, SnapshotLeaf{Key: k, Value: val})
		return flush()
	})
	if err == nil {
		err = flush() // the one empty chunk of an empty tree
	}
	if err == nil && p.wants() >= 0 {
		err = fmt.Errorf("%w: snapshot source: %d of %d chunks cut", ErrCorrupt, len(p.m.Chunks), len(p.runs))
	}
	if err != nil {
		return nil, err
	}
	return p.m, nil
}

// walkLeaves calls fn for every leaf under sl in key-path order: a node's
// occupied slots are in nibble order, which is key-path order.
func (v *View) walkLeaves(ctx context.Context, sl slot, fn func(*slot) error) error {
	switch sl.kind {
	case slotEmpty:
		return nil
	case slotLeaf:
		if err := fn(&sl); err != nil {
			return err
		}
		return ctx.Err()
	}
	n, err := v.s.loadNode(ctx, sl.h)
	if err != nil {
		return err
	}
	for _, child := range n.entries {
		if err := v.walkLeaves(ctx, child, fn); err != nil {
			return err
		}
	}
	return nil
}

// Install rebuilds the tree of a fully staged snapshot in s, which must be
// empty, re-checks the rebuilt root against the manifest, and only then
// writes it as version Manifest().Height (the lowest readable version from
// then on) and clears the staging area. Installing is idempotent: after a
// crash, a new Importer for the same manifest finishes the job, and one whose
// version is already in place only clears the staging area.
func (im *Importer) Install(ctx context.Context, s *Store) error {
	m := im.m
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	latest, root := s.latest, s.root
	s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if latest == m.Height && types.Root(root.h) == m.Root {
		return clearSnapshotStaging(ctx, im.d)
	}
	if latest != 0 || root.kind != slotEmpty {
		return fmt.Errorf("%w: store is at version %d", ErrSnapshotTarget, latest)
	}
	if m.Height == 0 {
		return fmt.Errorf("%w: snapshot of version 0", ErrSnapshotManifest)
	}
	if !s.opts.AtomicBatches && m.Leaves > BlockWritesMax {
		return fmt.Errorf("%w: %d leaves, limit %d", ErrSnapshotTooLarge, m.Leaves, BlockWritesMax)
	}
	items := make([]item, 0, m.Leaves)
	err := im.leaves(ctx, func(l SnapshotLeaf) error {
		items = append(items, item{kp: types.KeyPath(l.Key), vh: types.ValueHash(l.Value), key: l.Key, value: l.Value, isNew: true})
		return nil
	})
	if err != nil {
		return err
	}
	c := &committer{s: s, ctx: ctx, height: m.Height}
	var o out
	newRoot, err := c.update(&o, slot{}, 0, items)
	if err != nil {
		return err
	}
	if types.Root(newRoot.h) != m.Root {
		return fmt.Errorf("%w: rebuilt %s, manifest %s", ErrSnapshotRoot, types.Root(newRoot.h), m.Root)
	}
	// The new lowest readable version goes first: from then on a reader
	// asking for an older version gets ErrPruned, not a missing root. There
	// is nothing to prune below it either.
	for _, k := range []ds.Key{keyMin, keyPruneDone} {
		if err := s.d.Put(ctx, k, binary.AppendUvarint(nil, m.Height)); err != nil {
			return err
		}
	}
	if err := s.write(ctx, m.Height, newRoot, &o); err != nil {
		// As in Commit: part of the version may be on disk.
		s.failed = fmt.Errorf("%w: snapshot install %d: %w", ErrNeedsReopen, m.Height, err)
		return s.failed
	}
	for _, n := range o.nodes {
		s.cache.put(n)
	}
	s.mu.Lock()
	s.latest, s.root, s.min, s.pruneDone = m.Height, newRoot, m.Height, m.Height
	s.mu.Unlock()
	return clearSnapshotStaging(ctx, im.d)
}
