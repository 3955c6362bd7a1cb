package host

import (
	"bytes"
	"slices"

	"github.com/kairos-network/kairos/types"
)

// writeScanMax is how many entries a frame's write buffer holds before it
// builds an index: up to it a linear scan is cheaper than hashing a
// module ‖ key string (a transfer writes 2 keys); beyond it the index keeps
// each put and lookup O(1), so a guest's host CPU per write stays bounded
// by the gas it pays however many keys it writes.
const writeScanMax = 16

// Retention limits of a pooled run: a run that grew its arena or a write
// buffer beyond them (a transaction with large writes) drops them instead
// of keeping them in the pool for the next one.
const (
	arenaKeepMax  = 64 << 10
	writesKeepMax = 256
)

// change is one buffered write. key and val alias the run's arena, which
// is only appended to while the run lasts, so they stay valid until the
// run is released; whatever leaves Run is copied out (sortedWrites).
type change struct {
	module  types.Address
	key     []byte
	val     []byte // nil when deleted
	deleted bool
}

// writeSet is a frame's write buffer: changes in first-write order, each
// (module, key) once, indexed by string(module ‖ key) once it holds more
// than writeScanMax.
type writeSet struct {
	ents []change
	idx  map[string]int
}

// find returns the index of module/key in s, or -1. kbuf is scratch for
// the index key.
func (s *writeSet) find(module *types.Address, key []byte, kbuf *[]byte) int {
	if s.idx != nil {
		*kbuf = append(append((*kbuf)[:0], module[:]...), key...)
		if i, ok := s.idx[string(*kbuf)]; ok {
			return i
		}
		return -1
	}
	for i := range s.ents {
		if e := &s.ents[i]; e.module == *module && string(e.key) == string(key) {
			return i
		}
	}
	return -1
}

// add appends c, whose key must not be in s yet.
func (s *writeSet) add(c *change) {
	*s.grow() = *c
	s.indexLast()
}

// grow appends a zero change and returns it, to be filled in place, then
// indexed (indexLast). Filled in place, not appended from a value: a
// change built on the stack and copied in (88 bytes) was read back while
// its fields' stores were still in flight, a store-forwarding stall per
// write.
func (s *writeSet) grow() *change {
	s.ents = append(s.ents, change{})
	return &s.ents[len(s.ents)-1]
}

// indexLast indexes the change grow returned last, once it is filled.
func (s *writeSet) indexLast() {
	switch c := &s.ents[len(s.ents)-1]; {
	case s.idx != nil:
		s.idx[string(c.module[:])+string(c.key)] = len(s.ents) - 1
	case len(s.ents) > writeScanMax:
		s.idx = make(map[string]int, 2*len(s.ents))
		for i, e := range s.ents {
			s.idx[string(e.module[:])+string(e.key)] = i
		}
	}
}

// reset empties s for the next frame, keeping a small backing array.
func (s *writeSet) reset() {
	clear(s.ents)
	s.ents = s.ents[:0]
	if cap(s.ents) > writesKeepMax {
		s.ents = nil
	}
	s.idx = nil
}

// keep copies b to the run's arena and returns the copy (nil for nil b),
// capped so that no later append can write into it.
func (r *run) keep(b []byte) []byte {
	if b == nil {
		return nil
	}
	n := len(r.arena)
	r.arena = append(r.arena, b...)
	return r.arena[n:len(r.arena):len(r.arena)]
}

// put buffers a write of this frame's module; key and val alias guest
// memory and are copied (val is nil for a delete).
func (f *frame) put(key, val []byte, deleted bool) {
	r := f.run
	if i := f.writes.find(&f.self, key, &r.kbuf); i >= 0 {
		f.writes.ents[i].val, f.writes.ents[i].deleted = r.keep(val), deleted
		return
	}
	c := f.writes.grow()
	c.module, c.key, c.val, c.deleted = f.self, r.keep(key), r.keep(val), deleted
	f.writes.indexLast()
}

// merge takes over the writes of a callee that ended normally.
func (f *frame) merge(callee *frame) {
	for i := range callee.writes.ents {
		c := &callee.writes.ents[i]
		if j := f.writes.find(&c.module, c.key, &f.run.kbuf); j >= 0 {
			f.writes.ents[j] = *c
		} else {
			f.writes.add(c)
		}
	}
}

// lookup reads a key through the write buffers of the frames on the stack,
// newest first, then State. It stops the frame on a State error.
func (f *frame) lookup(key []byte) ([]byte, bool) {
	r := f.run
	for i := len(r.frames) - 1; i >= 0; i-- {
		ws := &r.frames[i].writes
		if j := ws.find(&f.self, key, &r.kbuf); j >= 0 {
			return ws.ents[j].val, !ws.ents[j].deleted
		}
	}
	v, ok, err := r.tx.State.Get(f.self, key)
	if err != nil {
		f.nodeError(err)
	}
	return v, ok
}

// pending is a snapshot of the buffered writes of this frame's module
// under prefix, sorted by key, newest frame winning.
func (f *frame) pending(prefix []byte) []kv {
	var out []kv
	for i := len(f.run.frames) - 1; i >= 0; i-- {
		for _, c := range f.run.frames[i].writes.ents {
			if c.module == f.self && bytes.HasPrefix(c.key, prefix) {
				out = append(out, kv{key: c.key, val: c.val, deleted: c.deleted})
			}
		}
	}
	// Stable: of equal keys the newest frame's, collected first, stays
	// first and is the one kept.
	slices.SortStableFunc(out, func(a, b kv) int { return bytes.Compare(a.key, b.key) })
	return slices.CompactFunc(out, func(a, b kv) bool { return bytes.Equal(a.key, b.key) })
}

// sortedWrites is the frame's write buffer in module, key order, copied
// out of the run's arena into one allocation owned by the Result.
//
// The order is found first, on indexes, and every Write is stored once in
// its place: sorting the Writes themselves moved 88-byte structs with
// pointers (a write barrier each while the collector runs) and cost as
// much as the rest of the copy.
func (f *frame) sortedWrites() []Write {
	ents := f.writes.ents
	if len(ents) == 0 {
		return []Write{}
	}
	n := 0
	for _, c := range ents {
		n += len(c.key) + len(c.val)
	}
	var small [writeScanMax]int32
	order := small[:0]
	if len(ents) > len(small) {
		order = make([]int32, 0, len(ents))
	}
	for i := range ents {
		order = append(order, int32(i))
	}
	byKey := func(a, b int32) int {
		x, y := &ents[a], &ents[b]
		if x.module != y.module { // a transaction mostly writes its own module's keys
			return bytes.Compare(x.module[:], y.module[:])
		}
		return bytes.Compare(x.key, y.key)
	}
	if len(order) <= len(small) {
		// Insertion sort: a buffer this small is the common case (a
		// transfer writes 2 keys), and it costs one comparison per entry
		// when already in order, without slices.SortFunc's calls.
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && byKey(order[j], order[j-1]) < 0; j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
	} else if !slices.IsSortedFunc(order, byKey) {
		slices.SortFunc(order, byKey)
	}
	a := f.run.tx.Arena
	// The keys go to a chunk of their own, one run per Result, so that
	// Release can take them back (see Arena.Release); the values stay.
	nk := 0
	for _, c := range ents {
		nk += len(c.key)
	}
	keys := a.keyBytes(nk)[:0]
	vals := a.bytes(n - nk)[:0]
	out := a.writes(len(ents))
	for i, j := range order {
		// Field by field into place (see writeSet.grow): out[i] is zero.
		c, w := &ents[j], &out[i]
		k := len(keys)
		keys = append(keys, c.key...)
		w.Module, w.Key, w.Deleted = c.module, keys[k:len(keys):len(keys)], c.deleted
		if !c.deleted {
			v := len(vals)
			vals = append(vals, c.val...)
			w.Value = vals[v:len(vals):len(vals)]
		}
	}
	return out
}

// Arena hands out the memory Results own from chunks: a transfer's host
// path allocated its write set's bytes and array and its event's data and
// array, four allocations per transaction, each a small object for the
// collector. Memory it handed out is never handed out again unless given
// back (Release), so a Result stays valid however long it is held (and
// holds its chunks). The zero value is ready; a nil *Arena allocates each
// copy on its own. An Arena is used by one transaction at a time.
type Arena struct {
	b []byte
	k []byte // the Writes' keys (see Release)
	w []Write
	e []types.Event
}

// Chunk sizes of an Arena; a request over a quarter of a chunk gets an
// allocation of its own, so a chunk wastes at most a quarter.
const (
	arenaBytesChunk  = 32 << 10
	arenaWritesChunk = 256
	arenaEventsChunk = 256
)

// carve returns n elements from *chunk (len n, capacity n: an append to
// them copies), starting a new chunk of size when it has too few left.
func carve[T any](chunk *[]T, n, size int) []T {
	if n == 0 {
		return make([]T, 0) // not nil, as an allocation's: no memory either
	}
	if n > size/4 {
		return make([]T, n)
	}
	if cap(*chunk)-len(*chunk) < n {
		*chunk = make([]T, 0, size)
	}
	from := len(*chunk)
	*chunk = (*chunk)[:from+n]
	return (*chunk)[from : from+n : from+n]
}

func (a *Arena) bytes(n int) []byte {
	if a == nil {
		return make([]byte, n)
	}
	return carve(&a.b, n, arenaBytesChunk)
}

func (a *Arena) keyBytes(n int) []byte {
	if a == nil {
		return make([]byte, n)
	}
	return carve(&a.k, n, arenaBytesChunk)
}

// Release hands ws, the Writes of the arena's last Result, back with
// their keys, which the caller must not use again: the next Results
// reuse their memory. The values stay the caller's. An executor that
// copies each write into state of its own right away (exec.WasmRunner)
// then allocates the arrays and keys once per chunk instead of once per
// transaction: ~1.3 MB of a 5 000-transfer block, a quarter of it. ws
// from any other carve, or from an allocation of its own, is left alone.
func (a *Arena) Release(ws []Write) {
	if a == nil || len(ws) == 0 {
		return
	}
	// The keys are one run in Write order (sortedWrites): the tail of a.k
	// if they were carved last.
	var first *byte
	nk := 0
	for _, w := range ws {
		if first == nil && len(w.Key) > 0 {
			first = &w.Key[0]
		}
		nk += len(w.Key)
	}
	if n := len(a.k); first != nil && n >= nk && &a.k[n-nk] == first {
		a.k = a.k[:n-nk]
	}
	if n := len(a.w); n >= len(ws) && &a.w[n-len(ws)] == &ws[0] {
		clear(ws) // holds no value's chunk for the collector
		a.w = a.w[:n-len(ws)]
	}
}

func (a *Arena) writes(n int) []Write {
	if a == nil {
		return make([]Write, n)
	}
	return carve(&a.w, n, arenaWritesChunk)
}

// appendEvent appends a zero event to events, with the array from the
// arena when it grows, and returns the new slice and its last element,
// for the caller to fill in place (see writeSet.grow).
func (a *Arena) appendEvent(events []types.Event) ([]types.Event, *types.Event) {
	if a != nil && len(events) == cap(events) {
		grown := carve(&a.e, max(1, 2*len(events)), arenaEventsChunk)
		events = grown[:copy(grown, events)]
	}
	events = append(events, types.Event{})
	return events, &events[len(events)-1]
}
