package state

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// An install on pebble writes its records as sstables that pebble ingests
// into its last level, instead of as batches that pebble logs, flushes and
// compacts (about 40% of an install's CPU; RATIONALE.md, "Why does an install
// ingest sstables?"). The records' keys are hashes (node records)
// and (module, key) pairs (flat index), in no relation to the key-path order
// the tree is built in, so every 32 MiB batch spans the whole key range and
// batches cannot be ingested one by one without overlapping each other.
// Each sorted batch is written as a run file in a scratch directory of the
// pebble directory instead; once the tree is built and its root checked, the
// runs are merged into sstables that overlap nothing, and one ingest adds
// them all.
//
// A run is cut into ingestSections files by key range (the flat index, and
// the node records in two halves by hash), and the merge runs on one
// goroutine per section: merged serially it was a fifth of a streamed
// install's CPU on one core after the tree was built, while the other core
// had nothing to do. The sections are disjoint key ranges, so their tables
// overlap nothing either.
//
// Crash safety: a run's files are synced, and their directory entries with
// them, before the progress record that counts the run; the runs a
// progress record counts are run-000000-* .. run-<n-1>-* (every section of
// each), and a run missing a section counts as missing. A resumed install
// deletes every other file of the scratch directory (runs written after the
// last progress record, merged tables not ingested yet) and goes on. After the ingest a
// progress record says so and holds the rebuilt root, the scratch directory
// is emptied, then the switch follows: a crash between the ingest and that
// record ingests the runs again (the same records, harmless), and a crash
// after it only switches.

// ingestDirName is the scratch directory inside the pebble directory.
// Pebble ignores names it does not know.
const ingestDirName = "kairos-install"

// ingestTableBytes bounds one ingested sstable: later compactions of the
// store rewrite the whole tables a commit's records overlap.
const ingestTableBytes = 64 << 20

// runReadBytes is the read buffer of one run during the merge.
const runReadBytes = 256 << 10

// runTrailer ends a run file: the record count (8 bytes, big-endian), the
// CRC-32C of the records (4 bytes) and runMagic.
const (
	runTrailerLen = 16
	runMagic      = "KRN1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ingestSections is how many files, by key range, a run is written as,
// each merged on its own goroutine: keys below nsNode (the flat index), and
// node records below and from the middle of the install's hash space.
const ingestSections = 3

// ingestPlace is where an install by ingestion writes its scratch files.
type ingestPlace struct {
	db  *pebble.DB
	fs  vfs.FS
	dir string // the scratch directory
	// splits are the first keys of sections 1.. (ingestSections-1 of
	// them, ascending).
	splits [ingestSections - 1][]byte
}

// ingestPlaceOf returns the scratch place of an install of version height
// into s, or nil when s is not a pebble database whose directory it knows
// (the install then writes batches): OpenPebble records it.
func ingestPlaceOf(s *Store, height uint64) *ingestPlace {
	if s.pdb == nil || s.pebbleFS == nil {
		return nil
	}
	return &ingestPlace{
		db: s.pdb, fs: s.pebbleFS, dir: s.pebbleFS.PathJoin(s.pebbleDir, ingestDirName),
		// Node records of the install are keyed by (height, hash), and
		// hashes are uniform: 0x80 halves them (it needs no escaping).
		splits: [ingestSections - 1][]byte{[]byte(nsNode), keyBytes(nodeKey(height, types.Hash{0x80}))},
	}
}

// runName names section sec of run i.
func runName(i, sec int) string { return fmt.Sprintf("run-%06d-%d", i, sec) }

// prepare creates the scratch directory and deletes every file in it but
// the first keep runs, which must all be there: it reports false (and
// deletes them too) if one is missing, and the install starts over.
func (pl *ingestPlace) prepare(keep int) (bool, error) {
	if err := pl.fs.MkdirAll(pl.dir, 0o755); err != nil {
		return false, err
	}
	// The directory's own entry, so that the runs in it survive a crash.
	if err := pl.syncDir(pl.fs.PathDir(pl.dir)); err != nil {
		return false, err
	}
	names, err := pl.fs.List(pl.dir)
	if err != nil {
		return false, err
	}
	want := make(map[string]bool, keep*ingestSections)
	for i := 0; i < keep; i++ {
		for sec := range ingestSections {
			want[runName(i, sec)] = true
		}
	}
	found := 0
	for _, n := range names {
		if want[n] {
			found++
		}
	}
	ok := found == len(want)
	for _, n := range names {
		if ok && want[n] {
			continue
		}
		if err := pl.fs.RemoveAll(pl.fs.PathJoin(pl.dir, n)); err != nil {
			return false, err
		}
	}
	return ok, pl.syncDir(pl.dir)
}

// clear deletes the scratch directory's files.
func (pl *ingestPlace) clear() error {
	_, err := pl.prepare(0)
	return err
}

// syncDir makes the entries of directory path durable.
func (pl *ingestPlace) syncDir(path string) error {
	d, err := pl.fs.OpenDir(path)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// writeRun writes the operations of ob, merged from its sorted parts, as
// run i, one file per section, and makes them durable. Runs hold puts only:
// an install deletes nothing.
func (pl *ingestPlace) writeRun(i int, ob *opBuffers, parts [][]recordOp) error {
	var files [ingestSections]*runWriter
	defer func() {
		for _, f := range files {
			if f != nil {
				f.f.Close()
			}
		}
	}()
	for sec := range files {
		f, err := pl.fs.Create(pl.fs.PathJoin(pl.dir, runName(i, sec)), vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		files[sec] = &runWriter{f: f, buf: make([]byte, 0, runWriteBytes)}
	}
	// Of several puts of one key (an install makes none) the last wins,
	// as in a batch.
	var prev *recordOp
	sec := 0
	add := func(op *recordOp) error {
		k := ob.key(op)
		// Keys come in order, so the section only moves forward, and the
		// keys of the last one are not compared at all.
		for sec < len(pl.splits) && bytes.Compare(k, pl.splits[sec]) >= 0 {
			sec++
		}
		return files[sec].add(k, ob.value(op))
	}
	err := ob.merge(parts, func(op *recordOp) error {
		if op.del {
			return errors.New("state: install run holds a delete")
		}
		if prev != nil && !ob.sameKey(prev, op) {
			if err := add(prev); err != nil {
				return err
			}
		}
		prev = op
		return nil
	})
	if err == nil && prev != nil {
		err = add(prev)
	}
	for sec, f := range files {
		if err == nil {
			err = f.finish()
		}
		if cerr := f.f.Close(); err == nil {
			err = cerr
		}
		files[sec] = nil
	}
	if err != nil {
		return err
	}
	return pl.syncDir(pl.dir)
}

// runWriteBytes is the write buffer of one run file.
const runWriteBytes = 1 << 20

// runWriter writes one run file: length-prefixed records, then the
// trailer.
type runWriter struct {
	f     vfs.File
	buf   []byte
	crc   uint32
	count uint64
}

func (w *runWriter) add(k, v []byte) error {
	w.buf = binary.AppendUvarint(w.buf, uint64(len(k)))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(v)))
	w.buf = append(append(w.buf, k...), v...)
	w.count++
	if len(w.buf) >= cap(w.buf)/2 {
		return w.put()
	}
	return nil
}

func (w *runWriter) put() error {
	w.crc = crc32.Update(w.crc, castagnoli, w.buf)
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// finish writes what is buffered and the trailer, and syncs the file.
func (w *runWriter) finish() error {
	if err := w.put(); err != nil {
		return err
	}
	var t [runTrailerLen]byte
	binary.BigEndian.PutUint64(t[:], w.count)
	binary.BigEndian.PutUint32(t[8:], w.crc)
	copy(t[12:], runMagic)
	if _, err := w.f.Write(t[:]); err != nil {
		return err
	}
	return w.f.Sync()
}

// runReader reads one run's records in order and checks its checksum and
// count at the end.
type runReader struct {
	f         vfs.File
	r         *bufio.Reader
	crc       *crcReader
	left      uint64 // records not read yet
	wantCRC   uint32
	key, val  []byte
	run       int    // the run's number, which orders equal keys
	name      string // its file, for errors
	exhausted bool
}

type crcReader struct {
	r   io.Reader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

func (pl *ingestPlace) openRun(i, sec int) (*runReader, error) {
	name := runName(i, sec)
	f, err := pl.fs.Open(pl.fs.PathJoin(pl.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		// A missing run is damage the install abandons; any other
		// failure (too many open files, say) is not, and a retry may pass.
		return nil, fmt.Errorf("%w: install %s: %w", ErrCorrupt, name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("state: open install %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var t [runTrailerLen]byte
	if st.Size() < runTrailerLen {
		f.Close()
		return nil, fmt.Errorf("%w: install %s is %d bytes", ErrCorrupt, name, st.Size())
	}
	if _, err := f.ReadAt(t[:], st.Size()-runTrailerLen); err != nil {
		f.Close()
		return nil, err
	}
	if string(t[12:]) != runMagic {
		f.Close()
		return nil, fmt.Errorf("%w: install %s has no trailer", ErrCorrupt, name)
	}
	c := &crcReader{r: io.NewSectionReader(f, 0, st.Size()-runTrailerLen)}
	return &runReader{
		f: f, r: bufio.NewReaderSize(c, runReadBytes), crc: c, run: i, name: name,
		left: binary.BigEndian.Uint64(t[:]), wantCRC: binary.BigEndian.Uint32(t[8:]),
	}, nil
}

// next reads the next record into rr.key and rr.val, or sets exhausted
// after checking that the run ended where its trailer says.
func (rr *runReader) next() error {
	bad := func(what string) error { return fmt.Errorf("%w: install %s: %s", ErrCorrupt, rr.name, what) }
	if rr.left == 0 {
		if _, err := rr.r.ReadByte(); err != io.EOF {
			return bad("records after its count")
		}
		if rr.crc.crc != rr.wantCRC {
			return bad("checksum mismatch")
		}
		rr.exhausted = true
		return nil
	}
	kl, err := binary.ReadUvarint(rr.r)
	if err != nil {
		return bad("truncated")
	}
	vl, err := binary.ReadUvarint(rr.r)
	if err != nil || kl > uint64(nodeKeyLen+kvKeyMax) || vl > recordValueMax {
		return bad("bad record length")
	}
	rr.key = grow(rr.key, int(kl))
	rr.val = grow(rr.val, int(vl))
	if _, err := io.ReadFull(rr.r, rr.key); err != nil {
		return bad("truncated")
	}
	if _, err := io.ReadFull(rr.r, rr.val); err != nil {
		return bad("truncated")
	}
	rr.left--
	return nil
}

// kvKeyMax and recordValueMax bound what a run record may claim, so a
// corrupt length cannot make the merge allocate without bound: the longest
// flat index key (an inline module, moduleInline and the address, and the
// key; escaping doubles a byte at most) and the largest record
// value (a flat index value, or a node record of 16 leaves with the longest
// keys, with room to spare).
const (
	kvKeyMax       = len(nsKV) + 1 + 2*(types.AddressLen+types.StateKeyMax) + 2
	recordValueMax = 2*types.StateValueMax + 2*types.StateKeyMax
)

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// runHeap orders the runs' heads by key, then by run: of equal keys the
// later run's record wins, as the later batch's did.
type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].key, h[j].key); c != 0 {
		return c < 0
	}
	return h[i].run > h[j].run
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// recordNS is the namespace of a record key: "/kairos/n/", "/kairos/kv/".
func recordNS(k []byte) []byte {
	if i := bytes.IndexByte(k[min(len(k), sortFrom):], '/'); i >= 0 {
		return k[:sortFrom+i+1]
	}
	return k
}

// ingestRuns merges runs 0..n-1 into sstables, the sections at once, and
// ingests them. A table holds the records of one namespace only, so its
// bounds cover no other record of the store (the latest pointer sorts
// between the flat index and the nodes, the install's own records after
// every namespace): pebble
// then places the tables in its last level, and they overlap neither each
// other nor anything else.
func (pl *ingestPlace) ingestRuns(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	var tables [ingestSections][]string
	var errs [ingestSections]error
	var wg sync.WaitGroup
	// The first section that fails stops the others at their next table
	// instead of letting them merge their whole range for nothing.
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for sec := range ingestSections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tables[sec], errs[sec] = pl.mergeSection(mctx, sec, n)
			if errs[sec] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && (ctx.Err() != nil || !errors.Is(err, context.Canceled)) {
			return err // a sibling's cancellation is not the cause
		}
	}
	if err := pl.syncDir(pl.dir); err != nil {
		return err
	}
	var all []string
	for _, t := range tables {
		all = append(all, t...)
	}
	if len(all) == 0 {
		return nil
	}
	return pl.db.Ingest(ctx, all)
}

// mergeSection merges section sec of runs 0..n-1 into sstables, each
// synced, and returns their paths in key order.
func (pl *ingestPlace) mergeSection(ctx context.Context, sec, n int) ([]string, error) {
	h := make(runHeap, 0, n)
	defer func() {
		for _, rr := range h {
			rr.f.Close()
		}
	}()
	for i := 0; i < n; i++ {
		rr, err := pl.openRun(i, sec)
		if err != nil {
			return nil, err
		}
		if err := rr.next(); err != nil {
			rr.f.Close()
			return nil, err
		}
		if rr.exhausted {
			rr.f.Close()
			continue
		}
		h = append(h, rr)
	}
	heap.Init(&h)
	o := pebbleOptions()
	o.EnsureDefaults()
	wo := o.MakeWriterOptions(len(o.Levels)-1, pl.db.TableFormat())
	var (
		tables []string
		tw     *sstable.Writer
		ns     []byte
		last   []byte
	)
	closeTable := func() error {
		if tw == nil {
			return nil
		}
		err := tw.Close()
		tw = nil
		return err
	}
	defer func() {
		if tw != nil {
			tw.Close()
		}
	}()
	for len(h) > 0 {
		rr := h[0]
		if last != nil && bytes.Equal(rr.key, last) {
			// An earlier run's record of a key a later run wrote: skipped.
		} else {
			if tw != nil && (!bytes.Equal(recordNS(rr.key), ns) || tw.Raw().EstimatedSize() >= ingestTableBytes) {
				if err := closeTable(); err != nil {
					return nil, err
				}
			}
			if tw == nil {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				name := pl.fs.PathJoin(pl.dir, fmt.Sprintf("table-%d-%06d.sst", sec, len(tables)))
				f, err := pl.fs.Create(name, vfs.WriteCategoryUnspecified)
				if err != nil {
					return nil, err
				}
				tw = sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)
				tables = append(tables, name)
				ns = append(ns[:0], recordNS(rr.key)...)
			}
			if err := tw.Set(rr.key, rr.val); err != nil {
				return nil, err
			}
			last = append(last[:0], rr.key...)
		}
		if err := rr.next(); err != nil {
			return nil, err
		}
		if rr.exhausted {
			rr.f.Close()
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return tables, closeTable()
}
