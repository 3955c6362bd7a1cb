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

	// batchBytes, when > 0, replaces installBatchBytes (SetBatchBytes).
	batchBytes int
	// skipped is how many chunks the last install found built by an
	// earlier, interrupted one (Skipped).
	skipped int
}

// SetBatchBytes makes the install cut its batches at n bytes instead of
// SnapshotInstallBatchBytes: tests of another package use it to make a
// small install span many durable batches, so that an interrupted one
// resumes mid-way.
func (im *Importer) SetBatchBytes(n int) { im.batchBytes = n }

// Skipped returns how many chunks the last Install or InstallFrom took as
// built from the progress of an earlier, interrupted install: chunks it
// neither read from the staging area nor asked its source for.
func (im *Importer) Skipped() int { return im.skipped }

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
// through a treeBuilder into s and returns the root slot and the number of
// run files written (when pl is set: see ingest.go); nothing is reachable
// yet. Staged chunks were verified when they arrived; they are decoded and
// hashed again here (not trusted blindly: RATIONALE.md, "Why does an
// install not trust the staging area's hashes"), and the caller re-checks
// the rebuilt root. Chunks from src are verified here. Decoding, verifying
// and hashing are most of an install's own CPU, so they run a few chunks
// ahead on every core (inOrder) and the builder only places leaves.
//
// Batches are cut at chunk boundaries. Once a batch is durable the install
// records its progress (the next chunk, the runs written and the builder's
// state), and a restarted install of the same staging area goes on from
// there.
func (im *Importer) buildTree(ctx context.Context, s *Store, src chunkReader, pl *ingestPlace, p installProgress) (slot, int, error) {
	w := newStoreRecordWriter(ctx, s)
	w.manual = true
	w.ingest, w.nextRun = pl, p.runs
	if im.batchBytes > 0 {
		w.max = im.batchBytes
	}
	b := newTreeBuilder(im.m.Height, w)
	if p.next > 0 {
		if err := b.restoreState(p.body); err != nil {
			return slot{}, 0, err // checked by readProgress
		}
	}
	n := len(im.m.Chunks)
	start := p.next
	err := inOrder(n-start, func(i int) (builtChunk, error) {
		ls, err := im.chunkLeaves(ctx, start+i, src)
		if err != nil {
			return builtChunk{}, err
		}
		return buildChunk(ls), nil
	}, func(i int, c builtChunk) error {
		if err := w.assignModules(c.mods); err != nil {
			return err
		}
		ls := c.leaves
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
		rec := installProgress{next: start + i + 1, runs: w.nextRun, body: b.encodeState()}
		if pl != nil {
			rec.runs++ // the batch handed over now
		}
		return w.flushThen(func() error {
			if !s.opts.AtomicBatches {
				if err := s.d.Sync(ctx, ds.NewKey("/kairos")); err != nil {
					return err
				}
			}
			return rec.put(ctx, s)
		})
	})
	if err != nil {
		return slot{}, 0, errors.Join(err, w.wait())
	}
	root, err := b.root()
	if err != nil {
		return slot{}, 0, errors.Join(err, w.wait())
	}
	if err := w.flush(); err != nil {
		return slot{}, 0, err
	}
	return root, w.nextRun, nil
}

// installProgress is the progress record of an unfinished install: the
// next chunk to build, the run files written before it (when ingesting),
// and either the builder's state after the chunk before it or, once the
// runs are ingested, the rebuilt root record.
type installProgress struct {
	next     int
	runs     int
	ingested bool
	body     []byte
}

func (p installProgress) put(ctx context.Context, s *Store) error {
	rec := binary.AppendUvarint(nil, uint64(p.next))
	rec = binary.AppendUvarint(rec, uint64(p.runs))
	flag := byte(0)
	if p.ingested {
		flag = 1
	}
	rec = append(append(rec, flag), p.body...)
	if err := s.d.Put(ctx, snapProgressKey, rec); err != nil {
		return err
	}
	return s.d.Sync(ctx, snapProgressKey)
}

// progress reads the progress record of an unfinished install and readies
// the scratch directory (pl, if set) for it. Without a usable record (or
// with runs it names missing) the install starts over: its records are
// rewritten with the same bytes.
func (im *Importer) progress(ctx context.Context, s *Store, pl *ingestPlace) (installProgress, error) {
	p, err := im.readProgress(ctx, s)
	if err != nil {
		return installProgress{}, err
	}
	if pl == nil {
		if p.runs > 0 && !p.ingested {
			return installProgress{}, nil // runs only an ingesting install can use
		}
		return p, nil
	}
	keep := p.runs
	if p.ingested {
		keep = 0
	}
	ok, err := pl.prepare(keep)
	if err != nil || !ok {
		return installProgress{}, err // !ok: prepare deleted every run
	}
	return p, nil
}

// readProgress returns the progress record of s if it is well formed and
// fits the manifest, else the zero progress (start over).
func (im *Importer) readProgress(ctx context.Context, s *Store) (installProgress, error) {
	raw, err := s.d.Get(ctx, snapProgressKey)
	if errors.Is(err, ds.ErrNotFound) {
		return installProgress{}, nil
	}
	if err != nil {
		return installProgress{}, err
	}
	next, k1 := uvarint(raw)
	if k1 <= 0 {
		return installProgress{}, nil
	}
	runs, k2 := uvarint(raw[k1:])
	if k2 <= 0 || k1+k2 >= len(raw) || raw[k1+k2] > 1 || runs > SnapshotChunksMax {
		return installProgress{}, nil
	}
	p := installProgress{next: int(next), runs: int(runs), ingested: raw[k1+k2] == 1, body: raw[k1+k2+1:]}
	n := uint64(len(im.m.Chunks))
	switch {
	case next == 0 || next > n:
		return installProgress{}, nil
	case p.ingested:
		if sl, err := decodeRoot(p.body); err != nil || next != n || types.Root(sl.h) != im.m.Root {
			return installProgress{}, nil
		}
	default:
		if (&treeBuilder{}).restoreState(p.body) != nil {
			return installProgress{}, nil
		}
	}
	return p, nil
}

// chunkLeaves returns the hashed leaves of chunk i: from the staging area
// if it is staged or src is nil, otherwise (or if its staged record is
// damaged) read with src and verified.
func (im *Importer) chunkLeaves(ctx context.Context, i int, src chunkReader) ([]builtLeaf, error) {
	im.mu.Lock()
	staged := im.staged[i]
	im.mu.Unlock()
	if staged || src == nil {
		ls, err := im.prepare(ctx, i)
		if err == nil || src == nil || !errors.Is(err, ErrCorrupt) {
			return ls, err
		}
		// A damaged staged record was removed: read the chunk from src.
	}
	b, hashed, err := src(ctx, i)
	if err != nil {
		return nil, err // the source's failure, or its refusal of the chunk
	}
	c, ls, err := verifyChunk(im.m, b, hashed)
	if err != nil {
		return nil, err
	}
	if int(c.Index) != i {
		return nil, fmt.Errorf("%w: asked for chunk %d, read chunk %d", ErrChunkMalformed, i, c.Index)
	}
	return ls, nil
}

// prepare reads, decodes and hashes staged chunk i. A staged record that
// does not decode as chunk i (altered after staging) is deleted and the
// chunk counted missing, so that adding it again and installing again goes
// on; the error wraps ErrCorrupt and ErrSnapshotIncomplete. (A record
// altered into another chunk that decodes is caught by the root check.)
func (im *Importer) prepare(ctx context.Context, i int) ([]builtLeaf, error) {
	key := snapStageChunkKey(i)
	b, err := im.d.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: staged chunk %d: %w", ErrSnapshotIncomplete, i, err)
	}
	c, err := decodeChunk(b)
	if err == nil && int(c.Index) != i {
		err = fmt.Errorf("it holds chunk %d", c.Index)
	}
	if err != nil {
		return nil, im.unstage(ctx, i, fmt.Errorf("%w: staged chunk %d: %w", ErrCorrupt, i, err))
	}
	out := make([]builtLeaf, len(c.Leaves))
	for j, l := range c.Leaves {
		out[j] = hashLeaf(l)
	}
	return out, nil
}

// unstage deletes the damaged staged record of chunk i (err says what is
// wrong with it) and counts the chunk missing.
func (im *Importer) unstage(ctx context.Context, i int, err error) error {
	key := snapStageChunkKey(i)
	if derr := im.d.Delete(ctx, key); derr != nil {
		return errors.Join(err, derr)
	}
	if derr := im.d.Sync(ctx, key); derr != nil {
		return errors.Join(err, derr)
	}
	im.mu.Lock()
	if im.staged[i] {
		im.staged[i] = false
		im.left++
	}
	im.mu.Unlock()
	return fmt.Errorf("%w (removed, add the chunk again): %w", ErrSnapshotIncomplete, err)
}
