package state

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// SnapshotInstallBatchBytes bounds the records an install (or Seed) buffers
// before it writes them as one batch. With it the memory of an install is a
// batch plus the builder's right spine, whatever the size of the snapshot.
// An install cuts its batches at chunk boundaries, where it can record its
// progress, so one of its batches can exceed the bound by a chunk's records.
const SnapshotInstallBatchBytes = 32 << 20

// installBatchBytes is the limit in force; tests lower it so that a small
// install spans many batches and crash points fall between them.
var installBatchBytes = SnapshotInstallBatchBytes

// builtLeaf is a snapshot leaf with the hashes the tree needs: key path,
// value hash and leaf hash, computed where the leaves are decoded (on every
// core) rather than in the builder, which runs on one.
type builtLeaf struct {
	key        types.StateKey
	value      []byte
	kp, vh, lh types.Hash
	// leaf is the leaf's slot data (leafData), and kvTail what follows
	// the module in its flat index key ("/k" and the escaped key), made
	// by makeBytes in one allocation where the leaves are hashed: made by
	// the builder, they and the module lookups of every leaf were about
	// a sixth of its goroutine's time, which bounds an install
	// (RATIONALE.md, "Why does an install make its leaves' bytes where it
	// hashes them").
	leaf   string
	kvTail []byte
}

func hashLeaf(l SnapshotLeaf) builtLeaf {
	kp, vh := types.KeyPath(l.Key), types.ValueHash(l.Value)
	return builtLeaf{key: l.Key, value: l.Value, kp: kp, vh: vh, lh: types.LeafHash(kp, vh)}
}

// makeBytes sets l.leaf and l.kvTail, which the builder takes: the
// install's producers call it (not hashLeaf, which staging's verification
// calls too).
func (l *builtLeaf) makeBytes() {
	n := leafFixed + len(l.key.Key)
	b := make([]byte, 0, n+2+2*len(l.key.Key)) // escaping doubles a byte at most
	b = append(append(append(b, l.vh[:]...), l.key.Module[:]...), l.key.Key...)
	b = appendEscapedWords(append(b, "/k"...), l.key.Key)
	l.leaf, l.kvTail = unsafe.String(unsafe.SliceData(b), n), b[n:]
}

// builtChunk is the hashed leaves of one chunk and their modules, each
// once (distinctModules), which assignModules checks instead of every
// leaf's.
type builtChunk struct {
	leaves []builtLeaf
	mods   []types.Address
}

// buildChunk makes the bytes of the leaves ls (makeBytes) and returns them
// with their modules.
func buildChunk(ls []builtLeaf) builtChunk {
	for i := range ls {
		ls[i].makeBytes()
	}
	return builtChunk{leaves: ls, mods: distinctModules(ls)}
}

// distinctModules returns the modules of ls, each once, in the order they
// first come.
func distinctModules(ls []builtLeaf) []types.Address {
	var out []types.Address
	var seen map[types.Address]struct{}
	for i := range ls {
		m := &ls[i].key.Module
		if i > 0 && *m == ls[i-1].key.Module {
			continue
		}
		if seen == nil {
			seen = map[types.Address]struct{}{}
		}
		if _, ok := seen[*m]; !ok {
			seen[*m] = struct{}{}
			out = append(out, *m)
		}
	}
	return out
}

// treeBuilder builds a tree bottom-up from leaves that arrive in strictly
// increasing key-path order. Where a leaf goes depends on the leaves on both
// sides of it: it sits in the node at the depth of the longer common nibble
// prefix it shares with either neighbour. So the builder holds the last leaf
// back until the next one arrives, and keeps open only the nodes on that
// leaf's path (the right spine). A node closes when a leaf arrives that does
// not share its prefix: nothing can be added to it any more, so it is hashed,
// handed to the writer and dropped. Memory is at most 64 node arrays.
//
// The nodes it writes are exactly those Commit would write for the same
// leaves into an empty tree (TestTreeBuilderMatchesCommit): a chain of
// one-child nodes above the first split, one-leaf subtrees moved up into
// their parent's slot.
type treeBuilder struct {
	height uint64
	w      *recordWriter
	spine  [][fanout]slot // open nodes at nibble depths 0..len-1 on last's path
	last   slot           // the held-back leaf
	lastKP types.Hash     // its key path
	mem    []byte         // finish's buffer for a node's mem
	depth  int            // nibbles last shares with the leaf before it
	leaves uint64
}

func newTreeBuilder(height uint64, w *recordWriter) *treeBuilder {
	return &treeBuilder{height: height, w: w, spine: make([][fanout]slot, 1, nibbleDepth)}
}

// add writes the leaf's flat index entry (its only record: the leaf's key
// and value hash are in its parent's node) and places the leaf before it.
// Leaves must come in strictly increasing key-path order.
func (b *treeBuilder) add(l *builtLeaf) error {
	if b.leaves > 0 && bytes.Compare(b.lastKP[:], l.kp[:]) >= 0 {
		return fmt.Errorf("%w: leaf %d (%s) does not follow the one before it", ErrChunkUnsorted, b.leaves, l.key)
	}
	if l.kvTail == nil {
		l.makeBytes() // a leaf the caller did not make them for
	}
	s := slot{kind: slotLeaf, h: l.lh, leaf: l.leaf}
	if err := b.w.putKV(l.key, l.value, l.kvTail[len("/k"):]); err != nil {
		return err
	}
	if b.leaves == 0 {
		b.last, b.lastKP, b.leaves = s, l.kp, 1
		return nil
	}
	c := 0
	for nibble(b.lastKP, c) == nibble(l.kp, c) {
		c++ // stops before 64: the key paths differ
	}
	if err := b.settle(c); err != nil {
		return err
	}
	b.last, b.lastKP, b.depth = s, l.kp, c
	b.leaves++
	return nil
}

// settle places the held-back leaf and closes the open nodes below depth c,
// the depth the next leaf shares with it (or 0 at the end).
func (b *treeBuilder) settle(c int) error {
	at := max(b.depth, c)
	for len(b.spine) <= at {
		b.spine = append(b.spine, [fanout]slot{})
	}
	b.spine[at][nibble(b.lastKP, at)] = b.last
	for d := len(b.spine) - 1; d > c; d-- {
		sl, err := b.finish(&b.spine[d])
		if err != nil {
			return err
		}
		b.spine[d] = [fanout]slot{}
		b.spine = b.spine[:d]
		b.spine[d-1][nibble(b.lastKP, d-1)] = sl
	}
	return nil
}

// finish is committer.finish for a node that is complete: its record goes
// to the writer.
func (b *treeBuilder) finish(a *[fanout]slot) (slot, error) {
	count, last := occupied(a)
	if count == 0 {
		return slot{}, nil
	}
	if count == 1 && a[last].kind == slotLeaf {
		return a[last], nil
	}
	// The node lives on the stack only to be encoded into the batch's
	// buffers (makeNode's heap node, then a record and a key string per
	// node, copied into the batch: the builder took 0.77 CPU-s per 1M-key
	// install with them, 0.55 without).
	n := node{born: b.height, mods: b.w.mods}
	n.occ, n.mem = packSlots(b.mem, a, b.w.mods)
	b.mem = n.mem // reused: the node is encoded below and dropped
	var in innerHashes
	n.id = n.computeInner(&in)
	return slot{kind: slotChild, h: n.id, born: b.height}, b.w.putNode(&n)
}

// root closes every open node and returns the root slot.
func (b *treeBuilder) root() (slot, error) {
	if b.leaves == 0 {
		return slot{}, nil
	}
	if err := b.settle(0); err != nil {
		return slot{}, err
	}
	return b.finish(&b.spine[0])
}

// encodeState returns what the builder holds in memory: the held-back leaf,
// its depth, the leaf count and the open nodes. With it an install resumes
// where its last durable batch ended instead of starting over.
func (b *treeBuilder) encodeState() []byte {
	buf := binary.AppendUvarint(nil, b.leaves)
	buf = binary.AppendUvarint(buf, uint64(b.depth))
	buf = appendSlot(buf, b.last)
	buf = binary.AppendUvarint(buf, uint64(len(b.spine)))
	for i := range b.spine {
		for _, sl := range b.spine[i] {
			buf = appendSlot(buf, sl)
		}
	}
	return buf
}

// restoreState is the inverse of encodeState. Any inconsistency is an
// error; the caller then builds from the start.
func (b *treeBuilder) restoreState(buf []byte) error {
	bad := fmt.Errorf("%w: bad install progress record", ErrCorrupt)
	next := func() (uint64, bool) {
		v, n := uvarint(buf)
		if n <= 0 {
			return 0, false
		}
		buf = buf[n:]
		return v, true
	}
	leaves, ok1 := next()
	depth, ok2 := next()
	if !ok1 || !ok2 || leaves == 0 || depth >= nibbleDepth {
		return bad
	}
	last, err := readSlot(&buf)
	if err != nil || last.kind != slotLeaf {
		return bad
	}
	levels, ok := next()
	if !ok || levels != depth+1 {
		return bad
	}
	spine := make([][fanout]slot, levels, nibbleDepth)
	for i := range spine {
		for j := range spine[i] {
			if spine[i][j], err = readSlot(&buf); err != nil {
				return bad
			}
		}
	}
	if len(buf) != 0 {
		return bad
	}
	b.leaves, b.depth, b.last, b.lastKP, b.spine = leaves, int(depth), last, last.keyPath(), spine
	return nil
}

// appendSlot writes a slot as a root record after its uvarint length (a
// leaf's record holds its key).
func appendSlot(buf []byte, sl slot) []byte {
	r := encodeRoot(sl)
	return append(binary.AppendUvarint(buf, uint64(len(r))), r...)
}

func readSlot(buf *[]byte) (slot, error) {
	b := *buf
	l, n := uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return slot{}, ErrCorrupt
	}
	sl, err := decodeRoot(b[n : n+int(l)])
	*buf = b[n+int(l):]
	return sl, err
}

// recordWriter writes records in batches of about
// SnapshotInstallBatchBytes. Until the version's root record and latest
// pointer are written, what it wrote is unreachable: content-addressed
// records no root names and flat index entries of an uncommitted version.
//
// It holds a batch's operations and hands them to the datastore sorted by
// key. Records named by hash come in random key order, and a batch this
// large becomes a pebble flushable batch, which pebble sorts through its
// batch encoding: about a fifth of an install's CPU. Sorting the operations
// here is cheaper (8 key bytes compare as one number), pebble's sort then
// finds its input in order, and its flush reads the batch front to back.
// The price is that the batch's keys and values are held until the flush.
//
// They are held in two byte buffers, keys and values, and the operations
// only index them: a batch is a few hundred thousand records, and held as
// strings and slices every one of them was an object the collector marked
// again on every cycle while the batch filled (the collector's share of an
// install halved). A full batch is sorted and written on a goroutine of its
// own while the caller fills the next one; up to snapWriteDepth batches are
// in flight, each sorted as soon as it is handed over and written once the
// one before it is (see flushThen); flush waits for all of them.
type recordWriter struct {
	ctx context.Context
	d   ds.Batching
	// pdb, when set, is the pebble database under d: batches go to it
	// directly and unsynced. Every caller ends with a synced write (the
	// install's progress record or switch, Seed's switch), and pebble has
	// one log, so that write makes the batches before it durable.
	pdb *pebble.DB
	b   opBuffers
	max int
	// inflight holds the batches handed over and not waited for, oldest
	// first: at most snapWriteDepth.
	inflight []*batchWrite
	// spare holds the buffers of batches written, reused for the next.
	spare []opBuffers
	// manual leaves flushing to the caller (full, flushThen, flush), which
	// cuts batches where it can record its progress.
	manual bool
	// ingest, when set, receives each batch as a run file (the next is
	// run nextRun) instead of pebble: see ingest.go.
	ingest  *ingestPlace
	nextRun int
	// mods is the store's module table that putNode encodes leaves with
	// (nil: every module inline, for writers outside a store).
	mods *moduleTable
}

// snapWriteDepth is how many full batches the record writer lets wait to
// be written while the caller fills the next. With one, the builder
// stopped at every batch until the one before it was sorted, written and
// its progress record synced (the sync of a 32 MiB log write is disk time,
// not CPU); with two, the next batch is sorted and the builder goes on
// during that wait (with the sort in parts: ~7% more MB/s near idle, no
// measurable difference at load 4 and above; RATIONALE.md).
// Each batch in flight holds its buffers: about SnapshotInstallBatchBytes
// more memory per step of depth.
const snapWriteDepth = 2

// batchWrite is one batch handed to a write goroutine: done is closed when
// it is written (or failed, err), after which buf may be reused.
type batchWrite struct {
	done chan struct{}
	err  error
	buf  opBuffers
	run  int // the run file it goes to, when ingesting
}

// opBuffers is one batch: its operations and the bytes they index.
type opBuffers struct {
	ops          []recordOp
	keys, values []byte
	// mods are the flat index segments (appendKVModule) of the modules of
	// the batch's flat index entries (putKV), in the order they came;
	// modID finds them. other says the batch holds a key outside the node
	// records, which putKV entries must not meet.
	mods  []string
	modID map[types.Address]uint32
	other bool
	// ranked says rankGroups has replaced the provisional groups.
	ranked bool
}

// reset empties b for the next batch, keeping its memory.
func (b *opBuffers) reset() {
	b.ops, b.keys, b.values, b.mods, b.other, b.ranked = b.ops[:0], b.keys[:0], b.values[:0], b.mods[:0], false, false
	clear(b.modID)
}

// presize gives b room for a batch like the one before it, plus an
// eighth. Grown by append from empty, each of the first batches' buffers
// was copied over and over (large slices grow by a quarter at a time, so
// about four times their final size: ~0.2 of 3.5 CPU-s of a 1M-key
// install went to those copies); only the first batch still grows.
func (b *opBuffers) presize(like *opBuffers) {
	b.ops = make([]recordOp, 0, len(like.ops)+len(like.ops)/8)
	b.keys = make([]byte, 0, len(like.keys)+len(like.keys)/8)
	b.values = make([]byte, 0, len(like.values)+len(like.values)/8)
}

// recordOp is a put, or a delete when del is set, of the key at
// keys[koff:koff+klen] with the value at values[voff:voff+vlen]; seq is its
// place in the batch, which orders operations on one key. No pointers: the
// collector does not scan a batch's operations.
type recordOp struct {
	// pre holds the 16 key bytes after "/kairos/" as two big-endian
	// words, zero-padded. Node keys of one install share their namespace
	// and born ("n/", 8 born bytes, "/"), so the first word ties and the
	// second, which ends in 5 bytes of the hash, decides the comparison
	// without comparing the keys' bytes. A flat index entry's pre holds
	// the 16 bytes after its module instead, and its group the module's
	// rank in the batch (see putKV): the keys of one module share their
	// first 45 bytes or more, which pre would not see.
	pre                    [2]uint64
	group                  uint32
	koff, klen, voff, vlen uint32
	seq                    uint32
	del                    bool
}

// sortFrom is where the keys that recordWriter sorts start to differ: every
// one begins with "/kairos/".
const sortFrom = len("/kairos/")

func (b *opBuffers) key(op *recordOp) []byte { return b.keys[op.koff : op.koff+op.klen] }

func (b *opBuffers) value(op *recordOp) []byte { return b.values[op.voff : op.voff+op.vlen] }

// bytes is the size of the batch's keys and values.
func (b *opBuffers) bytes() int { return len(b.keys) + len(b.values) }

// compare orders the batch's operations by key bytes, then by seq.
func (b *opBuffers) compare(x, y recordOp) int {
	if c := cmp.Compare(x.group, y.group); c != 0 {
		return c
	}
	if c := cmp.Compare(x.pre[0], y.pre[0]); c != 0 {
		return c
	}
	if c := cmp.Compare(x.pre[1], y.pre[1]); c != 0 {
		return c
	}
	if c := bytes.Compare(b.keys[x.koff:x.koff+x.klen], b.keys[y.koff:y.koff+y.klen]); c != 0 {
		return c
	}
	return cmp.Compare(x.seq, y.seq)
}

func newRecordWriter(ctx context.Context, d ds.Batching) *recordWriter {
	return &recordWriter{ctx: ctx, d: d, max: installBatchBytes}
}

// newStoreRecordWriter is a record writer into s: straight to pebble when
// s is on pebble.
func newStoreRecordWriter(ctx context.Context, s *Store) *recordWriter {
	w := newRecordWriter(ctx, s.d)
	w.pdb = s.pdb
	w.mods = s.modules
	return w
}

// assignModules gives ids to the modules of ms that have none (sorted, as
// a commit does) and persists them at once, in one synced batch of their
// own: the records that name them may reach the datastore as ingested
// tables, outside pebble's log, and a resumed install must find every id
// its earlier records name. The store's writer lock is held. A leaf whose
// module has no id is written with the address inline, so a writer that
// skips this loses bytes, not correctness.
func (w *recordWriter) assignModules(ms []types.Address) error {
	if w.mods == nil {
		return nil
	}
	var fresh []types.Address
	for _, m := range ms {
		if _, ok := w.mods.id(string(m[:])); !ok {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) > 0 {
		w.mods.assign(fresh)
	}
	// Ids assigned earlier and not yet stored (a failed batch's, handed
	// back by untake, or a failed Replace's) may be what this chunk's
	// records name: they go out before the records, whether or not this
	// chunk brought new modules.
	recs := w.mods.take()
	if len(recs) == 0 {
		return nil
	}
	err := func() error {
		b, err := w.d.Batch(w.ctx)
		if err != nil {
			return err
		}
		if err := putModules(recs, func(k ds.Key, v []byte) error { return b.Put(w.ctx, k, v) }); err != nil {
			return err
		}
		if err := b.Commit(w.ctx); err != nil {
			return err
		}
		return w.d.Sync(w.ctx, ds.NewKey(nsModule))
	}()
	if err != nil {
		w.mods.untake(recs) // not known to be stored
	}
	return err
}

func (w *recordWriter) put(k ds.Key, v []byte) error {
	return w.add(k.String(), v, false)
}

func (w *recordWriter) delete(k ds.Key) error {
	return w.add(k.String(), nil, true)
}

// putNode puts n's record, (born, id) → the bytes of appendNode(nil, n,
// w.mods),
// built in the batch's buffers: as a key string and a record of their own
// they were two objects per node to allocate and then copy into the
// buffers.
func (w *recordWriter) putNode(n *node) error {
	w.align()
	koff := len(w.b.keys)
	w.b.keys = appendNodeKey(w.b.keys, n.born, n.id)
	voff := len(w.b.values)
	w.b.values = appendNode(w.b.values, n, w.mods)
	return w.pushOp(koff, sortFrom, 0, voff, false)
}

// errRecordMix reports a batch that would hold flat index entries from
// putKV beside keys other than node records, which they are not ordered
// against.
var errRecordMix = errors.New("state: flat index entries batched with other keys than node records")

func (w *recordWriter) add(key string, val []byte, del bool) error {
	if !strings.HasPrefix(key, nsNode) {
		if len(w.b.mods) > 0 {
			return fmt.Errorf("%w: %q", errRecordMix, key)
		}
		w.b.other = true
	}
	w.align()
	koff := len(w.b.keys)
	w.b.keys = append(w.b.keys, key...)
	return w.push(koff, sortFrom, 0, val, del)
}

// putKV puts the flat index entry of k. Its operation is ordered by the
// module's rank among the batch's modules (group, set by sortParts), then
// by the 16 key bytes after the module (pre): the whole-key comparison of
// keys that share a module and 16 more bytes was most of the sort's time.
// Flat index keys sort before node records, which put files after all
// modules; a batch must hold no other keys. esc is k's key escaped
// (appendEscaped) when the caller made it already (builtLeaf.kvTail), nil
// otherwise.
func (w *recordWriter) putKV(k types.StateKey, val, esc []byte) error {
	if w.b.other {
		return fmt.Errorf("%w: %s", errRecordMix, k)
	}
	w.align()
	koff := len(w.b.keys)
	// The bytes of kvKey(k) (appendKVKey), with the offset of the key. A
	// module met before in the batch is found by its rank alone.
	id, ok := w.b.modID[k.Module]
	if ok {
		w.b.keys = append(append(w.b.keys, nsKV...), w.b.mods[id]...)
	} else {
		keys, ok := w.mods.appendKVModule(w.b.keys, k.Module)
		if !ok {
			// assignModules gave every module of the version an id.
			return fmt.Errorf("%w: flat index entry of %s, whose module has no id", ErrCorrupt, k)
		}
		if w.b.modID == nil {
			w.b.modID = map[types.Address]uint32{}
		}
		id = uint32(len(w.b.mods))
		w.b.modID[k.Module] = id
		w.b.mods = append(w.b.mods, string(keys[koff+len(nsKV):]))
		w.b.keys = keys
	}
	w.b.keys = append(w.b.keys, "/k"...)
	from := len(w.b.keys) - koff
	if esc != nil {
		w.b.keys = append(w.b.keys, esc...)
	} else {
		w.b.keys = appendEscaped(w.b.keys, k.Key)
	}
	return w.push(koff, from, id+1, val, false)
}

// align starts the next key 16-byte aligned, as separately allocated
// strings did: the sort's whole-key comparisons (cmpbody) read 16 bytes at
// a time, and unaligned they cost a quarter more (0.51, 0.56 against 0.73,
// 0.69 CPU-s per 1M-key install, runs alternated).
func (w *recordWriter) align() {
	for len(w.b.keys)%16 != 0 {
		w.b.keys = append(w.b.keys, 0)
	}
}

// push adds the operation on the key at w.b.keys[koff:], whose pre is the
// 16 bytes from its byte from, with provisional group (0, or a module's
// id + 1).
func (w *recordWriter) push(koff, from int, group uint32, val []byte, del bool) error {
	voff := len(w.b.values)
	w.b.values = append(w.b.values, val...)
	return w.pushOp(koff, from, group, voff, del)
}

// pushOp is push for a value already appended to w.b.values at voff.
func (w *recordWriter) pushOp(koff, from int, group uint32, voff int, del bool) error {
	var b [16]byte
	key := w.b.keys[koff:]
	if from < len(key) {
		copy(b[:], key[from:])
	}
	w.b.ops = append(w.b.ops, recordOp{
		pre:   [2]uint64{binary.BigEndian.Uint64(b[:]), binary.BigEndian.Uint64(b[8:])},
		group: group,
		koff:  uint32(koff),
		klen:  uint32(len(key)),
		voff:  uint32(voff),
		vlen:  uint32(len(w.b.values) - voff),
		seq:   uint32(len(w.b.ops)),
		del:   del,
	})
	if !w.manual && w.full() {
		return w.flushThen(nil)
	}
	return nil
}

// full reports whether the buffered batch has reached its size.
func (w *recordWriter) full() bool { return w.b.bytes() >= w.max }

// flushThen hands the buffered operations to a goroutine that sorts them,
// waits for the batch before them, writes them and then runs then (if not
// nil); it first waits for the oldest batch in flight if snapWriteDepth
// are. Batches are written in the order they were handed over, and then
// runs only when its batch and every batch before it are written, so a
// progress record never names records that are not there. An error of
// either is returned by the next flushThen, flush or wait, and every batch
// after the failed one is dropped unwritten.
func (w *recordWriter) flushThen(then func() error) error {
	if len(w.b.ops) == 0 && then == nil {
		return nil
	}
	for len(w.inflight) >= snapWriteDepth {
		if err := w.waitOldest(); err != nil {
			return err
		}
	}
	var prev *batchWrite
	if n := len(w.inflight); n > 0 {
		prev = w.inflight[n-1]
	}
	bw := &batchWrite{done: make(chan struct{}), buf: w.b, run: w.nextRun}
	if w.ingest != nil && len(w.b.ops) > 0 {
		w.nextRun++
	}
	w.inflight = append(w.inflight, bw)
	w.b = opBuffers{}
	if n := len(w.spare); n > 0 {
		w.b = w.spare[n-1]
		w.spare = w.spare[:n-1]
		w.b.reset()
	} else {
		w.b.presize(&bw.buf)
	}
	go func() {
		defer close(bw.done)
		parts := bw.buf.sortParts() // while the batch before is written
		if prev != nil {
			<-prev.done
			if prev.err != nil {
				bw.err = prev.err
				return
			}
		}
		bw.err = w.write(&bw.buf, parts, bw.run)
		if bw.err == nil && then != nil {
			bw.err = then()
		}
	}()
	return nil
}

// waitOldest waits for the oldest batch in flight and returns its error.
func (w *recordWriter) waitOldest() error {
	bw := w.inflight[0]
	w.inflight = w.inflight[1:]
	<-bw.done
	w.spare = append(w.spare, bw.buf)
	return bw.err
}

// wait waits for every batch in flight and returns their first error.
func (w *recordWriter) wait() error {
	var first error
	for len(w.inflight) > 0 {
		if err := w.waitOldest(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// flush writes the buffered operations, if any, and returns once they and
// any batch before them are written.
func (w *recordWriter) flush() error {
	if err := w.flushThen(nil); err != nil {
		return errors.Join(err, w.wait())
	}
	return w.wait()
}

// write writes ob, sorted into parts, as one batch in key order (or as
// run file run, when ingesting); operations on one key keep their order.
func (w *recordWriter) write(ob *opBuffers, parts [][]recordOp, run int) error {
	if len(ob.ops) == 0 {
		return nil
	}
	if w.ingest != nil {
		if err := w.ingest.writeRun(run, ob, parts); err != nil {
			return err
		}
		return w.ctx.Err()
	}
	if w.pdb != nil {
		b := w.pdb.NewBatchWithSize(ob.bytes() + 16*len(ob.ops))
		defer b.Close()
		err := ob.merge(parts, func(op *recordOp) error {
			if op.del {
				return b.Delete(ob.key(op), nil)
			}
			return b.Set(ob.key(op), ob.value(op), nil)
		})
		if err != nil {
			return err
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		return w.ctx.Err()
	}
	b, err := w.d.Batch(w.ctx)
	if err != nil {
		return err
	}
	err = ob.merge(parts, func(op *recordOp) error {
		// The datastore may keep the key and value: copies, since the
		// buffers are reused.
		k := ds.RawKey(string(ob.key(op)))
		if op.del {
			return b.Delete(w.ctx, k)
		}
		return b.Put(w.ctx, k, bytes.Clone(ob.value(op)))
	})
	if err != nil {
		return err
	}
	if err := b.Commit(w.ctx); err != nil {
		return err
	}
	return w.ctx.Err()
}

// sortPartsMax bounds how many parts sortParts hands to cores: merge looks
// at every part's head for every operation.
const sortPartsMax = 4

// sortPartMin is the fewest operations worth a part of their own.
const sortPartMin = 4096

// sortParts sorts the batch's operations in parts, in place, and returns
// the parts; merge hands them to a function in compare order. The sort was
// the longest serial step of an install's writes (1.3 of ~6 CPU-s per 1M
// keys, on the writer goroutine while the builder waited for it), so the
// operations are cut into one part per core and the parts are sorted
// concurrently. compare is a total order (seq breaks ties), so the merged
// order is the one a single sort gives.
func (b *opBuffers) sortParts() [][]recordOp {
	b.rankGroups()
	ops := b.ops
	n := min(runtime.GOMAXPROCS(0), sortPartsMax, max(1, len(ops)/sortPartMin))
	parts := make([][]recordOp, n)
	var wg sync.WaitGroup
	for p := range parts {
		parts[p] = ops[p*len(ops)/n : (p+1)*len(ops)/n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.radixSort(parts[p], 0)
		}()
	}
	wg.Wait()
	return parts
}

// opDigits is how many bytes of an operation radixSort orders by: its
// group and pre, big-endian, which compare orders by first.
const opDigits = 4 + 16

// opDigit returns byte d of op's group and pre, big-endian.
func opDigit(op *recordOp, d int) byte {
	switch {
	case d < 4:
		return byte(op.group >> (24 - 8*d))
	case d < 12:
		return byte(op.pre[0] >> (56 - 8*(d-4)))
	default:
		return byte(op.pre[1] >> (56 - 8*(d-12)))
	}
}

// radixSortMin is the fewest operations radixSort splits by a byte; fewer
// are sorted by compare.
const radixSortMin = 64

// radixSort sorts ops into compare's order, knowing that they agree on
// their first d bytes of group and pre. It splits them by their first
// byte that differs into 256 buckets in place (American flag sort) and
// sorts each bucket the same way; buckets under radixSortMin, and
// operations equal in all opDigits bytes, are sorted by compare, which
// goes on to the key's bytes and the place in the batch. pdqsort with
// compare was most of an install's sort (~0.45 CPU-s per 1M keys): each
// of its ~17 comparisons per operation is a call through a function
// value with two 48-byte copies, where a split reads each operation's
// byte a few times (RATIONALE.md, "Why does an install make its leaves'
// bytes where it hashes them").
func (b *opBuffers) radixSort(ops []recordOp, d int) {
	if len(ops) < radixSortMin {
		slices.SortFunc(ops, b.compare)
		return
	}
	// The first byte at or after d where two operations differ: one pass
	// or'ing each operation's words into how they differ from the first.
	var diff [3]uint64
	g, p0, p1 := ops[0].group, ops[0].pre[0], ops[0].pre[1]
	for i := range ops {
		diff[0] |= uint64(ops[i].group ^ g)
		diff[1] |= ops[i].pre[0] ^ p0
		diff[2] |= ops[i].pre[1] ^ p1
	}
	switch {
	case diff[0] != 0:
		d = max(d, bits.LeadingZeros32(uint32(diff[0]))/8)
	case diff[1] != 0:
		d = max(d, 4+bits.LeadingZeros64(diff[1])/8)
	case diff[2] != 0:
		d = max(d, 12+bits.LeadingZeros64(diff[2])/8)
	default:
		slices.SortFunc(ops, b.compare) // equal up to the key's bytes
		return
	}
	var count, next [256]int
	for i := range ops {
		count[opDigit(&ops[i], d)]++
	}
	sum := 0
	for v := range count {
		next[v] = sum
		sum += count[v]
	}
	end := next
	for v := range end {
		end[v] += count[v]
	}
	// Each operation is moved once into its bucket's next free place,
	// taking the one that was there along until one belongs where the
	// cycle started.
	for v := range next {
		for next[v] < end[v] {
			x := ops[next[v]]
			for dv := opDigit(&x, d); dv != byte(v); dv = opDigit(&x, d) {
				ops[next[dv]], x = x, ops[next[dv]]
				next[dv]++
			}
			ops[next[v]] = x
			next[v]++
		}
	}
	from := 0
	for v := range count {
		if count[v] > 1 {
			b.radixSort(ops[from:from+count[v]], d+1)
		}
		from += count[v]
	}
}

// rankGroups replaces the provisional groups of putKV by the rank of the
// module (1 for the smallest segment: the segments are a module's
// entries' common prefix and no one is a prefix of another, so they order
// the keys) and puts every other operation (node records) after them.
func (b *opBuffers) rankGroups() {
	if len(b.mods) == 0 || b.ranked {
		return
	}
	b.ranked = true
	order := make([]uint32, len(b.mods))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int { return strings.Compare(b.mods[x], b.mods[y]) })
	rank := make([]uint32, len(b.mods)+1)
	rank[0] = uint32(len(b.mods)) + 1
	for r, id := range order {
		rank[id+1] = uint32(r) + 1
	}
	for i := range b.ops {
		b.ops[i].group = rank[b.ops[i].group]
	}
}

// sameKey reports whether x and y name the same key.
func (b *opBuffers) sameKey(x, y *recordOp) bool {
	return x.group == y.group && x.pre == y.pre && bytes.Equal(b.key(x), b.key(y))
}

// merge calls fn for the operations of parts (each sorted) in compare
// order. It consumes parts.
func (b *opBuffers) merge(parts [][]recordOp, fn func(op *recordOp) error) error {
	for {
		best := -1
		for p := range parts {
			if len(parts[p]) > 0 && (best < 0 || b.compare(parts[p][0], parts[best][0]) < 0) {
				best = p
			}
		}
		if best < 0 {
			return nil
		}
		if err := fn(&parts[best][0]); err != nil {
			return err
		}
		parts[best] = parts[best][1:]
	}
}
