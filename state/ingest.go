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

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// An install on pebble writes its records as sstables that pebble ingests
// into its last level, instead of as batches that pebble logs, flushes and
// compacts (about 40% of an install's CPU; RATIONALE.md, "Why does an install
// ingest sstables?"). The records' keys are hashes (node and value records)
// and (module, key) pairs (flat index), in no relation to the key-path order
// the tree is built in, so every 32 MiB batch spans the whole key range and
// batches cannot be ingested one by one without overlapping each other.
// Each sorted batch is written as a run file in a scratch directory of the
// pebble directory instead; once the tree is built and its root checked, the
// runs are merged into sstables that overlap nothing, and one ingest adds
// them all.
//
// Crash safety: a run file is synced, and its directory entry with it,
// before the progress record that counts it; the runs a progress record
// counts are run-000000 .. run-<n-1>. A resumed install deletes every other
// file of the scratch directory (runs written after the last progress
// record, merged tables not ingested yet) and goes on. After the ingest a
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

// ingestPlace is where an install by ingestion writes its scratch files.
type ingestPlace struct {
	db  *pebble.DB
	fs  vfs.FS
	dir string // the scratch directory
}

// ingestPlaceOf returns the scratch place of s, or nil when s is not a
// pebble database whose directory it knows (the install then writes
// batches): OpenPebble records it.
func ingestPlaceOf(s *Store) *ingestPlace {
	if s.pdb == nil || s.pebbleFS == nil {
		return nil
	}
	return &ingestPlace{db: s.pdb, fs: s.pebbleFS, dir: s.pebbleFS.PathJoin(s.pebbleDir, ingestDirName)}
}

func runName(i int) string { return fmt.Sprintf("run-%06d", i) }

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
	want := make(map[string]bool, keep)
	for i := 0; i < keep; i++ {
		want[runName(i)] = true
	}
	found := 0
	for _, n := range names {
		if want[n] {
			found++
		}
	}
	ok := found == keep
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
// run i and makes it durable. Runs hold puts only: an install deletes
// nothing.
func (pl *ingestPlace) writeRun(i int, ob *opBuffers, parts [][]recordOp) error {
	f, err := pl.fs.Create(pl.fs.PathJoin(pl.dir, runName(i)), vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	crc := uint32(0)
	buf := make([]byte, 0, 1<<20)
	put := func() error {
		crc = crc32.Update(crc, castagnoli, buf)
		_, err := f.Write(buf)
		buf = buf[:0]
		return err
	}
	// Of several puts of one key (an install makes none) the last wins,
	// as in a batch.
	var prev *recordOp
	count := uint64(0)
	add := func(op *recordOp) error {
		k, v := ob.key(op), ob.value(op)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(append(buf, k...), v...)
		count++
		if len(buf) >= cap(buf)/2 {
			return put()
		}
		return nil
	}
	err = ob.merge(parts, func(op *recordOp) error {
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
	if err == nil {
		err = put()
	}
	if err == nil {
		var t [runTrailerLen]byte
		binary.BigEndian.PutUint64(t[:], count)
		binary.BigEndian.PutUint32(t[8:], crc)
		copy(t[12:], runMagic)
		_, err = f.Write(t[:])
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return pl.syncDir(pl.dir)
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
	run       int
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

func (pl *ingestPlace) openRun(i int) (*runReader, error) {
	f, err := pl.fs.Open(pl.fs.PathJoin(pl.dir, runName(i)))
	if err != nil {
		return nil, fmt.Errorf("%w: install run %d: %w", ErrCorrupt, i, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var t [runTrailerLen]byte
	if st.Size() < runTrailerLen {
		f.Close()
		return nil, fmt.Errorf("%w: install run %d is %d bytes", ErrCorrupt, i, st.Size())
	}
	if _, err := f.ReadAt(t[:], st.Size()-runTrailerLen); err != nil {
		f.Close()
		return nil, err
	}
	if string(t[12:]) != runMagic {
		f.Close()
		return nil, fmt.Errorf("%w: install run %d has no trailer", ErrCorrupt, i)
	}
	c := &crcReader{r: io.NewSectionReader(f, 0, st.Size()-runTrailerLen)}
	return &runReader{
		f: f, r: bufio.NewReaderSize(c, runReadBytes), crc: c, run: i,
		left: binary.BigEndian.Uint64(t[:]), wantCRC: binary.BigEndian.Uint32(t[8:]),
	}, nil
}

// next reads the next record into rr.key and rr.val, or sets exhausted
// after checking that the run ended where its trailer says.
func (rr *runReader) next() error {
	bad := func(what string) error { return fmt.Errorf("%w: install run %d: %s", ErrCorrupt, rr.run, what) }
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
// flat index key (escaping doubles a byte at most) and the largest record
// value (a value record: tag, module, key and value, with room to spare).
const (
	kvKeyMax       = len(nsKV) + 2*(types.AddressLen+types.StateKeyMax) + 2
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

// ingestRuns merges runs 0..n-1 into sstables and ingests them. A table
// holds the records of one namespace only, so its bounds cover no other
// record of the store (the latest pointer and the install's own records
// sort between the flat index and the nodes): pebble then places the tables
// in its last level, and they overlap neither each other nor anything else.
func (pl *ingestPlace) ingestRuns(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	h := make(runHeap, 0, n)
	defer func() {
		for _, rr := range h {
			rr.f.Close()
		}
	}()
	for i := 0; i < n; i++ {
		rr, err := pl.openRun(i)
		if err != nil {
			return err
		}
		if err := rr.next(); err != nil {
			rr.f.Close()
			return err
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
					return err
				}
			}
			if tw == nil {
				if err := ctx.Err(); err != nil {
					return err
				}
				name := pl.fs.PathJoin(pl.dir, fmt.Sprintf("table-%06d.sst", len(tables)))
				f, err := pl.fs.Create(name, vfs.WriteCategoryUnspecified)
				if err != nil {
					return err
				}
				tw = sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)
				tables = append(tables, name)
				ns = append(ns[:0], recordNS(rr.key)...)
			}
			if err := tw.Set(rr.key, rr.val); err != nil {
				return err
			}
			last = append(last[:0], rr.key...)
		}
		if err := rr.next(); err != nil {
			return err
		}
		if rr.exhausted {
			rr.f.Close()
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	if err := closeTable(); err != nil {
		return err
	}
	if err := pl.syncDir(pl.dir); err != nil {
		return err
	}
	return pl.db.Ingest(ctx, tables)
}
