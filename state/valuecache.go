package state

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// DefaultValueCacheBytes bounds the latest values Get keeps on pebble
// (Options.ValueCacheBytes).
const DefaultValueCacheBytes = 16 << 20

// valueCacheShards is how many independently locked parts the value cache
// has: Get may run on every core at once.
const valueCacheShards = 16

// valueCacheSeen is how many key hashes the cache's admission filter
// remembers (8 bytes each).
const valueCacheSeen = 1 << 16

// valueCacheEntryOverhead is what an entry costs beyond its key and value
// bytes (map slot, string and slice headers, the value's allocation).
const valueCacheEntryOverhead = 64

// valueCache keeps the latest values of flat index keys that Get read from
// pebble, so that a key read again is a map lookup instead of a pebble Get.
// A pebble Get walks every memtable, L0 sublevel and level until it finds
// the key, building an iterator for each (a file cache lookup, a bloom
// filter check, an index and a data block from the block cache): ~1 µs
// per level on this project's machines and 5–6 µs per warm read at 1M keys
// after commits (RATIONALE.md, "Why does Get keep the latest values it
// read"). IAVL's fast storage, the reference of state.md's target, has a
// cache of the same kind in front of its database.
//
// Exactness: an entry is always the flat index's value of its key, except
// while a write of the flat index is under way (begin … end), and then only
// for keys that write does not change. A writer calls begin before it
// writes, forgets the keys it changes (or clears the cache when it does
// not know them) and calls end once its write is visible in pebble. A
// reader takes a ticket (the generation) before it reads pebble and inserts
// what it read only if no write is under way and none began or ended since
// the ticket: then the write before its read was visible when it read, and
// no write came after it. The check and the insert hold the shard's lock,
// and a writer forgets a key under the same lock after begin, so an insert
// that passed the check before begin is forgotten after it. Reads during a
// write see the old or the new value, as a pebble Get would: hits are only
// for keys the write does not change, and nothing is inserted until end.
//
// A writer that goes around the store does not tell the cache: NewImporter
// discarding an unfinished install's entries from a store at version 0,
// which must not serve reads then anyway (see Install), or a test writing
// the datastore directly.
//
// The cache holds values, never what a root or a proof is computed from:
// which keys it holds (eviction follows map order) changes no value read.
type valueCache struct {
	max     int           // bytes per shard; 0: off
	gen     atomic.Uint64 // bumped by begin and end
	writers atomic.Int32  // writes under way
	n       atomic.Int64  // entries, so that a write skips forgetting in an empty cache
	seed    maphash.Seed
	shards  [valueCacheShards]valueShard
	// seen admits a key on its second miss: each slot holds the hash of
	// the last key that missed there. A read of a key read once (most of
	// 100k scattered first reads at 1M keys) then costs a hash and a
	// store, not an insert that evicts another entry: inserting every
	// miss added ~1 µs to such reads (a map insert and an allocation
	// into a cache larger than the processor's).
	seen [valueCacheSeen]atomic.Uint64
}

type valueShard struct {
	mu    sync.Mutex
	m     map[string][]byte
	bytes int
	hits  uint64   // Gets answered from the shard (tests), under mu
	_     [32]byte // a shard's lock on a cache line of its own
}

func newValueCache(bytes int) *valueCache {
	c := &valueCache{max: max(0, bytes/valueCacheShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string][]byte{}
	}
	return c
}

// hash returns the hash that get and put take for key (0, and no hashing,
// when the cache is off: get and put then return at once).
func (c *valueCache) hash(key string) uint64 {
	if c.max == 0 {
		return 0
	}
	return maphash.String(c.seed, key) | 1
}

func (c *valueCache) shard(h uint64) *valueShard {
	return &c.shards[(h>>1)%valueCacheShards]
}

// get returns a copy of the cached value of key, whose hash is h (the
// caller owns it), or false.
func (c *valueCache) get(key string, h uint64) ([]byte, bool) {
	if c.max == 0 || c.n.Load() == 0 {
		return nil, false
	}
	sh := c.shard(h)
	sh.mu.Lock()
	v, ok := sh.m[key]
	if ok {
		sh.hits++
	}
	sh.mu.Unlock()
	if !ok {
		return nil, false
	}
	// Cached values are never written to, so the copy needs no lock.
	return append(make([]byte, 0, len(v)), v...), true
}

// hitCount returns how many Gets the cache answered (tests).
func (c *valueCache) hitCount() uint64 {
	var n uint64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.hits
		sh.mu.Unlock()
	}
	return n
}

// ticket returns the generation to hand to put after reading pebble; it is
// taken before the read.
func (c *valueCache) ticket() uint64 { return c.gen.Load() }

// put caches v (copied) as the value of key, whose hash is h, read from
// pebble after ticket t was taken, unless a write began or ended since or
// is under way, or key missed for the first time (seen).
func (c *valueCache) put(key string, h uint64, v []byte, t uint64) {
	if c.max == 0 {
		return
	}
	cost := len(key) + len(v) + valueCacheEntryOverhead
	if cost > c.max {
		return
	}
	if seen := &c.seen[(h>>17)%valueCacheSeen]; seen.Load() != h {
		seen.Store(h)
		return
	}
	own := append(make([]byte, 0, len(v)), v...)
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Counted before the check, and uncounted if it fails: a forget that
	// finds the cache empty and skips the shards then loaded n before
	// this increment, so its writer's begin came before the check below,
	// which sees it. Counted after the insert, a put that passed its check
	// just before a begin could insert the old value unseen by that
	// write's forget, and keep it after the write.
	c.n.Add(1)
	if c.writers.Load() != 0 || c.gen.Load() != t {
		c.n.Add(-1)
		return
	}
	if old, ok := sh.m[key]; ok {
		// Two readers missed it at once; the eviction below must not
		// meet it again.
		delete(sh.m, key)
		sh.bytes -= len(key) + len(old) + valueCacheEntryOverhead
		c.n.Add(-1)
	}
	if sh.bytes+cost > c.max {
		// Drop entries in map order down to three quarters: no list to
		// keep per hit, and a key dropped is only read from pebble again.
		for k, old := range sh.m {
			delete(sh.m, k)
			sh.bytes -= len(k) + len(old) + valueCacheEntryOverhead
			c.n.Add(-1)
			if sh.bytes+cost <= 3*c.max/4 {
				break
			}
		}
	}
	sh.m[key] = own
	sh.bytes += cost
}

// begin starts a write of the flat index: nothing is cached until end.
func (c *valueCache) begin() {
	c.writers.Add(1)
	c.gen.Add(1)
}

// end ends a write begun by begin, once it is visible in pebble.
func (c *valueCache) end() {
	c.gen.Add(1)
	c.writers.Add(-1)
}

// forget drops the cached values of the keys a commit changes; the caller
// has called begin.
func (c *valueCache) forget(mods *moduleTable, changes []Change) {
	if c.max == 0 || c.n.Load() == 0 {
		return
	}
	var buf []byte
	for i := range changes {
		var ok bool
		if buf, ok = mods.appendKVKey(buf[:0], changes[i].Key); !ok {
			continue // no entries of its module, so none cached
		}
		sh := c.shard(c.hash(string(buf)))
		sh.mu.Lock()
		if old, ok := sh.m[string(buf)]; ok {
			delete(sh.m, string(buf))
			sh.bytes -= len(buf) + len(old) + valueCacheEntryOverhead
			c.n.Add(-1)
		}
		sh.mu.Unlock()
	}
}

// clear drops every cached value: for writers that do not list the keys
// they change (install, Seed, Replace); the caller has called begin.
func (c *valueCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		c.n.Add(-int64(len(sh.m)))
		clear(sh.m)
		sh.bytes = 0
		sh.mu.Unlock()
	}
}
