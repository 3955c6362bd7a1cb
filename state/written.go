package state

import (
	"encoding/binary"
	"math/bits"

	"github.com/kairos-network/kairos/types"
)

// WrittenFiltersBytesMax bounds the memory of the written-id filters (see
// writtenFilters). Past it the oldest filters are dropped and Prune falls
// back to reading each stale record's born for those versions.
const WrittenFiltersBytesMax = 64 << 20

// Bloom filter shape: bits per id and probes per id. With 16 bits and 6
// probes the false-positive rate is about 0.1% per filter; a false positive
// only costs the pruner one point read.
const (
	writtenBitsPerID = 16
	writtenProbes    = 6
)

// writtenFilter is a Bloom filter of the record ids one version wrote. Ids
// are SHA-256 digests, so their own bytes serve as the probe positions. A
// crafted id can at worst collide in the filter, which costs a read, never
// a wrong delete: the filter has no false negatives.
type writtenFilter struct {
	words []uint64
	mask  uint32
}

func newWrittenFilter(ids int) *writtenFilter {
	n := max(64, ids*writtenBitsPerID)
	size := uint32(1) << bits.Len32(uint32(n-1)) // power of two >= n
	return &writtenFilter{words: make([]uint64, size/64), mask: size - 1}
}

func (f *writtenFilter) add(id *types.Hash) {
	for i := 0; i < writtenProbes; i++ {
		b := binary.LittleEndian.Uint32(id[4*i:]) & f.mask
		f.words[b/64] |= 1 << (b % 64)
	}
}

func (f *writtenFilter) mayHave(id *types.Hash) bool {
	for i := 0; i < writtenProbes; i++ {
		b := binary.LittleEndian.Uint32(id[4*i:]) & f.mask
		if f.words[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

func (f *writtenFilter) bytes() int { return 8 * len(f.words) }

// writtenFilters replaces most of the pruner's born check. A stale record
// may be deleted only if no version at or after its stale_since wrote it
// again; its stored born answers that with a point read per entry, which
// was a third of the CPU of commit+prune. Each version this process writes
// registers a filter of the ids it writes, before its batch; when every
// version from stale_since to the newest has a filter and none may hold the
// id, the born check is certain without reading. Otherwise (versions
// written before Open, dropped filters, a filter's false positive) the
// pruner reads the born as before. Guarded by Store.writeMu.
type writtenFilters struct {
	byHeight map[uint64]*writtenFilter
	top      uint64 // highest height registered
	size     int    // bytes held
	maxBytes int    // 0: WrittenFiltersBytesMax (tests set less)
}

// add registers the ids version h writes. Filters are in memory only:
// after a restart the versions written before it have none.
func (w *writtenFilters) add(h uint64, o *out) {
	f := newWrittenFilter(len(o.records))
	for i := range o.records {
		f.add(&o.records[i].id)
	}
	if w.byHeight == nil {
		w.byHeight = map[uint64]*writtenFilter{}
	}
	if old := w.byHeight[h]; old != nil {
		w.size -= old.bytes()
	}
	w.byHeight[h] = f
	w.size += f.bytes()
	w.top = max(w.top, h)
	limit := w.maxBytes
	if limit == 0 {
		limit = WrittenFiltersBytesMax
	}
	for w.size > limit && len(w.byHeight) > 1 {
		w.dropBelow(w.lowest() + 1)
	}
}

func (w *writtenFilters) lowest() uint64 {
	low := w.top
	for h := range w.byHeight {
		low = min(low, h)
	}
	return low
}

// dropBelow forgets the filters of versions below h: the pruner is done
// with them.
func (w *writtenFilters) dropBelow(h uint64) {
	for v, f := range w.byHeight {
		if v < h {
			w.size -= f.bytes()
			delete(w.byHeight, v)
		}
	}
}

// covering returns the filters of versions since..latest, or nil if one of
// them has none.
func (w *writtenFilters) covering(since, latest uint64) []*writtenFilter {
	latest = max(latest, w.top)
	if since > latest {
		return nil
	}
	fs := make([]*writtenFilter, 0, latest-since+1)
	for v := since; v <= latest; v++ {
		f := w.byHeight[v]
		if f == nil {
			return nil
		}
		fs = append(fs, f)
	}
	return fs
}

// notRewritten reports whether none of fs may hold id: then no version from
// stale_since on wrote it and its stored born is older than stale_since.
func notRewritten(fs []*writtenFilter, id *types.Hash) bool {
	if fs == nil {
		return false
	}
	for _, f := range fs {
		if f.mayHave(id) {
			return false
		}
	}
	return true
}
