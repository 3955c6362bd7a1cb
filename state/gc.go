package state

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
)

// The young generation's collection on pebble. Node records are keyed by
// (born, id), born first. The pruner point-deletes a dead record only when
// its born is at most the GC watermark W (keyGCDone); a record born above W
// is left in place, and a GC step later removes the whole born range
// (W, H] at once: it walks tree(min) for the records of that range that are
// still live, writes them (same keys, same bytes) into an sstable and has
// pebble excise the range and ingest the table in one atomic step
// (DB.IngestAndExcise), then persists W = H. No tombstone is written for the
// range's dead records, so none meets their tables in L0 or L6.
//
// Why the walk finds every live record of the range: every retained version
// is >= min, and tree(v) holds only records born v or records of tree(v-1),
// so a record born b <= H < min that a retained version uses is in tree(min).
// A child's born is never above its parent's (decodeNode refuses it), so the
// walk does not descend into a child born <= W.
//
// A crash before W is persisted repeats the step: the range then holds the
// survivors already ingested (or the records as they were), and the walk of
// the (possibly newer) tree(min) copies whatever of them is still live.

// keyGCDone is the GC watermark W: node records born <= W that die are
// point-deleted by the pruner; those born above W wait for a GC step.
var keyGCDone = ds.NewKey("/kairos/gcdone")

// gcDirName is the scratch directory of GC steps inside the pebble
// directory.
const gcDirName = "kairos-gc"

// gcPolicy is the GC step's schedule (see youngGC): a step is considered
// every `every` versions of min; its range ends where a born's live
// records exceed liveFrac of the youngest borns' (so that at most about
// that fraction of the range is copied), but never more than maxLag borns
// below min (bounding the dead records that wait on disk).
type gcPolicy struct {
	every    uint64
	liveFrac float64
	maxLag   uint64
}

var gcSplitBorns bool

var gcDefault = gcPolicy{every: 8, liveFrac: 0.25, maxLag: 64}

func (p gcPolicy) withDefaults() gcPolicy {
	if p.every == 0 {
		p.every = gcDefault.every
	}
	if p.liveFrac == 0 {
		p.liveFrac = gcDefault.liveFrac
	}
	if p.maxLag == 0 {
		p.maxLag = gcDefault.maxLag
	}
	return p
}

func init() {
	// Prototype knobs for measurement; removed before merge.
	if v, err := strconv.ParseUint(os.Getenv("KAIROS_GC_EVERY"), 10, 64); err == nil {
		gcDefault.every = v
	}
	if v, err := strconv.ParseFloat(os.Getenv("KAIROS_GC_FRAC"), 64); err == nil {
		gcDefault.liveFrac = v
	}
	gcSplitBorns = os.Getenv("KAIROS_GC_SPLIT") != ""
	if v, err := strconv.ParseUint(os.Getenv("KAIROS_GC_MAXLAG"), 10, 64); err == nil {
		gcDefault.maxLag = v
	}
}

// usePebble records the pebble database under the store (OpenPebble and the
// tests' stores on a crashable FS) and loads the GC watermark. A store whose
// records were pruned without a watermark (none stored) gets W = the prune
// progress, persisted before any Prune could skip a record by it: every
// record that died up to then was point-deleted.
func (s *Store) usePebble(ctx context.Context, db *pebble.DB, fs vfs.FS, dir string) error {
	s.pdb, s.gcFS, s.gcDir = db, fs, fs.PathJoin(dir, gcDirName)
	w, ok, err := s.getUint(ctx, keyGCDone)
	if err != nil {
		return err
	}
	if !ok {
		w = s.pruneDone
		if err := s.d.Put(ctx, keyGCDone, binary.AppendUvarint(nil, w)); err != nil {
			return err
		}
		if err := s.d.Sync(ctx, keyGCDone); err != nil {
			return err
		}
	}
	s.gcDone.Store(w)
	return nil
}

// youngGen reports whether the pruner leaves the dead record born born to a
// GC step instead of point-deleting it.
func (s *Store) youngGen(born uint64) bool {
	return s.pdb != nil && s.gcFS != nil && born > s.gcDone.Load()
}

// span returns the end H of the born range (W, H] the step collects,
// given live[i], the live records (in tree(min)) born W+1+i, for every born
// W+1..min: the longest prefix whose borns each keep at most liveFrac of
// the records of the youngest borns alive (the most of min-3..min: a
// born's records die as later blocks rewrite their paths, so older borns
// keep fewer), extended to min-1-maxLag. ok is false when the range is
// empty.
func (p gcPolicy) span(w, min uint64, live []int) (h uint64, ok bool) {
	ref := 0
	for i := max(0, len(live)-4); i < len(live); i++ {
		ref = max(ref, live[i])
	}
	h = w
	for i := 0; i < len(live)-1; i++ {
		if float64(live[i]) > p.liveFrac*float64(ref) {
			break
		}
		h = w + 1 + uint64(i)
	}
	if min > p.maxLag+1 {
		h = max(h, min-1-p.maxLag)
	}
	return h, h > w
}

// GCStats reports what one GC step did.
type GCStats struct {
	From, To uint64 // the born range (From, To] collected
	Visited  int    // nodes of tree(min) walked
	Kept     int    // live records of the range copied
	KeptB    int    // their bytes
}

// loadNodeUncached returns node r from the cache, or decoded from its
// record without adding it to the cache (the GC's walk: the nodes it
// finds only there are not the commit's working set).
func (s *Store) loadNodeUncached(ctx context.Context, r nodeRef) (*node, error) {
	if n := s.cache.peek(r); n != nil {
		return n, nil
	}
	v, closer, err := s.pdb.Get(keyBytes(nodeKey(r.born, r.id)))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: GC: missing node %s (born %d)", ErrCorrupt, r.id, r.born)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	n, err := decodeNode(v, r, s.modules)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", r.id, err)
	}
	return n, nil
}

// youngGC runs a GC step if one is due at min; the caller holds pruneMu and
// has pruned up to min.
func (s *Store) youngGC(ctx context.Context, min uint64) (GCStats, error) {
	if s.pdb == nil || s.gcFS == nil {
		return GCStats{}, nil
	}
	w := s.gcDone.Load()
	if min <= w+1 || min < s.gcChecked+s.opts.gc.every {
		return GCStats{}, nil
	}
	s.gcChecked = min
	st := GCStats{From: w}
	// The records tree(min) holds are those of tree(latest) and those
	// that died at a version above min, which its stale list names (a
	// record is used by one unbroken range of versions). Walking
	// tree(latest) finds its nodes in the node cache, where a commit's
	// replaced nodes no longer are: a walk of tree(min) read them from
	// pebble.
	s.mu.Lock()
	latest, root := s.latest, s.root
	s.mu.Unlock()
	live := make([]int, min-w) // by born W+1..min
	var cands []nodeRef        // born W+1..min-1
	// The walk reads a node's entries directly, not as slots, and never
	// descends into a child born at or below W (nor loads one): a
	// child's born is never above its parent's.
	var walk func(r nodeRef) error
	walk = func(r nodeRef) error {
		st.Visited++
		if r.born <= min {
			live[r.born-w-1]++
			if r.born < min {
				cands = append(cands, r)
			}
		}
		n, err := s.loadNodeUncached(ctx, r)
		if err != nil {
			return err
		}
		es := n.entries()
		for j := range es {
			if e := &es[j]; e.kind == slotChild && e.born > w {
				if err := walk(nodeRef{born: e.born, id: e.h}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if root.kind == slotChild && root.born > w {
		if err := walk(root.ref()); err != nil {
			return st, err
		}
	}
	for v := min + 1; v <= latest; v++ {
		raw, err := s.d.Get(ctx, staleKey(v))
		if err != nil && !errors.Is(err, ds.ErrNotFound) {
			return st, err
		}
		l, err := decodeStale(raw)
		if err != nil {
			return st, err
		}
		for _, r := range l.refs {
			if r.born > w && r.born <= min {
				live[r.born-w-1]++
				if r.born < min {
					cands = append(cands, r)
				}
			}
		}
	}
	h, ok := s.opts.gc.span(w, min, live)
	if !ok {
		return st, nil
	}
	st.To = h
	// The range's survivors in key order ((born, id): the escaping keeps
	// the id's byte order), each written as read: a first step over a
	// long range (a store pruned before it had a watermark) may copy most
	// of the tree, which must not sit in memory.
	kept := cands[:0]
	for _, r := range cands {
		if r.born <= h {
			kept = append(kept, r)
		}
	}
	slices.SortFunc(kept, func(a, b nodeRef) int {
		if a.born != b.born {
			return cmp.Compare(a.born, b.born)
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	fs, dir := s.gcFS, s.gcDir
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	// A table left by a step that crashed before its ingest.
	left, err := fs.List(dir)
	if err != nil {
		return st, err
	}
	for _, n := range left {
		if err := fs.Remove(fs.PathJoin(dir, n)); err != nil {
			return st, err
		}
	}
	var paths []string
	if len(kept) > 0 {
		name := fs.PathJoin(dir, fmt.Sprintf("gc-%d.sst", h))
		if err := s.writeSurvivors(name, kept, &st); err != nil {
			return st, err
		}
		paths = append(paths, name)
	}
	span := pebble.KeyRange{
		Start: appendBorn([]byte(nsNode), w+1),
		End:   appendBorn([]byte(nsNode), h+1),
	}
	// Pebble installs the new version (the range excised, the table
	// added) before it publishes the table's sequence number: a read
	// that takes the version in between and the sequence number before
	// sees neither the old records nor the new ones. loadNode reads a
	// record it did not find again under exciseMu, after the publish.
	s.exciseMu.Lock()
	_, err = s.pdb.IngestAndExcise(ctx, paths, nil, nil, span)
	s.exciseMu.Unlock()
	if err != nil {
		return st, err
	}
	// Pebble links an ingested table into its directory and removes the
	// path given; a copy left behind goes with the next step.
	if err := s.d.Put(ctx, keyGCDone, binary.AppendUvarint(nil, h)); err != nil {
		return st, err
	}
	if err := s.d.Sync(ctx, keyGCDone); err != nil {
		return st, err
	}
	s.gcDone.Store(h)
	return st, nil
}

// writeSurvivors writes the records refs name (sorted, distinct) into a
// new synced sstable at name: from the node cache, re-encoded as the
// commit wrote them, or read from pebble.
func (s *Store) writeSurvivors(name string, refs []nodeRef, st *GCStats) error {
	f, err := s.gcFS.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	o := pebbleOptions()
	o.EnsureDefaults()
	tw := sstable.NewWriter(objstorageprovider.NewFileWritable(f), o.MakeWriterOptions(len(o.Levels)-1, s.pdb.TableFormat()))
	var kb [nodeKeyLen]byte
	var buf []byte
	for i, r := range refs {
		if i > 0 && r == refs[i-1] {
			continue
		}
		k := appendNodeKey(kb[:0], r.born, r.id)
		if n := s.cache.peek(r); n != nil {
			buf = appendNode(buf[:0], n, s.modules)
			err = tw.Set(k, buf)
		} else {
			v, closer, gerr := s.pdb.Get(k)
			if errors.Is(gerr, pebble.ErrNotFound) {
				gerr = fmt.Errorf("%w: GC: missing node %s (born %d)", ErrCorrupt, r.id, r.born)
			}
			if gerr != nil {
				tw.Close()
				return gerr
			}
			buf = append(buf[:0], v...)
			closer.Close()
			err = tw.Set(k, buf)
		}
		if err != nil {
			tw.Close()
			return err
		}
		st.Kept++
		st.KeptB += len(buf)
	}
	return tw.Close()
}

// GCLag returns how many borns below the minimum still hold dead node
// records that await a GC step (min-1-W), a gauge for metrics beside
// PrunerLag; 0 on a store that is not on pebble, whose pruner deletes
// every dead record itself.
func (s *Store) GCLag() uint64 {
	if s.pdb == nil || s.gcFS == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.gcDone.Load()
	if s.min <= w+1 {
		return 0
	}
	return s.min - 1 - w
}
