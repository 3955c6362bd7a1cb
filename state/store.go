package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	leveldb "github.com/ipfs/go-ds-leveldb"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/types"
)

// Errors of the state store. Each is wrapped with detail; test with
// errors.Is.
var (
	// ErrPruned reports a version below the prune horizon.
	ErrPruned = errors.New("state: version pruned")
	// ErrUnknownVersion reports a version above the latest commit.
	ErrUnknownVersion = errors.New("state: version not committed")
	// ErrHeight reports a commit whose height is not latest+1.
	ErrHeight = errors.New("state: commit height is not latest+1")
	// ErrDuplicateKey reports a key written (or proved) twice in one call.
	ErrDuplicateKey = errors.New("state: duplicate key")
	// ErrKeyTooLong reports a key longer than types.StateKeyMax.
	ErrKeyTooLong = errors.New("state: key too long")
	// ErrValueTooLarge reports a value longer than types.StateValueMax.
	ErrValueTooLarge = errors.New("state: value too large")
	// ErrTooManyWrites reports a block with more than BlockWritesMax writes.
	ErrTooManyWrites = errors.New("state: too many writes in one block")
	// ErrNeedsReopen reports a store whose last commit failed while
	// writing; reopening it recovers.
	ErrNeedsReopen = errors.New("state: commit failed while writing; reopen the store")
	// ErrViewClosed reports use of a closed View.
	ErrViewClosed = errors.New("state: view closed")
	// ErrCorrupt reports stored data that fails its checks, including a
	// node that a retained version needs and that is missing. It stops the
	// node: it is never caused by input from peers or clients.
	ErrCorrupt = errors.New("state: corrupt store")
	// ErrFormat reports a store written in another on-disk format (an
	// older Kairos): it cannot be read, only replaced.
	ErrFormat = errors.New("state: unsupported on-disk format")
)

// BlockWritesMax is the most writes one Commit accepts. It bounds the
// memory of a commit and the size of its change set.
const BlockWritesMax = 1 << 17

// Pebble settings used by OpenPebble. Together with the node cache they are
// the store's memory budget (target: peak RSS <= 1 GiB at 1M keys).
const (
	PebbleCacheBytes = 128 << 20
	// PebbleMemTableBytes is pebble's memtable size (16 MiB measured 40–70
	// MiB more peak RSS at 1M keys). A 10k-key block's batch at 1M keys
	// (~14 MB of keys and values, ~46k entries) is still more than half
	// of it by pebble's count (each entry also counts a skiplist node of
	// the largest height), so pebble makes it a flushable batch that
	// holds its Go buffer until its flush; a smaller block's batch is
	// copied into the memtable (RATIONALE.md, "Why does a commit not
	// reuse its batch and record chunks…"). The
	// logs pebble kept to recycle (three memtables' worth) were what made
	// a larger memtable cost disk; logDeleter stops that (RATIONALE.md,
	// "Why does pebble not recycle its write-ahead logs…?").
	PebbleMemTableBytes         = 32 << 20
	PebbleL0CompactionThreshold = 8
	// PebbleBlockBytes is the data block size of every level's tables
	// (pebble's default is 4 KiB). Larger blocks pay pebble's per-block
	// costs (a write call through its 4 KiB buffer, a checksum, an index
	// entry, a block load in every compaction that reads it) eight times
	// less often: at 1M keys the commit cost ~9% less CPU with pruning at
	// load 4–8 (3–5% on a quiet machine) and 10–13% less without, export
	// and install more per CPU-second; but compactions write more table
	// bytes with pruning, and a latest read that misses the block cache
	// costs 1–3 µs more (see RATIONALE.md, "Why are pebble's blocks 32 KiB").
	PebbleBlockBytes = 32 << 10
)

// Defaults for Options fields left zero. The node cache keeps two
// generations of at most half its bytes each, and a 1M-key tree takes
// ~166 MB of it (359k nodes): with 256 MiB a commit read ~1,300 evicted
// nodes per 10k-key block from pebble, a third of its tree update's CPU
// (see RATIONALE.md).
const (
	DefaultCacheBytes = 512 << 20
	DefaultPruneChunk = 4096
)

// Options configure a Store. The zero value keeps every version (archive
// mode) with the default cache.
type Options struct {
	// KeepVersions is K: Prune keeps the last K versions readable (plus
	// pinned ones). 0 disables pruning. It may change between opens of the
	// same database; a smaller K prunes more on the next Prune, a larger one
	// cannot bring back versions already pruned.
	KeepVersions uint64
	// CacheBytes bounds the decoded-node cache.
	CacheBytes int
	// ValueCacheBytes bounds the latest values Get keeps on pebble
	// (valuecache.go); 0 is DefaultValueCacheBytes, negative turns the
	// cache off.
	ValueCacheBytes int
	// PruneChunk is the number of stale entries checked and deleted per
	// batch (and per hold of the lock that Commit's write also takes).
	PruneChunk int
	// AtomicBatches says the datastore applies a batch all or nothing (pebble,
	// leveldb). When false, Commit first writes the change set on its own
	// and the latest pointer last, so that recovery can undo a torn batch.
	AtomicBatches bool
	// moduleIDsMax lowers ModuleIDsMax in tests (0: ModuleIDsMax). A
	// store must be opened with the same value each time.
	moduleIDsMax int
}

func (o Options) withDefaults() Options {
	if o.moduleIDsMax <= 0 || o.moduleIDsMax > ModuleIDsMax {
		o.moduleIDsMax = ModuleIDsMax // ids past it do not fit entry.mod
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.PruneChunk <= 0 {
		o.PruneChunk = DefaultPruneChunk
	}
	if o.ValueCacheBytes == 0 {
		o.ValueCacheBytes = DefaultValueCacheBytes
	}
	return o
}

// Store is the versioned Merkle state. Concurrency: Commit calls must not
// overlap each other (the caller executes blocks in order; a second
// concurrent Commit waits, then fails with ErrHeight unless its height
// fits). Get, Iterate, Latest, View and everything on a View may be called
// from any goroutine at any time, also during Commit and Prune. Prune and
// Audit serialize themselves.
type Store struct {
	d      ds.Batching
	closer io.Closer
	opts   Options
	cache  *nodeCache
	// pdb is the pebble database under d when OpenPebble opened it. A
	// commit's batch goes to it directly, sized up front: through
	// go-ds-pebble it grew by doubling from empty to the block's ~13 MB
	// and every key was copied once more on the way.
	pdb *pebble.DB
	// parts keeps the part batches of a version's pebble batch for the
	// next version (batch.go).
	parts partBatches
	// pebbleFS and pebbleDir are where pdb keeps its files, when known
	// (OpenPebble): an install writes its scratch runs beside them and
	// ingests the tables it merges from them.
	pebbleFS  vfs.FS
	pebbleDir string
	// values holds latest values Get read from pebble (valuecache.go);
	// every writer of the flat index brackets its write with its begin
	// and end.
	values *valueCache
	// latestIdx is GetMany's copy of an in-memory store's flat index
	// (latest.go); Commit keeps it in step.
	latestIdx latestIndex
	// modules is the store's module table (modules.go), loaded by Open.
	modules *moduleTable

	// commitMu: one tree update or writer at a time (CommitAsync, Install,
	// Seed, Replace, Audit, Close, GetMany's index rebuild); not held while
	// a pipelined write runs.
	commitMu sync.Mutex
	// inflight is the last version CommitAsync handed to the background
	// write, nil once a writer drained it; under commitMu.
	inflight *pendingWrite
	// phases times the phases of each commit; nil (nothing timed) except
	// in the commit benchmark.
	phases *commitPhases
	// failed is set by a write that failed (fail), under mu: GetMany reads
	// it without commitMu.
	failed  error
	pruneMu sync.Mutex // one Prune at a time; Audit holds it too

	mu        sync.Mutex // guards the fields below
	latest    uint64
	root      slot
	min       uint64 // lowest readable version
	pruneDone uint64 // stale entries with since <= pruneDone are processed
	views     map[uint64]int
	pins      map[uint64]bool
}

// Open opens (or initializes) a store in d and recovers from a commit that
// did not complete: anything written for a version above the durable latest
// is undone, and the latest root node is checked against its id.
func Open(ctx context.Context, d ds.Batching, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{d: d, opts: opts, cache: newNodeCache(opts.CacheBytes), values: newValueCache(opts.ValueCacheBytes), views: map[uint64]int{}, pins: map[uint64]bool{}}
	latest, ok, err := s.getUint(ctx, keyLatest)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := s.initialize(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.checkFormat(ctx); err != nil {
		return nil, err
	}
	if s.modules, err = loadModules(ctx, d, opts.moduleIDsMax); err != nil {
		return nil, err
	}
	if err := s.recover(ctx, latest); err != nil {
		return nil, err
	}
	s.latest = latest
	if s.root, err = s.rootAt(ctx, latest); err != nil {
		return nil, err
	}
	if s.root.kind == slotChild {
		n, err := s.loadNode(ctx, s.root.ref())
		if err != nil {
			return nil, fmt.Errorf("checking root of version %d: %w", latest, err)
		}
		if !n.hashMatches(s.root.h) {
			return nil, fmt.Errorf("%w: root node of version %d does not hash to its id", ErrCorrupt, latest)
		}
	}
	if s.min, _, err = s.getUint(ctx, keyMin); err != nil {
		return nil, err
	}
	if s.pruneDone, _, err = s.getUint(ctx, keyPruneDone); err != nil {
		return nil, err
	}
	pins, err := s.keysWithPrefix(ctx, nsPin)
	if err != nil {
		return nil, err
	}
	for _, k := range pins {
		h, err := parseHeightKey(k, nsPin)
		if err != nil {
			return nil, err
		}
		s.pins[h] = true
	}
	return s, nil
}

// OpenMemory opens a store in a fresh in-memory datastore (tests, tools).
func OpenMemory(opts Options) (*Store, error) {
	return Open(context.Background(), dssync.MutexWrap(ds.NewMapDatastore()), opts)
}

// OpenPebble opens a store in a pebble database at path. Writes are synced:
// go-ds-pebble defaults to NoSync, which loses acknowledged batches on power
// loss.
func OpenPebble(path string, opts Options) (*Store, error) {
	return openPebbleListened(path, opts, nil)
}

// openPebbleListened is OpenPebble with pebble's events also sent to el
// when it is not nil (the benchmarks count the tables that flushes and
// compactions write).
func openPebbleListened(path string, opts Options, el *pebble.EventListener) (*Store, error) {
	po := pebbleOptions()
	if el != nil {
		po.AddEventListener(*el)
	}
	d, err := pebbleds.NewDatastore(path,
		pebbleds.WithPebbleWriteOptions(pebble.Sync),
		pebbleds.WithCacheSize(PebbleCacheBytes),
		pebbleds.WithPebbleOpts(po))
	if err != nil {
		return nil, fmt.Errorf("state: open pebble %s: %w", path, err)
	}
	s, err := openOwned(d, opts)
	if err != nil {
		return nil, err
	}
	s.pdb = d.DB
	s.pebbleFS, s.pebbleDir = vfs.Default, path
	return s, nil
}

func pebbleOptions() *pebble.Options {
	// The memtable's size is also the disk its write-ahead log takes, four
	// times over: pebble keeps MemTableStopWritesThreshold+1 logs of
	// flushed memtables to recycle beside the live one (see
	// PebbleMemTableBytes).
	o := &pebble.Options{MemTableSize: PebbleMemTableBytes}
	// Node and value reads are point lookups by hash; bloom filters let
	// them skip the levels that do not hold the key. Most stored bytes are
	// hashes, which do not compress: snappy cost CPU for nothing.
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
		o.Levels[i].BlockSize = PebbleBlockBytes
	}
	// Flat index keys are random, so a flushed table's index part overlaps
	// all of LBase's (node keys, ordered by born since format 2, do not):
	// letting L0 collect 8 sublevels before compacting it into LBase merges
	// twice the data per rewrite of LBase (measured on format 1, when node
	// keys were hashes too: about a quarter fewer table bytes per update
	// at 1M keys, see RATIONALE.md); the stop threshold moves up with it so
	// that commits do not stall meanwhile.
	o.L0CompactionThreshold = PebbleL0CompactionThreshold
	o.L0StopWritesThreshold = 4 * PebbleL0CompactionThreshold
	// Flushes and compactions end a table at each namespace bound. A table
	// holding the end of the flat index and the start of the node records
	// spans every table of the level below between its keys, which a
	// compaction into that level must rewrite; at 1M keys with pruning a
	// fifth of the tables written were such, and ending them at the bounds
	// took a fifth off the table bytes per update and a third off those
	// compacted (see RATIONALE.md, "Why does pebble end its tables at
	// namespace bounds").
	o.Experimental.SpanPolicyFunc = namespaceSpans
	o.Cleaner = logDeleter{}
	return o
}

// logDeleter is pebble's cleaner of obsolete files: it deletes them, as
// pebble's default does, and it also keeps pebble from recycling
// write-ahead logs. Pebble keeps the logs of the last three flushed
// memtables (MemTableStopWritesThreshold+1, each ~a memtable's size) to
// write the next logs into, unless the cleaner needs the contents of the
// files it cleans, which it tells by an unexported method that only
// pebble's ArchiveCleaner has. So logDeleter embeds an ArchiveCleaner one
// level down, for that method alone, and DeleteCleaner at the top, whose
// Clean (delete) shadows the archiving one. With 32 MiB memtables those
// logs were ~90 MB at any time, a fifth of a 1M-key pruned store's disk;
// a new log costs a file creation instead, and pebble preallocates it to
// 110% of a memtable as it does a recycled one (RATIONALE.md, "Why does
// pebble not recycle its write-ahead logs…?"). TestPebbleDoesNotRecycleLogs
// fails if a pebble upgrade changes this.
type logDeleter struct {
	pebble.DeleteCleaner
	needsContents
}

type needsContents struct{ pebble.ArchiveCleaner }

func (logDeleter) String() string { return "delete-no-log-recycling" }

// nsBounds are the first keys of the store's namespaces and the first keys
// after each, in key order. The single records between them (latest,
// min…) share a span; keys after the last bound (the snapshot import's
// staging, the node's records in the same database) share one.
var nsBounds = func() [][]byte {
	var b [][]byte
	for _, ns := range []string{nsChanges, nsHist, nsKV, nsModule, nsNode, nsPin, nsRoot, nsStale} {
		b = append(b, []byte(ns), nsEnd(ns))
	}
	return b
}()

// namespaceSpans is pebble's span policy: the default policy everywhere,
// with a span ending at the next namespace bound, so that no table spans
// two namespaces.
func namespaceSpans(start []byte) (pebble.SpanPolicy, []byte, error) {
	for _, b := range nsBounds {
		if bytes.Compare(b, start) > 0 {
			return pebble.SpanPolicy{}, b, nil
		}
	}
	return pebble.SpanPolicy{}, nil, nil
}

// OpenLevelDB opens a store in a leveldb database at path (synced writes,
// atomic batches).
func OpenLevelDB(path string, opts Options) (*Store, error) {
	d, err := leveldb.NewDatastore(path, nil)
	if err != nil {
		return nil, fmt.Errorf("state: open leveldb %s: %w", path, err)
	}
	return openOwned(d, opts)
}

// openOwned opens a store on a datastore it owns (closed with the store,
// or at once if opening fails) whose batches are atomic.
func openOwned(d interface {
	ds.Batching
	io.Closer
}, opts Options) (*Store, error) {
	opts.AtomicBatches = true
	s, err := Open(context.Background(), d, opts)
	if err != nil {
		d.Close()
		return nil, err
	}
	s.closer = d
	return s, nil
}

// Close waits for a CommitAsync write in flight, then closes the datastore
// if the store opened it. Views must be closed first.
// A version whose pipelined write (CommitAsync) failed and whose wait was
// not called reports its error here.
func (s *Store) Close() error {
	s.commitMu.Lock()
	err := s.drainLocked()
	// A Get after Close reads the closed datastore, as without the
	// cache, instead of answering from it; nothing is cached again.
	s.values.begin()
	s.values.clear()
	s.commitMu.Unlock()
	if s.closer != nil {
		err = errors.Join(err, s.closer.Close())
	}
	return err
}

// Pebble returns the pebble database under the store when OpenPebble
// opened it, else nil: for tools that compact or inspect it. Writing to it
// bypasses the store's invariants.
func (s *Store) Pebble() *pebble.DB { return s.pdb }

// Datastore returns the underlying datastore (for snapshot and test code
// that adds its own keys outside the /kairos/ namespaces used here).
func (s *Store) Datastore() ds.Batching { return s.d }

func (s *Store) initialize(ctx context.Context) error {
	b, err := s.d.Batch(ctx)
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		k ds.Key
		v []byte
	}{
		{rootKey(0), encodeRoot(slot{})},
		{keyMin, binary.AppendUvarint(nil, 0)},
		{keyPruneDone, binary.AppendUvarint(nil, 0)},
		{keyFormat, binary.AppendUvarint(nil, storeFormat)},
		{keyLatest, binary.AppendUvarint(nil, 0)},
	} {
		if err := b.Put(ctx, kv.k, kv.v); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	return s.d.Sync(ctx, ds.NewKey("/kairos"))
}

// checkFormat refuses a store of another on-disk format. A store of format
// 1 has no format record: its latest pointer is there, the record is not.
func (s *Store) checkFormat(ctx context.Context) error {
	f, ok, err := s.getUint(ctx, keyFormat)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no format record (format 1, nodes keyed by hash); this build reads format %d", ErrFormat, storeFormat)
	}
	if f != storeFormat {
		return fmt.Errorf("%w: format %d; this build reads format %d", ErrFormat, f, storeFormat)
	}
	return nil
}

// recover undoes a commit of latest+1 that did not finish: it restores the
// flat index from the change set's old values, deletes every node record
// under the version's key prefix (only that version writes there: records
// of older versions, which retained versions use, live under their own)
// and the history record of the version for each key it changed, and
// removes the version's root record and stale list.
func (s *Store) recover(ctx context.Context, latest uint64) error {
	next := latest + 1
	raw, err := s.d.Get(ctx, changesKey(next))
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cs, err := decodeChangeSet(raw)
	if err != nil {
		return err
	}
	b, err := s.d.Batch(ctx)
	if err != nil {
		return err
	}
	for _, c := range cs.Changes {
		// The torn version's module ids are kept (loadModules), so its
		// flat index entries are found by the keys it wrote them under. A
		// module with no id here had none when the version wrote (an id
		// is persisted with the first records naming it, and never
		// dropped), so that version wrote nothing of it to undo.
		k, ok := s.modules.kvKey(c.Key)
		switch {
		case !ok:
		case c.Old == nil:
			err = b.Delete(ctx, k)
		default:
			err = b.Put(ctx, k, c.Old)
		}
		if err != nil {
			return err
		}
	}
	torn, err := s.keysWithPrefix(ctx, nodeVersionPrefix(next))
	if err != nil {
		return err
	}
	for _, k := range torn {
		if err := b.Delete(ctx, ds.RawKey(k)); err != nil {
			return err
		}
	}
	// The version's history records are keyed by path: the change set
	// names every key it changed, a superset of those it wrote history for.
	for _, c := range cs.Changes {
		if err := b.Delete(ctx, histKey(types.KeyPath(c.Key), next)); err != nil {
			return err
		}
	}
	if err := b.Delete(ctx, staleKey(next)); err != nil {
		return err
	}
	if err := b.Delete(ctx, rootKey(next)); err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	// The change set goes last: while it exists, recovery can run again.
	if err := s.d.Sync(ctx, ds.NewKey("/kairos")); err != nil {
		return err
	}
	if err := s.d.Delete(ctx, changesKey(next)); err != nil {
		return err
	}
	return s.d.Sync(ctx, ds.NewKey("/kairos"))
}

// lockWriter takes the commit lock for one of the writers (Install, Seed,
// Replace), waits for a CommitAsync write in flight (its error is in
// s.failed), and returns the latest version and root, or the error that
// refuses every write after a failed one. The caller releases it with
// unlockWriter. Such a writer does not list the flat index keys it
// changes: it empties the value cache, which caches nothing until
// unlockWriter.
func (s *Store) lockWriter() (uint64, slot, error) {
	s.commitMu.Lock()
	_ = s.drainLocked() // a failure is in s.failed
	s.values.begin()
	s.values.clear()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, s.root, s.failed
}

// unlockWriter releases what lockWriter took.
func (s *Store) unlockWriter() {
	s.values.end()
	s.commitMu.Unlock()
}

// drainLocked waits for the write CommitAsync left in flight, if any; the
// caller holds commitMu. Its outcome is in s.latest or s.failed then.
func (s *Store) drainLocked() error {
	if s.inflight == nil {
		return nil
	}
	err := s.inflight.wait()
	s.inflight = nil
	return err
}

// fail records err as the failure that makes the store need reopening and
// returns it.
func (s *Store) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = err
	return err
}

// Latest returns the height and root of the last durable commit.
func (s *Store) Latest() (uint64, types.Root) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest, types.Root(s.root.h)
}

// Get returns the latest value of k from the flat index, or nil if k is
// absent. The returned slice belongs to the caller.
func (s *Store) Get(ctx context.Context, k types.StateKey) ([]byte, error) {
	if err := checkKeyLen(k); err != nil {
		return nil, err
	}
	if s.pdb != nil {
		// One pebble Get, with the key's bytes handed over without the
		// copy go-ds-pebble makes, unless the value cache has the value.
		kk, ok := s.modules.kvKey(k)
		if !ok {
			return nil, nil
		}
		h := s.values.hash(kk.String())
		if v, ok := s.values.get(kk.String(), h); ok {
			return v, nil
		}
		t := s.values.ticket()
		v, closer, err := s.pdb.Get(keyBytes(kk))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		s.values.put(kk.String(), h, v, t)
		return bytes.Clone(v), nil
	}
	kk, ok := s.modules.kvKey(k)
	if !ok {
		return nil, nil
	}
	v, err := s.d.Get(ctx, kk)
	if errors.Is(err, ds.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// Iterate calls fn for every key of module that starts with prefix, in key
// byte order, with its latest value, until fn returns an error (which
// Iterate returns). On pebble and leveldb the iteration reads one
// consistent snapshot; fn must not keep the slices.
func (s *Store) Iterate(ctx context.Context, module types.Address, prefix []byte, fn func(key, value []byte) error) error {
	// A module's segment never changes once it has entries (ids are
	// never dropped and a full table stays full), so the two calls agree.
	mp, ok := s.modules.kvModulePrefix(module)
	if !ok {
		return nil
	}
	want, _ := s.modules.kvKey(types.StateKey{Module: module, Key: prefix})
	res, err := s.d.Query(ctx, query.Query{Prefix: mp, Orders: []query.Order{query.OrderByKey{}}})
	if err != nil {
		return err
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		if !strings.HasPrefix(r.Key, want.String()) {
			continue
		}
		k, err := s.modules.parseKVKey(r.Key)
		if err != nil {
			return err
		}
		if err := fn(k.Key, r.Value); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) getUint(ctx context.Context, k ds.Key) (uint64, bool, error) {
	b, err := s.d.Get(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, n := uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, false, fmt.Errorf("%w: bad counter %s", ErrCorrupt, k)
	}
	return v, true, nil
}

func (s *Store) rootAt(ctx context.Context, h uint64) (slot, error) {
	b, err := s.d.Get(ctx, rootKey(h))
	if errors.Is(err, ds.ErrNotFound) {
		return slot{}, fmt.Errorf("%w: no root record for version %d", ErrCorrupt, h)
	}
	if err != nil {
		return slot{}, err
	}
	return decodeRoot(b)
}

// loadNode returns node r from the cache or the datastore.
func (s *Store) loadNode(ctx context.Context, r nodeRef) (*node, error) {
	if n := s.cache.get(r); n != nil {
		return n, nil
	}
	return s.readNode(ctx, r)
}

// readNode reads node r from the datastore and caches it.
func (s *Store) readNode(ctx context.Context, r nodeRef) (*node, error) {
	b, err := s.d.Get(ctx, nodeKey(r.born, r.id))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, fmt.Errorf("%w: missing node %s (born %d)", ErrCorrupt, r.id, r.born)
	}
	if err != nil {
		return nil, err
	}
	n, err := decodeNode(b, r, s.modules)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", r.id, err)
	}
	s.cache.put(n)
	return n, nil
}

// keysWithPrefix lists the keys under prefix.
func (s *Store) keysWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	res, err := s.d.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	entries, err := res.Rest()
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	return keys, nil
}

// iterateIndex calls fn for every entry of the flat index, in no particular
// order.
func (s *Store) iterateIndex(ctx context.Context, fn func(k types.StateKey, v []byte) error) error {
	res, err := s.d.Query(ctx, query.Query{Prefix: strings.TrimSuffix(nsKV, "/")})
	if err != nil {
		return err
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		k, err := s.modules.parseKVKey(r.Key)
		if err != nil {
			return err
		}
		if err := fn(k, r.Value); err != nil {
			return err
		}
	}
	return nil
}
