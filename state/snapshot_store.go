package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// ErrSnapshotTarget reports an import into a store that already holds
// versions: a snapshot replaces nothing, it only seeds an empty store.
var ErrSnapshotTarget = errors.New("state: snapshot import needs an empty store")

// ErrEmptyValue reports a Seed leaf without a value: in the store an empty
// value means the key is absent, so no leaf holds one.
var ErrEmptyValue = errors.New("state: empty value in a seed leaf")

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
// still needs. It walks the tree's nodes once for the leaves, whose hashes
// fix the chunk ranges and proofs (~150 bytes per key in memory), then reads
// the values, each from the flat index or the history (leafValue) and
// checked against its leaf, while chunks are cut on every core: on pebble a
// window of chunks at a time in key order (valueWindows), otherwise chunk by
// chunk.
func (v *View) ExportSnapshot(ctx context.Context, perChunk int, emit func(index int, chunk []byte) error) (*Manifest, error) {
	if err := v.enter(); err != nil {
		return nil, err
	}
	defer v.mu.RUnlock()
	leaves, err := v.leafHashes(ctx)
	if err != nil {
		return nil, err
	}
	p, err := planSnapshot(v.height, v.Root(), leaves, perChunk)
	if err != nil {
		return nil, err
	}
	read := func(lo, hi int) ([]SnapshotLeaf, error) {
		out := make([]SnapshotLeaf, hi-lo)
		for j := range out {
			sl := leaves[lo+j].slot()
			val, err := v.s.leafValue(ctx, v.height, leaves[lo+j].path, &sl)
			if err != nil {
				return nil, err
			}
			out[j] = snapshotLeaf(&sl, val)
		}
		return out, nil
	}
	if v.s.pdb != nil {
		read = newValueWindows(ctx, v, p, perChunk).read
	}
	return p.cut(func(lo, hi int) ([]SnapshotLeaf, error) {
		out, err := read(lo, hi)
		if err != nil {
			return nil, err
		}
		return out, ctx.Err()
	}, emit)
}

// snapWalkSplit is how many subtrees per core the leaf walk of an export
// aims for: the node reads of a large tree are spread over the cores.
const snapWalkSplit = 8

// leafHashes returns the key path and hash of every leaf of the view, in
// key-path order. The top of the tree is opened until there are enough
// subtrees to walk in parallel; their leaves are concatenated in order.
func (v *View) leafHashes(ctx context.Context) ([]snapLeaf, error) {
	frontier := []slot{v.root}
	for want := snapWalkSplit * runtime.GOMAXPROCS(0); len(frontier) < want; {
		var next []slot
		opened := false
		for _, sl := range frontier {
			if sl.kind != slotChild {
				next = append(next, sl)
				continue
			}
			n, err := v.s.loadNode(ctx, sl.ref())
			if err != nil {
				return nil, err
			}
			for j := range n.entries() {
				next = append(next, n.at(j))
			}
			opened = true
		}
		frontier = next
		if !opened {
			break
		}
	}
	var leaves []snapLeaf
	err := inOrder(len(frontier), func(i int) ([]snapLeaf, error) {
		var out []snapLeaf
		err := v.walkLeaves(ctx, frontier[i], func(sl *slot) error {
			out = append(out, snapLeaf{path: sl.keyPath(), hash: sl.h, data: sl.leaf})
			return nil
		})
		return out, err
	}, func(_ int, ls []snapLeaf) error {
		leaves = append(leaves, ls...)
		return nil
	})
	return leaves, err
}

// walkLeaves calls fn for every leaf under sl in key-path order: a node's
// occupied slots are in nibble order, which is key-path order.
func (v *View) walkLeaves(ctx context.Context, sl slot, fn func(*slot) error) error {
	switch sl.kind {
	case slotEmpty:
		return nil
	case slotLeaf:
		return fn(&sl)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := v.s.loadNode(ctx, sl.ref())
	if err != nil {
		return err
	}
	for j := range n.entries() {
		if err := v.walkLeaves(ctx, n.at(j), fn); err != nil {
			return err
		}
	}
	return nil
}

// Install builds the tree of a fully staged snapshot in s, which must be
// empty and must be the store of the Importer's datastore, and switches s to
// it as version Manifest().Height (the lowest readable version from then
// on), then clears the staging area.
//
// The tree is built bottom-up while the staged leaves stream past in
// key-path order, and written in batches of SnapshotInstallBatchBytes, so
// memory stays bounded at any snapshot size. None of it is reachable until
// the switch: the root record and the latest pointer are written in one
// last batch, after the rebuilt root has been checked against the manifest.
// A durable install marker, written before the first batch, says that the
// store holds an unfinished install, and a progress record after each
// durable batch says where it got to. A crash before the switch is finished
// by a new Importer of the same manifest and Install, which goes on from the
// progress record (rewriting a record is harmless: records are
// content-addressed); an Importer of another manifest first discards what
// the unfinished install wrote. A crash after the switch leaves only the staging area, which the
// next Install of the same manifest clears.
//
// The flat index is written with the records, so before the switch Get on
// s may already return snapshot values while Latest still says version 0:
// a store that is being seeded must not serve reads.
func (im *Importer) Install(ctx context.Context, s *Store) error {
	return im.install(ctx, s, nil)
}

// ChunkSource returns the bytes of chunk i of the manifest being imported.
// It is called from several goroutines at once, for increasing i.
type ChunkSource func(ctx context.Context, i int) ([]byte, error)

// CheckedChunkSource is a ChunkSource that has checked each chunk's bytes
// against the manifest's hash (Manifest.CheckChunk), as a node fetching
// from several peers must to refuse a bad peer's bytes: the install then
// hashes each chunk once, not twice.
type CheckedChunkSource func(ctx context.Context, i int) (CheckedChunk, error)

// InstallFromChecked is InstallFrom reading from a source that checked
// each chunk's hash. A chunk checked as another index than the one asked
// for, or against another hash than this manifest's, is refused
// (ErrChunkHash) as if its bytes differed.
func (im *Importer) InstallFromChecked(ctx context.Context, s *Store, src CheckedChunkSource) error {
	if src == nil {
		return im.install(ctx, s, nil)
	}
	return im.install(ctx, s, func(ctx context.Context, i int) ([]byte, bool, error) {
		c, err := src(ctx, i)
		if err != nil {
			return nil, false, sourceFailed(i, err)
		}
		if c.i != i {
			return nil, false, fmt.Errorf("%w: chunk %d checked as chunk %d", ErrChunkHash, i, c.i)
		}
		if c.hash != im.m.Chunks[i].Hash {
			return nil, false, fmt.Errorf("%w: chunk %d checked against another manifest's hash", ErrChunkHash, i)
		}
		return c.b, true, nil
	})
}

// chunkReader is what an install reads chunks with: the bytes of chunk i,
// and whether they were checked against the manifest's hash. Its errors
// are returned as they are: a source that could not deliver says so with
// sourceFailed, a refusal of what it delivered with the refused check's
// sentinel.
type chunkReader func(ctx context.Context, i int) (b []byte, hashed bool, err error)

// sourceFailed is the error of a chunk source that could not deliver chunk
// i: the import is incomplete, for src's reason.
func sourceFailed(i int, err error) error {
	return fmt.Errorf("%w: chunk %d: %w", ErrSnapshotIncomplete, i, err)
}

// InstallFrom is Install for an import that can read its chunks itself, in
// order: chunks on local disk, or a stream from one peer. Every chunk the
// staging area lacks is read with src while the tree is built, verified as
// Add verifies it (on every core, a few chunks ahead of the builder), and
// built from without being staged: no staging write, no second decoding
// and hashing of its leaves. Staged chunks are built from the staging area
// as in Install; with a nil src every chunk must be staged.
//
// A chunk that src fails to return or that fails verification stops the
// install with that error (ErrSnapshotIncomplete wrapping src's error, or
// the sentinel of the failed check) before any of its leaves is used. What
// the install wrote until then is unreachable, as after a crash: a new
// Importer of the same manifest and InstallFrom go on from the last durable
// batch, reading the chunks after it again.
func (im *Importer) InstallFrom(ctx context.Context, s *Store, src ChunkSource) error {
	if src == nil {
		return im.install(ctx, s, nil)
	}
	return im.install(ctx, s, func(ctx context.Context, i int) ([]byte, bool, error) {
		b, err := src(ctx, i)
		if err != nil {
			return nil, false, sourceFailed(i, err)
		}
		return b, false, nil
	})
}

// install is InstallFrom and InstallFromChecked.
func (im *Importer) install(ctx context.Context, s *Store, src chunkReader) error {
	m := im.m
	latest, root, err := s.lockWriter()
	defer s.unlockWriter()
	if err != nil {
		return err
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
	if n := len(im.Missing()); n > 0 && src == nil {
		return fmt.Errorf("%w: %d of %d chunks missing", ErrSnapshotIncomplete, n, len(im.m.Chunks))
	}
	if err := s.d.Put(ctx, snapInstallKey, binary.AppendUvarint(nil, m.Height)); err != nil {
		return err
	}
	if err := s.d.Sync(ctx, snapInstallKey); err != nil {
		return err
	}
	pl := ingestPlaceOf(s, m.Height)
	p, err := im.progress(ctx, s, pl)
	if err != nil {
		return err
	}
	im.skipped = p.next
	var newRoot slot
	runs := 0
	if p.ingested {
		newRoot, err = decodeRoot(p.body) // checked by progress
	} else {
		newRoot, runs, err = im.buildTree(ctx, s, src, pl, p)
	}
	if err != nil {
		return err
	}
	if types.Root(newRoot.h) != m.Root {
		// Staged chunks were verified when they arrived, so only a
		// corrupted staging area gets here: start the import over.
		return im.abandon(ctx, s, pl, fmt.Errorf("%w: rebuilt %s, manifest %s", ErrSnapshotRoot, types.Root(newRoot.h), m.Root))
	}
	if pl != nil && !p.ingested {
		// The root checked out: the runs go into pebble, a progress
		// record says so, and the scratch files go before the switch, so
		// that no crash leaves them behind a finished install.
		if err := pl.ingestRuns(ctx, runs); errors.Is(err, ErrCorrupt) {
			return im.abandon(ctx, s, pl, err) // a damaged run: start over
		} else if err != nil {
			return err
		}
		done := installProgress{next: len(m.Chunks), runs: runs, ingested: true, body: encodeRoot(newRoot)}
		if err := done.put(ctx, s); err != nil {
			return err
		}
		if err := pl.clear(); err != nil {
			return err
		}
	}
	if err := s.switchTo(ctx, m.Height, newRoot); err != nil {
		return err
	}
	return clearSnapshotStaging(ctx, im.d)
}

// abandon discards an install that cannot finish from what it wrote (err
// says why) and the staging area, so that the next import starts over, and
// returns err.
func (im *Importer) abandon(ctx context.Context, s *Store, pl *ingestPlace, err error) error {
	if pl != nil {
		err = errors.Join(err, pl.clear())
	}
	if derr := discardInstall(ctx, s.d); derr != nil {
		return errors.Join(err, derr)
	}
	return errors.Join(err, clearSnapshotStaging(ctx, im.d))
}

// Seed writes the leaves that fill hands to add, in strictly increasing
// key-path order over all calls, as version height of the empty store s,
// and returns its root. It is the install of a snapshot without a manifest
// to check against: for genesis states and benchmarks that need a large
// tree fast. The leaves of one add call are hashed on every core; add may
// be called with any number of leaves. Memory is bounded as in Install. If
// Seed fails or the process dies before it returns, the store holds
// unreachable records: discard the datastore.
func (s *Store) Seed(ctx context.Context, height uint64, fill func(add func([]SnapshotLeaf) error) error) (types.Root, error) {
	latest, root, err := s.lockWriter()
	defer s.unlockWriter()
	if err != nil {
		return types.Root{}, err
	}
	if latest != 0 || root.kind != slotEmpty {
		return types.Root{}, fmt.Errorf("%w: store is at version %d", ErrSnapshotTarget, latest)
	}
	if height == 0 {
		return types.Root{}, fmt.Errorf("%w: seed of version 0", ErrHeight)
	}
	newRoot, err := s.build(ctx, height, func(ctx context.Context, w *recordWriter, add func(*builtLeaf) error) error {
		return fill(func(ls []SnapshotLeaf) error {
			for i, l := range ls {
				if len(l.Key.Key) > types.StateKeyMax {
					return fmt.Errorf("%w: %d bytes in leaf %d", ErrKeyTooLong, len(l.Key.Key), i)
				}
				if len(l.Value) == 0 {
					return fmt.Errorf("%w: leaf %d", ErrEmptyValue, i)
				}
				if len(l.Value) > types.StateValueMax {
					return fmt.Errorf("%w: %d bytes in leaf %d", ErrValueTooLarge, len(l.Value), i)
				}
			}
			hashed := make([]builtLeaf, len(ls))
			parts := min(runtime.GOMAXPROCS(0), max(1, len(ls)/256))
			var wg sync.WaitGroup
			for p := 0; p < parts; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := p * len(ls) / parts; i < (p+1)*len(ls)/parts; i++ {
						hashed[i] = hashLeaf(ls[i])
						hashed[i].makeBytes()
					}
				}()
			}
			wg.Wait()
			if err := w.assignModules(distinctModules(hashed)); err != nil {
				return err
			}
			for i := range hashed {
				if err := add(&hashed[i]); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return types.Root{}, err
	}
	if err := s.switchTo(ctx, height, newRoot); err != nil {
		return types.Root{}, err
	}
	return types.Root(newRoot.h), nil
}

// build streams the leaves of leaves through a treeBuilder into s and
// returns the root slot; nothing is reachable yet.
func (s *Store) build(ctx context.Context, height uint64, leaves func(context.Context, *recordWriter, func(*builtLeaf) error) error) (slot, error) {
	w := newStoreRecordWriter(ctx, s)
	b := newTreeBuilder(height, w)
	if err := leaves(ctx, w, b.add); err != nil {
		return slot{}, errors.Join(err, w.wait())
	}
	root, err := b.root()
	if err != nil {
		return slot{}, errors.Join(err, w.wait())
	}
	return root, w.flush()
}

// switchTo makes version height with root the latest and lowest readable
// version of the empty store s, whose records build has written. On atomic
// backends that is one synced batch; otherwise the latest pointer goes last,
// after everything else is durable, and is the switch.
func (s *Store) switchTo(ctx context.Context, height uint64, root slot) error {
	if err := s.writeSwitch(ctx, height, root); err != nil {
		// As in Commit: part of the switch may be on disk, and only Open
		// reads back which.
		return s.fail(fmt.Errorf("%w: install of version %d: %w", ErrNeedsReopen, height, err))
	}
	s.mu.Lock()
	s.latest, s.root, s.min, s.pruneDone = height, root, height, height
	s.mu.Unlock()
	return nil
}

func (s *Store) writeSwitch(ctx context.Context, height uint64, root slot) error {
	b, err := s.d.Batch(ctx)
	if err != nil {
		return err
	}
	hv := binary.AppendUvarint(nil, height)
	put := func(k ds.Key, v []byte) {
		if err == nil {
			err = b.Put(ctx, k, v)
		}
	}
	put(rootKey(height), encodeRoot(root))
	put(keyMin, hv)
	put(keyPruneDone, hv)
	if s.opts.AtomicBatches {
		put(keyLatest, hv)
		for _, k := range []ds.Key{snapInstallKey, snapProgressKey} {
			if err == nil {
				err = b.Delete(ctx, k)
			}
		}
	}
	if err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	if !s.opts.AtomicBatches {
		sync := func() error { return s.d.Sync(ctx, ds.NewKey("/kairos")) }
		if err := sync(); err != nil {
			return err
		}
		if err := s.d.Put(ctx, keyLatest, hv); err != nil {
			return err
		}
		if err := sync(); err != nil {
			return err
		}
		// A marker left by a crash here names a finished install, which
		// discardInstall recognizes by the latest pointer.
		for _, k := range []ds.Key{snapProgressKey, snapInstallKey} {
			if err := s.d.Delete(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}
