package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	ds "github.com/ipfs/go-datastore"

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
)

func snapStageChunkKey(i int) ds.Key {
	return ds.NewKey(fmt.Sprintf("%s%08d", snapStageChunkPrefix, i))
}

// Importer receives the chunks of one manifest in any order, verifies each
// against the manifest root on arrival and stages it durably. It is not safe
// for concurrent use; the caller fetches in parallel and adds serially.
type Importer struct {
	d      ds.Batching
	m      *Manifest
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
	if err := clearSnapshotStaging(ctx, d); err != nil {
		return nil, err
	}
	if err := d.Put(ctx, snapStageManifestKey, mb); err != nil {
		return nil, err
	}
	return im, d.Sync(ctx, snapStageManifestKey)
}

// clearSnapshotStaging deletes every staged chunk and the staged manifest.
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
	if err := b.Delete(ctx, snapStageManifestKey); err != nil {
		return err
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
	if im.staged[c.Index] {
		return false, nil
	}
	key := snapStageChunkKey(int(c.Index))
	if err := im.d.Put(ctx, key, chunk); err != nil {
		return false, err
	}
	if err := im.d.Sync(ctx, key); err != nil {
		return false, err
	}
	im.staged[c.Index] = true
	im.left--
	return true, nil
}

// Missing returns the indexes of the chunks not staged yet, ascending.
func (im *Importer) Missing() []int {
	var out []int
	for i, ok := range im.staged {
		if !ok {
			out = append(out, i)
		}
	}
	return out
}

// Done reports whether every chunk is staged.
func (im *Importer) Done() bool { return im.left == 0 }

// leaves calls fn for every staged leaf in key-path order. Staged chunks
// were verified before they were written; they are decoded again (not
// trusted blindly) and the caller re-checks the rebuilt root.
func (im *Importer) leaves(ctx context.Context, fn func(SnapshotLeaf) error) error {
	if !im.Done() {
		return fmt.Errorf("%w: %d of %d chunks missing", ErrSnapshotIncomplete, im.left, len(im.m.Chunks))
	}
	for i := range im.m.Chunks {
		b, err := im.d.Get(ctx, snapStageChunkKey(i))
		if err != nil {
			return fmt.Errorf("%w: staged chunk %d: %w", ErrSnapshotIncomplete, i, err)
		}
		var c Chunk
		if err := types.Decode(b, &c); err != nil {
			return fmt.Errorf("%w: staged chunk %d: %w", ErrChunkMalformed, i, err)
		}
		for _, l := range c.Leaves {
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}
