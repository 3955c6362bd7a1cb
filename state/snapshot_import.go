package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/types"
)

// Import errors.
var (
	ErrSnapshotIncomplete = errors.New("state: snapshot import incomplete")
	ErrSnapshotRoot       = errors.New("state: snapshot rebuilt root differs from its manifest")
)

// Staging keys. The staging area is separate from the tree, so a crashed
// import leaves the live state untouched and a restarted one finds its
// verified chunks again.
var (
	snapStageManifestKey = ds.NewKey("/kairos/snapimport/manifest")
	snapStageChunkPrefix = "/kairos/snapimport/chunk/"
	// snapInstallKey marks an install that has started writing records
	// and not switched yet; its value is the snapshot's height (uvarint).
	snapInstallKey = ds.NewKey("/kairos/snapimport/installing")
	// snapProgressKey records how far an unfinished install got: the next
	// staged chunk and the tree builder's state after the previous one,
	// written once the records before it are durable.
	snapProgressKey = ds.NewKey("/kairos/snapimport/progress")
)

func snapStageChunkKey(i int) ds.Key {
	return ds.NewKey(fmt.Sprintf("%s%08d", snapStageChunkPrefix, i))
}

// Importer receives the chunks of one manifest in any order, verifies each
// against the manifest root on arrival and stages it durably. Add, Missing
// and Done may be called from several goroutines at once (chunks fetched
// from several peers are verified in parallel); Install, InstallFrom and
// Replace must not overlap them.
type Importer struct {
	d ds.Batching
	m *Manifest

	mu     sync.Mutex // guards staged and left
	staged []bool
	left   int
}

// NewImporter opens the staging area of d for manifest m. Chunks already
// staged for the same manifest (by an importer that crashed) are kept and
// skipped; a staging area of any other manifest is cleared first.
func NewImporter(ctx context.Context, d ds.Batching, m *Manifest) (*Importer, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	mb, err := EncodeManifest(m)
	if err != nil {
		return nil, err
	}
	im := &Importer{d: d, m: m, staged: make([]bool, len(m.Chunks)), left: len(m.Chunks)}
	old, err := d.Get(ctx, snapStageManifestKey)
	switch {
	case err == nil && bytes.Equal(old, mb):
		for i := range m.Chunks {
			ok, err := d.Has(ctx, snapStageChunkKey(i))
			if err != nil {
				return nil, err
			}
			if ok {
				im.staged[i] = true
				im.left--
			}
		}
		return im, nil
	case err != nil && !errors.Is(err, ds.ErrNotFound):
		return nil, err
	}
	if err := discardInstall(ctx, d); err != nil {
		return nil, err
	}
	if err := clearSnapshotStaging(ctx, d); err != nil {
		return nil, err
	}
	if err := d.Put(ctx, snapStageManifestKey, mb); err != nil {
		return nil, err
	}
	return im, d.Sync(ctx, snapStageManifestKey)
}

// clearSnapshotStaging deletes every staged chunk, the staged manifest and
// the install marker and progress.
// Chunk indexes are bounded by SnapshotChunksMax, so the keys are probed
// from the staged manifest rather than found by a query.
func clearSnapshotStaging(ctx context.Context, d ds.Batching) error {
	old, err := d.Get(ctx, snapStageManifestKey)
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	var m Manifest
	n := SnapshotChunksMax
	if types.Decode(old, &m) == nil {
		n = len(m.Chunks)
	}
	b, err := d.Batch(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := b.Delete(ctx, snapStageChunkKey(i)); err != nil {
			return err
		}
	}
	for _, k := range []ds.Key{snapStageManifestKey, snapInstallKey, snapProgressKey} {
		if err := b.Delete(ctx, k); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	return d.Sync(ctx, ds.NewKey("/kairos/snapimport"))
}

// Add verifies one chunk and stages it durably. A chunk already staged is
// skipped (staged reports false). Nothing is staged unless every check of
// VerifyChunk passes.
func (im *Importer) Add(ctx context.Context, chunk []byte) (staged bool, err error) {
	c, err := VerifyChunk(im.m, chunk)
	if err != nil {
		return false, err
	}
	im.mu.Lock()
	done := im.staged[c.Index]
	im.mu.Unlock()
	if done {
		return false, nil
	}
	// Two callers may stage the same chunk at once: the bytes that verify
	// are the same for both (the manifest lists their hash), so both writes
	// put the same value, and only the first to finish reports it staged.
	if err := im.stage(ctx, snapStageChunkKey(int(c.Index)), chunk); err != nil {
		return false, err
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.staged[c.Index] {
		return false, nil
	}
	im.staged[c.Index] = true
	im.left--
	return true, nil
}

// stage writes a verified chunk durably. On pebble that is one synced
// write: go-ds-pebble's Put and Sync are two, the second a synced empty log
// record, a second fsync per chunk.
func (im *Importer) stage(ctx context.Context, key ds.Key, chunk []byte) error {
	if p, ok := im.d.(*pebbleds.Datastore); ok {
		return p.DB.Set(keyBytes(key), chunk, pebble.Sync)
	}
	if err := im.d.Put(ctx, key, chunk); err != nil {
		return err
	}
	return im.d.Sync(ctx, key)
}

// Missing returns the indexes of the chunks not staged yet, ascending.
func (im *Importer) Missing() []int {
	im.mu.Lock()
	defer im.mu.Unlock()
	var out []int
	for i, ok := range im.staged {
		if !ok {
			out = append(out, i)
		}
	}
	return out
}

// Done reports whether every chunk is staged.
func (im *Importer) Done() bool {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.left == 0
}

// discardInstall removes what an install that did not switch wrote into
// d: every record, every flat index entry and its root record. The install
// only ran on an empty store, so at version 0 all of them are its own. A
// marker beside a non-zero latest version names an install that did switch
// (the marker goes last on backends without atomic batches); then only the
// marker goes.
func discardInstall(ctx context.Context, d ds.Batching) error {
	raw, err := d.Get(ctx, snapInstallKey)
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	height, n := uvarint(raw)
	if n <= 0 || n != len(raw) {
		return fmt.Errorf("%w: bad install marker", ErrCorrupt)
	}
	// The progress goes first: a resumed install must never skip chunks
	// whose records are being deleted here.
	if err := d.Delete(ctx, snapProgressKey); err != nil {
		return err
	}
	if err := d.Sync(ctx, snapProgressKey); err != nil {
		return err
	}
	lb, err := d.Get(ctx, keyLatest)
	if err != nil {
		return err
	}
	if latest, n := uvarint(lb); n <= 0 || n != len(lb) {
		return fmt.Errorf("%w: bad latest pointer", ErrCorrupt)
	} else if latest == 0 {
		w := newRecordWriter(ctx, d)
		for _, prefix := range []string{nsNode, nsKV} {
			if err := deletePrefix(ctx, d, prefix, w); err != nil {
				return errors.Join(err, w.wait())
			}
		}
		zero := binary.AppendUvarint(nil, 0)
		if err := errors.Join(w.delete(rootKey(height)), w.put(keyMin, zero), w.put(keyPruneDone, zero), w.flush()); err != nil {
			return err
		}
	}
	if err := d.Delete(ctx, snapInstallKey); err != nil {
		return err
	}
	return d.Sync(ctx, ds.NewKey("/kairos"))
}

// deletePrefix deletes every key under prefix through w. Pebble iterates a
// snapshot and the map datastore collects its results first, so deleting
// while iterating is safe on both.
func deletePrefix(ctx context.Context, d ds.Batching, prefix string, w *recordWriter) error {
	res, err := d.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return err
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		if err := w.delete(ds.RawKey(r.Key)); err != nil {
			return err
		}
	}
	return nil
}

// buildTree streams the leaves of every chunk, staged or read from src,
// through a treeBuilder into s and returns the root slot; nothing is
// reachable yet. Staged chunks were verified when they arrived; they are
// decoded and hashed again here (not trusted blindly), and the caller
// re-checks the rebuilt root. Chunks from src are verified here. Decoding,
// verifying and hashing are most of an install's own CPU, so they run a few
// chunks ahead on every core (inOrder) and the builder only places leaves.
//
// Batches are cut at chunk boundaries. Once a batch is durable the install
// records its progress (the next chunk and the builder's state), and a
// restarted install of the same staging area goes on from there.
func (im *Importer) buildTree(ctx context.Context, s *Store, src ChunkSource) (slot, error) {
	w := newStoreRecordWriter(ctx, s)
	w.manual = true
	b := newTreeBuilder(im.m.Height, w)
	n := len(im.m.Chunks)
	start, err := im.progress(ctx, s, b)
	if err != nil {
		return slot{}, err
	}
	err = inOrder(n-start, func(i int) ([]builtLeaf, error) {
		return im.chunkLeaves(ctx, start+i, src)
	}, func(i int, ls []builtLeaf) error {
		for k := range ls {
			if err := b.add(&ls[k]); err != nil {
				return err
			}
		}
		if !w.full() {
			return nil
		}
		// The batch is written while the builder goes on; the progress
		// record (the builder's state now) follows it once it is written.
		rec := binary.AppendUvarint(nil, uint64(start+i+1))
		rec = append(rec, b.encodeState()...)
		return w.flushThen(func() error {
			if !s.opts.AtomicBatches {
				if err := s.d.Sync(ctx, ds.NewKey("/kairos")); err != nil {
					return err
				}
			}
			if err := s.d.Put(ctx, snapProgressKey, rec); err != nil {
				return err
			}
			return s.d.Sync(ctx, snapProgressKey)
		})
	})
	if err != nil {
		return slot{}, errors.Join(err, w.wait())
	}
	root, err := b.root()
	if err != nil {
		return slot{}, errors.Join(err, w.wait())
	}
	return root, w.flush()
}

// progress restores b from the progress record of an unfinished install
// and returns the first chunk still to build. Without a usable record the
// install starts over: its records are rewritten with the same bytes.
func (im *Importer) progress(ctx context.Context, s *Store, b *treeBuilder) (int, error) {
	raw, err := s.d.Get(ctx, snapProgressKey)
	if errors.Is(err, ds.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	next, k := uvarint(raw)
	if k <= 0 || next == 0 || next > uint64(len(im.m.Chunks)) || b.restoreState(raw[k:]) != nil {
		return 0, nil // restoreState changes b only when it succeeds
	}
	return int(next), nil
}

// chunkLeaves returns the hashed leaves of chunk i: from the staging area
// if it is staged or src is nil, otherwise read with src and verified.
func (im *Importer) chunkLeaves(ctx context.Context, i int, src ChunkSource) ([]builtLeaf, error) {
	im.mu.Lock()
	staged := im.staged[i]
	im.mu.Unlock()
	if staged || src == nil {
		return im.prepare(ctx, i)
	}
	b, err := src(ctx, i)
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %d: %w", ErrSnapshotIncomplete, i, err)
	}
	c, ls, err := verifyChunk(im.m, b)
	if err != nil {
		return nil, err
	}
	if int(c.Index) != i {
		return nil, fmt.Errorf("%w: asked for chunk %d, read chunk %d", ErrChunkMalformed, i, c.Index)
	}
	return ls, nil
}

// prepare reads, decodes and hashes staged chunk i.
func (im *Importer) prepare(ctx context.Context, i int) ([]builtLeaf, error) {
	b, err := im.d.Get(ctx, snapStageChunkKey(i))
	if err != nil {
		return nil, fmt.Errorf("%w: staged chunk %d: %w", ErrSnapshotIncomplete, i, err)
	}
	var c Chunk
	if err := types.Decode(b, &c); err != nil {
		return nil, fmt.Errorf("%w: staged chunk %d: %w", ErrChunkMalformed, i, err)
	}
	if int(c.Index) != i {
		return nil, fmt.Errorf("%w: staged chunk %d holds chunk %d", ErrChunkMalformed, i, c.Index)
	}
	out := make([]builtLeaf, len(c.Leaves))
	for j, l := range c.Leaves {
		out[j] = hashLeaf(l)
	}
	return out, nil
}
