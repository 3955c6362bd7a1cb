package state

import (
	"context"
	"hash/maphash"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/kairos-network/kairos/types"
)

// latestIndex is a second copy of an in-memory store's flat index that
// GetMany reads without building datastore keys. The datastore's map holds
// every record of the store keyed by ~80-byte escaped strings, and GetMany
// spent about half of a block's prefetch building and escaping those keys
// (RATIONALE.md, "Why does GetMany read an in-memory store through an
// index of its own …"). This is an open-addressing table (linear probing)
// keyed by a seeded 64-bit hash of the state key, whose slots hold the
// hash, the key and the value. A lookup hashes the raw key (no escaping,
// about half the bytes) and compares it with the slot's, so a hash
// collision costs a probe, never a wrong value. The values are the
// datastore's own arrays (the copies of a commit's values versionBatch
// gives the in-memory datastore, never the caller's buffers, which it may
// reuse once its wait returned), not copies of them: copies in the
// table's order made a block's execution read its values scattered over
// the heap instead of where the commit left them (native token, execution
// 4.6 → 6.3 ms).
//
// Exactness: the index holds the flat index of the version whose root hash
// is root. The root hash is a function of the version's (key, value)
// pairs, so the index is used only while it equals the store's latest
// root: Commit applies its change set here after its batch is written
// (apply), and any other writer (Install, Seed, Replace) changes the latest root
// without telling the index, which then stands aside until a GetMany
// rebuilds it from the datastore while no writer holds the commit lock.
//
// The seed is random per index: it decides where keys land in the table,
// never what a lookup returns, and keeps a guest from choosing keys that
// collide on purpose.
type latestIndex struct {
	mu     sync.RWMutex
	built  bool
	root   types.Hash   // the latest root whose flat index the table holds
	seed   maphash.Seed // set on the first build
	seeded bool
	mask   uint64       // len(slots)-1
	slots  []latestSlot // a power of two long, at most half full
	n      int          // occupied slots
	// hashMask is ANDed into every hash: all ones, except in tests that
	// force collisions.
	hashMask uint64
}

// latestSlot is one entry of the table: tag is the key's hash with its
// lowest bit set (0: empty), key the module and the key (klen bytes), val
// the value (vlen bytes; nil for a nil value). 32 bytes, so two slots
// fill a cache line and none straddles two: with a string and a slice
// (48 bytes) half of them did, and the value's header of such a slot was a
// cache miss of its own after the tag's (see lookup), in a table a third
// larger.
type latestSlot struct {
	tag  uint64
	key  unsafe.Pointer
	val  unsafe.Pointer
	klen uint32
	vlen uint32
}

// The lengths fit a slot's uint32s.
var _ = [1]struct{}{}[uint64(types.AddressLen+types.StateKeyMax+types.StateValueMax)>>32]

func newLatestSlot(tag uint64, key string, v []byte) latestSlot {
	return latestSlot{tag: tag, key: unsafe.Pointer(unsafe.StringData(key)), klen: uint32(len(key)), val: unsafe.Pointer(unsafe.SliceData(v)), vlen: uint32(len(v))}
}

// keyString returns the slot's key (module ‖ key).
func (s *latestSlot) keyString() string { return unsafe.String((*byte)(s.key), s.klen) }

// value returns the slot's value: the array put holds, nil for nil.
func (s *latestSlot) value() []byte {
	if s.val == nil {
		return nil
	}
	return unsafe.Slice((*byte)(s.val), s.vlen)
}

func (s *latestSlot) setValue(v []byte) {
	s.val, s.vlen = unsafe.Pointer(unsafe.SliceData(v)), uint32(len(v))
}

// latestMinSlots is the smallest table.
const latestMinSlots = 64

// tagOf returns the tag of a key with hash h.
func (x *latestIndex) tagOf(h uint64) uint64 { return (h & x.hashMask) | 1 }

// home returns the slot where the probe for a tag starts.
func (x *latestIndex) home(tag uint64) uint64 { return (tag >> 1) & x.mask }

// moduleHash is the module's share of a key's hash, computed once per run
// of keys of one module.
func (x *latestIndex) moduleHash(m types.Address) uint64 {
	return bits.RotateLeft64(maphash.Comparable(x.seed, m), 17)
}

// hash returns the hash of a key of the module whose moduleHash is mh.
func (x *latestIndex) hash(mh uint64, key []byte) uint64 {
	return maphash.Bytes(x.seed, key) ^ mh
}

// keyIs reports whether s is the key (module, key).
func keyIs(s string, module *types.Address, key []byte) bool {
	return len(s) == types.AddressLen+len(key) &&
		s[:types.AddressLen] == string(module[:]) && s[types.AddressLen:] == string(key)
}

// find returns the index of the slot holding (module, key), whose tag is
// tag, or -1.
func (x *latestIndex) find(tag uint64, module *types.Address, key []byte) int {
	for i := x.home(tag); ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.tag == 0 {
			return -1
		}
		if s.tag == tag && keyIs(s.keyString(), module, key) {
			return int(i)
		}
	}
}

// put sets k to v, which is not copied: the datastore holds the same
// array (a nil v too: the caller deletes instead).
func (x *latestIndex) put(k types.StateKey, v []byte) {
	x.putTag(x.tagOf(x.hash(x.moduleHash(k.Module), k.Key)), k, v)
}

func (x *latestIndex) putTag(tag uint64, k types.StateKey, v []byte) {
	if i := x.find(tag, &k.Module, k.Key); i >= 0 {
		x.slots[i].setValue(v)
		return
	}
	if 2*(x.n+1) > len(x.slots) {
		x.resize(2 * len(x.slots))
	}
	x.insert(newLatestSlot(tag, string(k.Module[:])+string(k.Key), v))
	x.n++
}

// insert puts s into the first empty slot of its probe; its key is not in
// the table.
func (x *latestIndex) insert(s latestSlot) {
	i := x.home(s.tag)
	for x.slots[i].tag != 0 {
		i = (i + 1) & x.mask
	}
	x.slots[i] = s
}

// del removes k if it is there, shifting later slots of the probe back
// (no tombstones, so a probe still ends at the first empty slot).
func (x *latestIndex) del(k types.StateKey) {
	x.delTag(x.tagOf(x.hash(x.moduleHash(k.Module), k.Key)), k)
}

func (x *latestIndex) delTag(tag uint64, k types.StateKey) {
	f := x.find(tag, &k.Module, k.Key)
	if f < 0 {
		return
	}
	x.n--
	i := uint64(f)
	for j := (i + 1) & x.mask; ; j = (j + 1) & x.mask {
		if x.slots[j].tag == 0 {
			break
		}
		// The slot at j may move to i unless its home lies cyclically
		// in (i, j]: then its probe never passes i.
		h := x.home(x.slots[j].tag)
		if (i < j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = latestSlot{}
}

// resize moves the entries into a table of n slots.
func (x *latestIndex) resize(n int) {
	old := x.slots
	x.slots, x.mask = make([]latestSlot, n), uint64(n-1)
	for _, s := range old {
		if s.tag != 0 {
			x.insert(s)
		}
	}
}

// apply brings the index from the flat index of root old to that of new
// by a commit's changes (Commit calls it after its batch is written). An
// index that does not hold old stays aside.
func (x *latestIndex) apply(old, new types.Hash, changes []Change) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built || x.root != old {
		x.built, x.slots, x.n = false, nil, 0 // rebuilt when read; drop the table meanwhile
		return
	}
	for _, c := range changes {
		if c.New == nil {
			x.del(c.Key)
		} else {
			x.put(c.Key, c.New)
		}
	}
	x.root = new
}

// build fills the index from the store's flat index. The caller holds the
// commit lock and no pipelined write is in flight (Store.writing), so no
// writer changes the flat index or the latest root meanwhile.
func (x *latestIndex) build(ctx context.Context, s *Store) error {
	s.mu.Lock()
	root := s.root.h
	s.mu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.seeded {
		x.seed, x.seeded = maphash.MakeSeed(), true
		if x.hashMask == 0 {
			x.hashMask = ^uint64(0)
		}
	}
	x.built, x.n = false, 0
	x.slots, x.mask = make([]latestSlot, latestMinSlots), latestMinSlots-1
	if err := s.iterateIndex(ctx, func(k types.StateKey, v []byte) error {
		x.put(k, v)
		return nil
	}); err != nil {
		x.slots = nil
		return err
	}
	x.built, x.root = true, root
	return nil
}

// getMany reads keys from the index while it holds the store's latest
// flat index, getManyLockMax keys per hold of its read lock, appending to
// dst; it returns the keys it did not read (all of them when the index
// stands aside and cannot be rebuilt now). An over-long key stops it with
// ErrKeyTooLong after the keys before it are read. kb holds the run's
// hashes and candidate slots.
func (x *latestIndex) getMany(ctx context.Context, s *Store, kb *keyBuf, keys []types.StateKey, dst [][]byte) ([]types.StateKey, [][]byte, error) {
	for len(keys) > 0 {
		s.mu.Lock()
		root, failed := s.root.h, s.failed
		s.mu.Unlock()
		if failed != nil {
			// A write failed midway: Get reads what the datastore holds
			// now, and so does GetMany, until a reopen recovers.
			return keys, dst, nil
		}
		x.mu.RLock()
		if !x.built || x.root != root {
			x.mu.RUnlock()
			// Rebuild only while no writer holds the commit lock and no
			// CommitAsync write is in flight (it applies its change set
			// once written): build reads the flat index as the latest
			// root's.
			if !s.commitMu.TryLock() {
				return keys, dst, nil
			}
			if s.writing() {
				s.commitMu.Unlock()
				return keys, dst, nil
			}
			err := x.build(ctx, s)
			s.commitMu.Unlock()
			if err != nil {
				return keys, dst, err
			}
			continue
		}
		run := keys[:min(len(keys), getManyLockMax)]
		var n int
		dst, n = x.lookup(kb, run, dst)
		x.mu.RUnlock()
		keys = keys[n:]
		if n < len(run) {
			return keys, dst, checkKeyLen(keys[0])
		}
	}
	return keys, dst, nil
}

// lookup appends the values of keys to dst. The table and the keys are
// mostly out of the caches when a block's prefetch reads them, and one
// lookup's two reads (slot, then key) wait for memory one after the
// other; so it goes in passes over the keys: hash each, touch each one's
// home slot, find each one's first slot with its tag and touch that key
// (its first and last bytes: it spans two cache lines), then compare the
// keys and take the values. The touches of one
// pass do not depend on each other, so the CPU has many of them in flight
// at once, and the last pass finds what it reads in the caches. It stops
// before the first key over types.StateKeyMax and returns how many keys
// it read.
func (x *latestIndex) lookup(kb *keyBuf, keys []types.StateKey, dst [][]byte) ([][]byte, int) {
	var mh uint64
	var mod types.Address
	tags := kb.tags[:0]
	var touch uint64
	for i := range keys {
		k := &keys[i]
		if len(k.Key) > types.StateKeyMax {
			keys = keys[:i] // the keys before it are read
			break
		}
		if i == 0 || k.Module != mod {
			mh, mod = x.moduleHash(k.Module), k.Module
		}
		tags = append(tags, x.tagOf(x.hash(mh, k.Key)))
	}
	// The home slots' touches in a loop of their own: between two of
	// them there is a load and an add, not a hash of ~33 bytes, so the
	// CPU has many more misses in flight than when they were interleaved
	// with the hashing.
	for _, tag := range tags {
		touch += x.slots[x.home(tag)].tag
	}
	cand := kb.cand[:0]
	for _, tag := range tags {
		i := x.home(tag)
		for x.slots[i].tag != tag && x.slots[i].tag != 0 {
			i = (i + 1) & x.mask
		}
		cand = append(cand, uint32(i))
		if sl := &x.slots[i]; sl.tag != 0 {
			// Both ends: a module and a key are longer than a cache
			// line, and the compare below reads all of it.
			touch += uint64(*(*byte)(sl.key)) + uint64(*(*byte)(unsafe.Add(sl.key, sl.klen-1)))
		}
	}
	for j := range keys {
		k := &keys[j]
		// Continue the probe from the candidate: the slots before it
		// on the probe hold other tags.
		var v []byte
		for i := uint64(cand[j]); x.slots[i].tag != 0; i = (i + 1) & x.mask {
			if sl := &x.slots[i]; sl.tag == tags[j] && keyIs(sl.keyString(), &k.Module, k.Key) {
				v = sl.value()
				break
			}
		}
		dst = append(dst, v)
	}
	kb.tags, kb.cand, kb.touch = tags, cand, touch
	return dst, len(keys)
}
