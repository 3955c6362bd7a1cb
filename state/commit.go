package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// Write sets Key to Value in a Commit. A nil or empty Value deletes the key:
// a key holding an empty value does not exist.
//
// Old is a hint: the value the caller believes Key holds in the version
// below, as an executor that read it before executing knows (nil or
// empty: no hint). The commit records the value a version replaces or
// deletes in its history, and takes it from the hint instead of reading
// the flat index when the hint hashes to the replaced leaf's value hash;
// any other hint (wrong, stale, another key's) is ignored and the value
// read. A key the caller knows to be absent needs no hint: an absent key
// has no leaf, so there is no old value to record, and if it is present
// after all its value is read. A hint never changes the root, the history
// or anything else stored, only what the commit reads; it is not part of
// a write's encoding. Like Value, Old must not change until the commit's
// wait returns.
type Write struct {
	Key   types.StateKey
	Value []byte
	Old   []byte `cbor:"-"`
}

// Change is one entry of a version's change set.
type Change struct {
	_   struct{} `cbor:",toarray"`
	Key types.StateKey
	Old []byte // nil: the key was absent
	New []byte // nil: the key was deleted
}

// ChangeSet lists the keys a version changed, sorted by key path, with
// their old values: recovery on backends without atomic batches restores
// the flat index from it. The records a torn commit wrote need no list:
// they are the ones under its version's key prefix.
type ChangeSet struct {
	_       struct{} `cbor:",toarray"`
	Height  uint64
	Changes []Change
}

func decodeChangeSet(b []byte) (*ChangeSet, error) {
	var cs ChangeSet
	if err := types.Decode(b, &cs); err != nil {
		return nil, fmt.Errorf("%w: change set: %w", ErrCorrupt, err)
	}
	return &cs, nil
}

// parallelMin is the smallest write set whose 16 top-level subtrees are
// updated in parallel; below it goroutines cost more than they save.
const parallelMin = 256

// item is a write with its key path and value hash computed. Its leaf hash
// h is computed where the write meets the tree (update), in the subtree's
// goroutine.
type item struct {
	kp, vh, h types.Hash
	key       types.StateKey
	value     []byte // nil: delete
	old       []byte // the caller's hint of the value replaced (Write.Old), nil: none or absent
	isNew     bool   // a leaf to write (false: an existing leaf that stays)
	leaf      string // an existing leaf's data (leafData)
}

// newRecord is a node record a version writes, under (version, id),
// encoded where the update makes it: in the subtree's goroutine, while
// the node is in the processor's cache, on every core. Encoding the ~30k
// records (~14 MB) of a 10k-key block at 1M keys after the update took one
// goroutine 40–90 ms on the commit's critical path (see RATIONALE.md, "Why
// is a commit's batch built in key order and in parts?").
type newRecord struct {
	id  types.Hash // node id
	rec []byte     // the record, in its out's arena
}

// arenaChunk is the size of the chunks an out encodes its records into:
// records are never moved once encoded, and a subtree of a 10k-key block
// at 1M keys fills about four.
const arenaChunk = 256 << 10

// out collects what one subtree update writes. Each goroutine fills its own,
// and they are merged in slot order, so the batch never depends on
// scheduling.
type out struct {
	nodes    []*node     // new nodes, for the cache
	replaced []dropped   // nodes the version stopped using, to drop from the cache
	records  []newRecord // new node records, for the batch
	history  []oldLeaf   // leaves the version replaced or deleted, for its history records
	stale    []nodeRef   // node records the version stopped using
	changes  []Change
	modules  []moduleRecord // module ids the version persists (moduleTable.take)
	arena    []byte         // the chunk records are encoded into
	// leaves is update's scratch for the leaves of a subtree it builds
	// anew, kept for the next: most of a block's updates end at a leaf
	// slot, and a slice of items each was ~5 MB of garbage per 10k-key
	// block. The build it is handed to never gathers leaves of its own
	// into the same out (it makes fresh subtrees only, and subtrees built
	// on other goroutines have outs of their own).
	leaves []item
	// touched sums the bytes preload read ahead: never read, it keeps
	// the compiler from dropping those reads (an out per goroutine).
	touched byte
}

// presize gives o room for what a subtree update of n writes usually
// adds (per write, at 1M keys: two new nodes, two replaced, three records,
// three stale refs, one change, at most one history record), so that its
// lists do not grow by doubling. It keeps lists that are large enough
// (o is empty: a reused part, see partOuts).
func (o *out) presize(n int) {
	o.nodes = room(o.nodes, 2*n+4)
	o.replaced = room(o.replaced, 2*n+4)
	o.records = room(o.records, 3*n+4)
	o.history = room(o.history, n)
	o.stale = room(o.stale, 3*n+4)
	o.changes = room(o.changes, n)
}

// room returns s emptied if it has room for n, else a new slice that has.
func room[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:0]
	}
	return make([]T, 0, n)
}

// partOuts keeps parallelChildren's per-run outs from one commit to the
// next: they are garbage once merged into the version's out, and their
// lists were ~5.5 MB of the ~70 MB a 10k-key block at 1M keys allocates
// (see RATIONALE.md, round 10). A sync.Pool, so that a store that stops
// committing does not keep them.
var partOuts sync.Pool

// getPartOut returns an empty out with room for n writes' results.
func getPartOut(n int) *out {
	o, _ := partOuts.Get().(*out)
	if o == nil {
		o = new(out)
	}
	o.presize(n)
	return o
}

// putPartOut empties a merged part and keeps it. Its lists are cleared so
// that the pool holds no node, record chunk or value of the version: the
// records stay in their chunks, which the version's out names.
func putPartOut(o *out) {
	clear(o.nodes)
	clear(o.replaced)
	clear(o.records)
	clear(o.history)
	clear(o.changes)
	clear(o.leaves[:cap(o.leaves)])
	o.nodes, o.replaced, o.records = o.nodes[:0], o.replaced[:0], o.records[:0]
	o.history, o.stale, o.changes = o.history[:0], o.stale[:0], o.changes[:0]
	o.leaves, o.arena = o.leaves[:0], nil
	partOuts.Put(o)
}

// reserve returns the arena with room for n more bytes, starting a new
// chunk when the current one has too little left.
func (o *out) reserve(n int) []byte {
	if cap(o.arena)-len(o.arena) < n {
		o.arena = make([]byte, 0, max(arenaChunk, n))
	}
	return o.arena
}

// addRecord records the encoding that was just appended to the arena from
// start on. An encoder whose announced length was short made append move
// the arena: the record is still whole, in the new chunk.
func (o *out) addRecord(id types.Hash, arena []byte, start int) {
	o.records = append(o.records, newRecord{id, arena[start:len(arena):len(arena)]})
	o.arena = arena
}

// addNode adds a new node, for the cache and, encoded with the module ids
// of t, for the batch.
func (o *out) addNode(n *node, t *moduleTable) {
	o.nodes = append(o.nodes, n)
	a := o.reserve(nodeRecordLen(n, t))
	o.addRecord(n.id, appendNode(a, n, t), len(a))
}

// oldLeaf is a leaf the version replaced or deleted: its history record
// is (kp, version) → value. The value is read after the update
// (readOld), unless the caller's hint (Write.Old) matched the leaf or the
// version below wrote it and its write was still in flight.
type oldLeaf struct {
	leaf   slot
	kp     types.Hash // the leaf's key path
	change int        // its change's index in out.changes (Change.Old)
	value  []byte
}

// staleList returns the stale list of the version o writes: its stale node
// records and the key paths of its history records.
func (o *out) staleList() staleList {
	l := staleList{refs: o.stale, paths: make([]types.Hash, len(o.history))}
	for i := range o.history {
		l.paths[i] = o.history[i].kp
	}
	return l
}

func (o *out) merge(p *out) {
	for i := range p.history {
		p.history[i].change += len(o.changes)
	}
	o.nodes = append(o.nodes, p.nodes...)
	o.replaced = append(o.replaced, p.replaced...)
	o.records = append(o.records, p.records...)
	o.history = append(o.history, p.history...)
	o.stale = append(o.stale, p.stale...)
	o.changes = append(o.changes, p.changes...)
}

type committer struct {
	s      *Store
	ctx    context.Context
	height uint64
	// oldValues says the change set records old values: only recovery on
	// backends without atomic batches reads them (see writeTearable).
	oldValues bool
	// prev is the version before height while its write is still in
	// flight (nil otherwise): a record it wrote is read from the datastore
	// only after that write is done (see loadNode), and a value it wrote
	// is copied from its writes while the write is in flight (copyWritten,
	// see update).
	prev *pendingWrite
}

// pendingWrite is a version handed to the background write: CommitAsync
// returns once the tree is updated, and the batch is built, written and
// synced meanwhile. built closes when the batch is built (or will not
// be), done when the write is over; err (set before) says how it went.
type pendingWrite struct {
	height uint64
	parent types.Hash // the root of the version below (GetMany's index applies the change from it)
	root   slot
	// items is the version's writes, sorted by key path (prepare's): the
	// next version takes the old value of a key this one wrote from here
	// while this write is in flight, as the flat index does not hold it
	// yet (copyWritten). The values are the caller's buffers, which it may
	// reuse once wait returned: copying every value for the few the next
	// version replaces without a hint was ~1 MB per 10k-key block.
	items []item
	// mu orders copyWritten's copies before the caller's wait returns
	// (callerWait): a caller may wait on another goroutine and reuse its
	// buffers while the next version's update runs.
	mu    sync.RWMutex
	built chan struct{}
	done  chan struct{}
	err   error
}

// writing reports whether a version's write is still going on; the caller
// holds commitMu, so no other can start meanwhile.
func (s *Store) writing() bool {
	if s.inflight == nil {
		return false
	}
	select {
	case <-s.inflight.done:
		return false
	default:
		return true
	}
}

// wait blocks until the version's write is over and returns its error.
func (w *pendingWrite) wait() error {
	<-w.done
	return w.err
}

// callerWait is wait as CommitAsync's caller gets it: once it returns, the
// caller may reuse the version's buffers, so it also waits for a copy of
// one of them that the next version's update may be taking.
func (w *pendingWrite) callerWait() error {
	err := w.wait()
	w.mu.Lock() // empty: it waits for copyWritten's readers
	w.mu.Unlock()
	return err
}

// copyWritten returns a copy of the value the version wrote at key path kp
// if it wrote one and its write is still in flight; nil if it wrote none,
// or if the write is over, when the flat index holds the value (err: the
// write failed, so the index does not). Under mu, so that the caller's
// wait does not return during the copy; after the write, the caller may
// have reused the buffer, which is why it is not read then.
func (w *pendingWrite) copyWritten(kp types.Hash) ([]byte, error) {
	i, ok := slices.BinarySearchFunc(w.items, kp, func(it item, kp types.Hash) int { return bytes.Compare(it.kp[:], kp[:]) })
	if !ok || w.items[i].value == nil {
		return nil, nil
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	select {
	case <-w.done:
		return nil, w.err
	default:
		return bytes.Clone(w.items[i].value), nil
	}
}

// Commit applies writes as version height, which must be latest+1, in one
// durable batch, and returns the new root once that batch is synced. It is
// CommitAsync followed by its wait.
func (s *Store) Commit(ctx context.Context, height uint64, writes []Write) (types.Root, error) {
	t0 := s.phases.start()
	root, wait, err := s.commitAsync(ctx, height, writes)
	if err != nil {
		return types.Root{}, err
	}
	t := s.phases.start()
	err = wait()
	t = s.phases.end(phaseWait, t)
	s.phases.add(phaseCommit, t.Sub(t0))
	if err != nil {
		return types.Root{}, err
	}
	return root, nil
}

// CommitAsync applies writes as version height, which must be one above the
// last version committed (durable or not), and returns the new root as soon
// as the tree is updated; the version's batch is built, written and synced
// in the background, and wait reports when that is over. The root is
// durable, and the version visible to readers (Latest, Get, View), only
// once wait returned nil. The next CommitAsync may start at once: its tree
// update runs while this version is written, which is what keeps both cores
// busy (see RATIONALE.md). At most one version's write is outstanding when
// CommitAsync returns: it first waits for the write of the version before
// its own. The writes reach the datastore one version at a time, in height
// order, so a crash leaves at most the version above the last durable one
// half-written, which Open discards, as for Commit.
//
// The root depends only on the resulting set of (key, value) pairs, not on
// the order of writes or on GOMAXPROCS. Writes to the same key twice fail
// with ErrDuplicateKey; a rejected CommitAsync (an error returned, no wait)
// leaves the store unchanged. If writing fails, wait returns
// ErrNeedsReopen, and so does the wait of every later version and every
// later call: Open undoes the torn version. The write goes on after ctx is
// cancelled (a version is never left half-written by choice); wait may be
// called any number of times, from any goroutine. writes must not change
// until wait returns.
func (s *Store) CommitAsync(ctx context.Context, height uint64, writes []Write) (types.Root, func() error, error) {
	t := s.phases.start()
	defer s.phases.end(phaseCommit, t)
	return s.commitAsync(ctx, height, writes)
}

// commitAsync is CommitAsync, untimed as a whole.
func (s *Store) commitAsync(ctx context.Context, height uint64, writes []Write) (types.Root, func() error, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	latest, root, failed := s.latest, s.root, s.failed
	s.mu.Unlock()
	if failed != nil {
		return types.Root{}, nil, failed
	}
	prev := s.inflight
	if prev != nil {
		latest, root = prev.height, prev.root
	}
	if height != latest+1 {
		return types.Root{}, nil, fmt.Errorf("%w: got %d, latest is %d", ErrHeight, height, latest)
	}
	t := s.phases.start()
	items, err := prepare(writes)
	if err != nil {
		return types.Root{}, nil, err
	}
	t = s.phases.end(phasePrepare, t)
	c := &committer{s: s, ctx: ctx, height: height, oldValues: !s.opts.AtomicBatches, prev: prev}
	o := new(out)
	s.modules.assignWrites(items)
	newRoot, err := c.update(o, root, 0, items)
	if err != nil {
		return types.Root{}, nil, err
	}
	t = s.phases.end(phaseUpdate, t)
	if err := c.readOld(o); err != nil {
		return types.Root{}, nil, err
	}
	o.modules = s.modules.take()
	t = s.phases.end(phaseOld, t)
	w := &pendingWrite{height: height, parent: root.h, root: newRoot, items: items, built: make(chan struct{}), done: make(chan struct{})}
	go s.writeInBackground(context.WithoutCancel(ctx), w, prev, o)
	// The cache takes the version's nodes here, while the background
	// goroutine writes its batch: no reader asks for a node born at height
	// before the version is visible, and a dropped node is only reloaded.
	// The next commit finds them there (or, evicted, waits for the write
	// and loads them). If the write fails, the store needs reopening, with
	// a new cache. It waits for the batch to be built, which keeps both
	// cores busy in parts: pebble's commit that follows runs on one
	// goroutine, beside which the cache update costs the commit no time.
	<-w.built
	t = s.phases.end(phaseBuilt, t)
	s.cache.replace(o.replaced, o.nodes)
	// What the rest of the write does not read: the replaced nodes (~20k
	// of a 10k-key block at 1M keys, ~11 MB the cache has let go of), and
	// on an atomic backend the record chunks (~12 MB, copied into the
	// built batch). Kept in o, they were live for every collection that
	// ran while the version was written, and the heap's goal is twice
	// what a collection finds live (see RATIONALE.md, round 10). The
	// background write reads o's other fields; these it no longer touches
	// (it built the batch before closing built).
	o.replaced, o.nodes = nil, nil
	if s.opts.AtomicBatches {
		o.records, o.arena = nil, nil
	}
	s.phases.end(phaseCache, t)
	if prev != nil {
		prev.wait() // its error is w's too, and w reports it
	}
	s.inflight = w
	return types.Root(newRoot.h), w.callerWait, nil
}

// writeInBackground builds version w's batch, waits for the write of the
// version before it (prev, nil if none is outstanding), then writes and
// syncs its own, and makes it visible. A failed write of prev fails w
// without writing anything: versions reach the datastore in height order.
func (s *Store) writeInBackground(ctx context.Context, w *pendingWrite, prev *pendingWrite, o *out) {
	defer close(w.done)
	var b ds.Batch
	var err error
	if s.opts.AtomicBatches {
		// Built while prev is synced: a batch is memory only until its
		// Commit.
		t := s.phases.start()
		b, err = s.commitBatch(ctx, w.height, w.root, o)
		s.phases.end(phaseBuild, t)
	}
	close(w.built)
	if prev != nil {
		if perr := prev.wait(); perr != nil {
			discardBatch(b)
			w.err = perr
			return
		}
	}
	// Get caches no value from here until the version's flat index is
	// in pebble, and forgets the keys it changes (valuecache.go); after a
	// failed write it caches nothing more.
	s.values.begin()
	s.values.forget(s.modules, o.changes)
	switch {
	case err != nil:
	case b != nil:
		err = s.commitTimed(ctx, b)
	default:
		err = s.writeTearable(ctx, w.height, w.root, o)
	}
	if err == nil {
		// Before the version is visible: until then GetMany finds the
		// index ahead of the latest root and reads the datastore.
		s.latestIdx.apply(w.parent, w.root.h, o.changes)
		s.values.end()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Part of the version may be on disk; only Open's recovery knows
		// how to undo it.
		s.failed = fmt.Errorf("%w: commit %d: %w", ErrNeedsReopen, w.height, err)
		w.err = s.failed
		return
	}
	s.latest, s.root = w.height, w.root
}

// commitTimed commits a version's batch, timing pebble's part of it when
// the store times its phases.
func (s *Store) commitTimed(ctx context.Context, b ds.Batch) error {
	pb, ok := b.(pebbleBatch)
	if !ok || s.phases == nil {
		return b.Commit(ctx)
	}
	defer pb.b.Close()
	t := s.phases.start()
	err := pb.b.Commit(pb.wo)
	// The stats leave out the sort of a batch too large for the
	// memtable, which comes before pebble's commit pipeline.
	wait := pb.b.CommitStats().CommitWaitDuration
	s.phases.add(phaseSync, wait)
	s.phases.add(phaseApply, time.Since(t)-wait)
	return err
}

// prepare validates writes and returns them as items sorted by key path.
func prepare(writes []Write) ([]item, error) {
	if len(writes) > BlockWritesMax {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManyWrites, len(writes), BlockWritesMax)
	}
	for i, w := range writes {
		if len(w.Key.Key) > types.StateKeyMax {
			return nil, fmt.Errorf("%w: %d bytes in write %d", ErrKeyTooLong, len(w.Key.Key), i)
		}
		if len(w.Value) > types.StateValueMax {
			return nil, fmt.Errorf("%w: %d bytes in write %d", ErrValueTooLarge, len(w.Value), i)
		}
	}
	items := make([]item, len(writes))
	// Two hashes per write (key path, value hash): split over the cores
	// for a large block. Each item depends on its write alone.
	hashItems := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			w := &writes[i]
			it := item{kp: types.KeyPath(w.Key), key: w.Key, isNew: true}
			if len(w.Old) > 0 {
				it.old = w.Old
			}
			if len(w.Value) > 0 {
				it.value = w.Value
				it.vh = types.ValueHash(w.Value)
			}
			items[i] = it
		}
	}
	parts := 1
	if len(writes) >= parallelMin {
		parts = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { hashItems(p*len(items)/parts, (p+1)*len(items)/parts) })
	}
	hashItems(0, len(items)/parts)
	wg.Wait()
	sort.Slice(items, func(i, j int) bool { return bytes.Compare(items[i].kp[:], items[j].kp[:]) < 0 })
	for i := 1; i < len(items); i++ {
		if items[i].kp == items[i-1].kp {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateKey, items[i].key)
		}
	}
	return items, nil
}

// readOld reads the values of the leaves the version replaced or deleted
// that neither a hint gave nor the version below's writes (the update
// copied those while that write was in flight: see copyWritten) from the flat
// index, which no version after the one below has changed yet (this
// version's batch is built after this), and checks each against its leaf's value hash. The
// reads are sorted by key and split over the cores, each part through one
// pebble iterator: a 10k-key block's ~10k old values are random keys of the
// index, and read in its key order a data block that holds several of them
// is loaded once (see RATIONALE.md, "Why does a live value live only in the
// flat index").
func (c *committer) readOld(o *out) error {
	var todo []int
	for i := range o.history {
		if o.history[i].value == nil {
			todo = append(todo, i)
		}
	}
	keyOf := func(i int) string { return o.history[i].leaf.leaf[types.HashLen:] } // module, key
	slices.SortFunc(todo, func(a, b int) int { return strings.Compare(keyOf(a), keyOf(b)) })
	parts := 1
	if len(todo) >= parallelMin {
		parts = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() { errs[p] = c.readOldPart(o, todo[p*len(todo)/parts:(p+1)*len(todo)/parts]) })
	}
	wg.Wait()
	// The first failing part's error, so that the error names the same key
	// whatever the number of cores.
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if c.oldValues {
		for i := range o.history {
			o.changes[o.history[i].change].Old = o.history[i].value
		}
	}
	return nil
}

// readOldPart reads the old values of o.history[i] for i in part (sorted by
// key).
func (c *committer) readOldPart(o *out, part []int) error {
	var buf []byte
	set := func(i int, v []byte) error {
		h := &o.history[i]
		if v == nil || types.ValueHash(v) != h.leaf.vh() {
			return fmt.Errorf("%w: the flat index does not hold the value of leaf %s (%s)", ErrCorrupt, h.leaf.h, h.leaf.key())
		}
		// One buffer for the part's values: a grown buffer leaves the
		// values before in the old one, which they keep alive.
		at := len(buf)
		buf = append(buf, v...)
		h.value = buf[at:len(buf):len(buf)]
		return nil
	}
	if c.s.pdb == nil {
		for _, i := range part {
			v, err := c.s.Get(c.ctx, o.history[i].leaf.key())
			if err != nil {
				return err
			}
			if err := set(i, v); err != nil {
				return err
			}
		}
		return nil
	}
	l, err := c.s.newIndexLookup(c.ctx)
	if err != nil {
		return err
	}
	defer l.close()
	for _, i := range part {
		v, err := l.get(o.history[i].leaf.key())
		if err != nil {
			return err
		}
		if err := set(i, v); err != nil {
			return err
		}
	}
	return nil
}

// loadNode returns node r, from the cache or the datastore. A node of the
// version whose write is in flight is in the cache unless it was evicted
// already; then it is read once that write is over.
func (c *committer) loadNode(r nodeRef) (*node, error) {
	if c.prev != nil && r.born >= c.prev.height {
		if n := c.s.cache.get(r); n != nil {
			return n, nil
		}
		if err := c.awaitPrev(r.born); err != nil {
			return nil, err
		}
		// The lookup above was the miss: looking again through
		// Store.loadNode would count a second one for one read.
		return c.s.readNode(c.ctx, r)
	}
	return c.s.loadNode(c.ctx, r)
}

// awaitPrev waits, before a record born at born is read from the
// datastore, for the write of the version before this one if it wrote it.
func (c *committer) awaitPrev(born uint64) error {
	if c.prev == nil || born < c.prev.height {
		return nil
	}
	return c.prev.wait()
}

// update returns the new content of the subtree at nibble depth d whose
// current content is old, after applying ws (sorted, all under this
// subtree). It records new nodes, history records, stale ids and changes
// in o.
func (c *committer) update(o *out, old slot, d int, ws []item) (slot, error) {
	return c.updateFrom(o, old, nil, d, ws)
}

// updateFrom is update with the node of old (a child slot) given when the
// caller found it in the cache already (see preload); nil: it is loaded.
func (c *committer) updateFrom(o *out, old slot, n *node, d int, ws []item) (slot, error) {
	if len(ws) == 0 {
		return old, nil
	}
	if old.kind == slotChild {
		if n == nil {
			var err error
			if n, err = c.loadNode(old.ref()); err != nil {
				return slot{}, err
			}
		}
		// The new content of the slots ws reach; the others stay
		// n's, and finish moves them as they are (patchSlots).
		var a [fanout]slot
		changed, err := c.children(o, d, ws, &a, n)
		if err != nil {
			return slot{}, err
		}
		if changed == 0 {
			return old, nil
		}
		o.stale = append(o.stale, old.ref())
		o.replaced = append(o.replaced, droppedNode(n))
		return c.finish(o, &a, n, changed), nil
	}
	// old is empty or a leaf: gather the leaves of the new subtree, in
	// o's scratch (see out.leaves).
	leaves := o.leaves[:0]
	keepOld := old.kind == slotLeaf
	for i := range ws {
		w := &ws[i]
		if w.value != nil {
			w.h = types.LeafHash(w.kp, w.vh)
		}
		if keepOld && old.hasKey(w.key) {
			if w.value != nil && w.h == old.h {
				continue // same value: nothing changes
			}
			ol := oldLeaf{leaf: old, kp: w.kp, change: len(o.changes)}
			switch {
			case w.old != nil && types.ValueHash(w.old) == old.vh():
				// The caller's hint, checked against the leaf it
				// replaces: the leaf's value hash fixes the value, so a
				// hint that passes is the value, whatever its origin.
				ol.value = w.old
			case c.prev != nil:
				// A copy: the caller may reuse the version below's
				// buffers before this version's batch is written. Its
				// leaf is the one replaced here, so the copy must hash
				// to it; else the caller changed it too early.
				v, err := c.prev.copyWritten(w.kp)
				if err != nil {
					return slot{}, err
				}
				if v != nil && types.ValueHash(v) != old.vh() {
					return slot{}, fmt.Errorf("%w: version %d's value of %s changed before its wait returned", ErrCorrupt, c.prev.height, w.key)
				}
				ol.value = v
			}
			o.history = append(o.history, ol)
			o.changes = append(o.changes, Change{Key: w.key, New: w.value})
			keepOld = false
		} else if w.value != nil {
			o.changes = append(o.changes, Change{Key: w.key, New: w.value})
		}
		if w.value != nil {
			leaves = append(leaves, *w)
		}
	}
	o.leaves = leaves // keep what it grew to
	if keepOld {
		if len(leaves) == 0 {
			return old, nil
		}
		kp := old.keyPath()
		at := sort.Search(len(leaves), func(i int) bool { return bytes.Compare(leaves[i].kp[:], kp[:]) > 0 })
		leaves = append(leaves, item{})
		copy(leaves[at+1:], leaves[at:])
		leaves[at] = item{kp: kp, h: old.h, leaf: old.leaf}
		o.leaves = leaves
	}
	return c.build(o, leaves, d), nil
}

// build returns a fresh subtree at nibble depth d holding leaves (sorted).
func (c *committer) build(o *out, leaves []item, d int) slot {
	switch len(leaves) {
	case 0:
		return slot{}
	case 1:
		l := &leaves[0]
		s := slot{kind: slotLeaf, h: l.h, leaf: l.leaf}
		if l.isNew {
			s.leaf = leafData(l.vh, l.key)
		}
		return s
	}
	var a [fanout]slot
	// build cannot fail: it reads nothing.
	_, _ = c.children(o, d, leaves, &a, nil)
	return c.finish(o, &a, nil, allSlots)
}

// finish turns an updated node into the slot that replaces it: nothing if it
// is empty, its only leaf if one leaf is left (the sparse tree collapses a
// one-leaf subtree), else the node itself, recorded for writing. The node
// is from's slots with those marked in changed replaced by a's (with from
// nil, a's: see newNode).
func (c *committer) finish(o *out, a *[fanout]slot, from *node, changed uint16) slot {
	occ := patchedOcc(from, a, changed)
	switch bits.OnesCount16(occ) {
	case 0:
		return slot{}
	case 1:
		last := bits.TrailingZeros16(occ)
		// A changed slot of a is unpacked (children unpacks what it
		// reaches); a kept one is read from the node, with its table.
		s := a[last]
		if from != nil && changed&(1<<last) == 0 {
			s = from.slot(last)
		}
		if s.kind == slotLeaf {
			return s
		}
	}
	nn := newNode(c.height, a, from, changed, c.s.modules)
	o.addNode(nn, c.s.modules)
	return slot{kind: slotChild, h: nn.id, born: c.height}
}

// run is a stretch of a sorted write set whose items share nibble d.
type run struct{ nib, lo, hi int }

// children applies ws (sorted, all under this node) to the slots of node
// from at nibble depth d, each run of ws to the slot of its nibble: an
// update of the slot's subtree, or a fresh subtree when from is nil. It
// sets the new content of the slots the runs reach in a (empty before) and
// returns a bit per slot that changed. The slot array stays on the caller's
// stack: only the top of the tree, for large write sets, goes to
// parallelChildren, which works on its own copy.
func (c *committer) children(o *out, d int, ws []item, a *[fanout]slot, from *node) (uint16, error) {
	fresh := from == nil
	var rbuf [fanout]run
	rs := rbuf[:0]
	for lo := 0; lo < len(ws); {
		nib := nibble(ws[lo].kp, d)
		hi := lo + 1
		for hi < len(ws) && nibble(ws[hi].kp, d) == nib {
			hi++
		}
		rs = append(rs, run{nib, lo, hi})
		if !fresh {
			a[nib] = from.slot(nib)
		}
		lo = hi
	}
	if d == 0 && len(ws) >= parallelMin && len(rs) > 1 {
		return c.parallelChildren(o, d, ws, rs, a, fresh)
	}
	var pre [fanout]*node
	if !fresh {
		c.preload(o, rs, a, &pre)
	}
	var changed uint16
	for _, r := range rs {
		ns, err := c.child(o, d, ws[r.lo:r.hi], a[r.nib], pre[r.nib], fresh)
		if err != nil {
			return 0, err
		}
		if ns != a[r.nib] {
			changed |= 1 << r.nib
		}
		a[r.nib] = ns
	}
	return changed, nil
}

// preload sets pre[nib] to the node of a[nib] for each run whose slot is a
// child the cache holds, looked up together (nodeCache.getMany): a node's
// children are read one after the other, and each lookup alone waits for
// memory (see RATIONALE.md, issue #2, round 12).
func (c *committer) preload(o *out, rs []run, a *[fanout]slot, pre *[fanout]*node) {
	var (
		refs [fanout]nodeRef
		nibs [fanout]int
		ns   [fanout]*node
	)
	k := 0
	for _, r := range rs {
		if a[r.nib].kind == slotChild {
			refs[k], nibs[k] = a[r.nib].ref(), r.nib
			k++
		}
	}
	if k < 2 {
		return // one lookup overlaps with nothing
	}
	o.touched += c.s.cache.getMany(refs[:k], ns[:k])
	for i := range k {
		pre[nibs[i]] = ns[i]
	}
}

// child returns the new content of the slot at nibble depth d+1 that group
// goes to: a fresh subtree of group, or old (whose node is n if the caller
// has it) updated by it.
func (c *committer) child(o *out, d int, group []item, old slot, n *node, fresh bool) (slot, error) {
	if fresh {
		return c.build(o, group, d+1), nil
	}
	return c.updateFrom(o, old, n, d+1, group)
}

// parallelChildren is children with one goroutine per run, each with its
// own out, merged afterwards in nibble order, so the batch never depends on
// scheduling; the first error in nibble order wins, so errors are
// deterministic too.
func (c *committer) parallelChildren(o *out, d int, ws []item, rs []run, a *[fanout]slot, fresh bool) (uint16, error) {
	type result struct {
		o   *out
		s   slot
		err error
	}
	res := make([]result, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		res[i].o = getPartOut(r.hi - r.lo)
		wg.Add(1)
		go func(old slot) {
			defer wg.Done()
			res[i].s, res[i].err = c.child(res[i].o, d, ws[r.lo:r.hi], old, nil, fresh)
		}(a[r.nib])
	}
	wg.Wait()
	defer func() {
		for i := range res {
			putPartOut(res[i].o)
		}
	}()
	var nn, nd, nr, nh, ns, nc int
	for i := range res {
		if res[i].err != nil {
			return 0, res[i].err
		}
		p := res[i].o
		nn, nd, nr, nh = nn+len(p.nodes), nd+len(p.replaced), nr+len(p.records), nh+len(p.history)
		ns, nc = ns+len(p.stale), nc+len(p.changes)
	}
	// One allocation per list instead of the appends' doublings: at the
	// top of a 10k-key block these lists hold tens of thousands of entries.
	o.nodes = slices.Grow(o.nodes, nn)
	o.replaced = slices.Grow(o.replaced, nd)
	o.records = slices.Grow(o.records, nr)
	o.history = slices.Grow(o.history, nh)
	o.stale = slices.Grow(o.stale, ns)
	o.changes = slices.Grow(o.changes, nc)
	var changed uint16
	for i, r := range rs {
		o.merge(res[i].o)
		if res[i].s != a[r.nib] {
			changed |= 1 << r.nib
		}
		a[r.nib] = res[i].s
	}
	return changed, nil
}

// commitBatch returns the one batch that writes version height on an
// atomic backend: its records, stale list, flat index, root record and the
// latest pointer. Pebble writes it with sync.
func (s *Store) commitBatch(ctx context.Context, height uint64, root slot, o *out) (ds.Batch, error) {
	if s.pdb != nil {
		b, err := s.pebbleVersionBatch(height, root, o)
		if err != nil {
			return nil, err
		}
		return pebbleBatch{b, pebble.Sync}, nil
	}
	b, err := s.versionBatch(ctx, height, root, o, true)
	if err != nil {
		return nil, err
	}
	if err := b.Put(ctx, keyLatest, binary.AppendUvarint(nil, height)); err != nil {
		discardBatch(b)
		return nil, err
	}
	return b, nil
}

// writeTearable writes version height on a backend whose batches are not
// atomic: the change set is made durable first and the latest pointer
// last, so that recovery finds what to undo.
func (s *Store) writeTearable(ctx context.Context, height uint64, root slot, o *out) error {
	sync := func() error { return s.d.Sync(ctx, ds.NewKey("/kairos")) }
	// Only recovery reads a change set, and only on these backends: an
	// atomic batch holds the latest pointer too, so a version is either
	// all there or not at all and there is nothing to undo.
	// The history records go with it, before the flat index changes: a
	// reader that finds a key's new value in the index finds the old one's
	// record (see leafValue). Recovery deletes them with the version's
	// node records.
	changes := ChangeSet{Height: height, Changes: o.changes}
	if err := s.d.Put(ctx, changesKey(height), types.MustEncode(changes)); err != nil {
		return err
	}
	// The module ids too: a flat index key names its module by id, and
	// recovery finds the torn version's entries by those keys (ids are
	// kept, loadModules), so every id they name must be durable first.
	if err := putModules(o.modules, func(k ds.Key, v []byte) error { return s.d.Put(ctx, k, v) }); err != nil {
		return err
	}
	for _, h := range o.history {
		if err := s.d.Put(ctx, histKey(h.kp, height), bytes.Clone(h.value)); err != nil {
			return err
		}
	}
	if err := sync(); err != nil {
		return err
	}
	b, err := s.versionBatch(ctx, height, root, o, false)
	if err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	if err := sync(); err != nil {
		return err
	}
	if err := s.d.Put(ctx, keyLatest, binary.AppendUvarint(nil, height)); err != nil {
		return err
	}
	return sync()
}

// versionBatch returns a go-datastore batch holding version height: its
// records, history records and module ids (if history: writeTearable
// writes them first, on their own), stale list, flat index changes and
// root record; the caller adds the latest pointer (commitBatch) or writes
// it later (writeTearable).
// Pebble's is built by pebbleVersionBatch instead.
func (s *Store) versionBatch(ctx context.Context, height uint64, root slot, o *out, history bool) (ds.Batch, error) {
	b, err := s.d.Batch(ctx)
	if err != nil {
		return nil, err
	}
	put := func(k ds.Key, v []byte) {
		if err == nil {
			err = b.Put(ctx, k, v)
		}
	}
	if history { // else writeTearable wrote them
		for _, m := range o.modules {
			put(moduleKey(m.id), bytes.Clone(m.a[:]))
		}
	}
	// A record is a slice of a 256 KiB chunk shared with other records; a
	// datastore that keeps the slices it is given (the in-memory one) would
	// keep the whole chunk alive for one surviving record. The values are
	// the caller's, which it may reuse once the version's wait returned:
	// such a datastore would hand the reused bytes out as the flat index.
	for _, r := range o.records {
		put(nodeKey(height, r.id), bytes.Clone(r.rec))
	}
	if history {
		for _, h := range o.history {
			put(histKey(h.kp, height), bytes.Clone(h.value))
		}
	}
	if len(o.stale) > 0 || len(o.history) > 0 {
		put(staleKey(height), encodeStale(o.staleList()))
	}
	var kb []byte // reused: each key is copied into a string below
	for i, ch := range o.changes {
		if err != nil {
			break
		}
		if kb, err = s.modules.writeKVKey(kb[:0], ch.Key); err != nil {
			break
		}
		if ch.New == nil {
			err = b.Delete(ctx, ds.RawKey(string(kb)))
		} else {
			// GetMany's index of an in-memory store (latest.go) takes the
			// values from the changes (apply): the datastore's copy, not
			// the caller's buffer.
			v := bytes.Clone(ch.New)
			o.changes[i].New = v
			put(ds.RawKey(string(kb)), v)
		}
	}
	put(rootKey(height), encodeRoot(root))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// discardBatch releases a batch that is abandoned instead of committed
// (nil: nothing to release). A pebble batch holds pooled memory until it
// is closed; Commit closes it, so only batches that never reach Commit
// come here.
func discardBatch(b ds.Batch) {
	if pb, ok := b.(pebbleBatch); ok {
		pb.b.Close()
	}
}

// pebbleBatch is a pebble batch as a ds.Batch, committed with wo: sync like
// the go-ds-pebble datastore that OpenPebble configures, or not for
// UnsyncedBatch (the pruner's chunks, the node's block records).
type pebbleBatch struct {
	b  *pebble.Batch
	wo *pebble.WriteOptions
}

func (p pebbleBatch) Put(_ context.Context, k ds.Key, v []byte) error {
	return p.b.Set(keyBytes(k), v, nil)
}

func (p pebbleBatch) Delete(_ context.Context, k ds.Key) error {
	return p.b.Delete(keyBytes(k), nil)
}

func (p pebbleBatch) Commit(context.Context) error {
	defer p.b.Close()
	return p.b.Commit(p.wo)
}
