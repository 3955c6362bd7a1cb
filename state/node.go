package state

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/kairos-network/kairos/types"
)

// fanout is the number of child slots of a physical node: one node stands
// for 4 binary levels of the tree.
const (
	fanout      = 16
	nibbleDepth = types.KeyPathDepth / 4
)

// tagNode is the first byte of every node record.
const tagNode = 'N'

type slotKind uint8

const (
	slotEmpty slotKind = iota
	slotLeaf
	slotChild
)

// slot is one child position of a node, or the root of a version. A leaf
// lives in its parent's slot as its state key and value hash (leaf, see
// leafData) and its leaf hash, which derives from them and is computed once
// when the slot is made (decodeNode, update): the hashing of a node reads
// every slot's hash, while the key and value hash are read when a value is
// (the flat index by key, the history by key path) and when the node is
// encoded. The key path is not kept: a walk compares keys, and the few
// places that need a leaf's key path (a write meeting another key's leaf, a
// proof of absence by it, an export, a history read) hash the key (keyPath). A slot is the
// working copy of a commit and of the walks; a node keeps its slots as
// entries, without the pointer (see entry). A leaf has no record of its
// own: its value is in the flat index while it is live, and in a history
// record of the version that replaced it after (see doc.go). A child is named by (born,
// id): born is the version that wrote the record, which its datastore key
// starts with, so a lookup is one Get.
type slot struct {
	kind slotKind
	// packed says leaf holds the leaf's data as a node's mem does: value
	// hash and key, its module named by mid. Only readers that may not
	// read a leaf take it packed (packedSlot: the proof walk's siblings),
	// and unpack it before they read it or hand it on (unpack); hashing
	// reads a node's entries, and a commit moves the leaves it does not
	// reach as its nodes' entries (patchSlots), not as slots.
	packed bool
	// mid is a leaf's module id in the store's table when it is known
	// (a leaf read from a node), else 0: packSlots then looks it up.
	mid  uint16
	born uint64     // child only: the version that wrote the node record
	h    types.Hash // leaf hash or child node id
	leaf string     // leaf only: leafData(value hash, key)
}

// leafData is a leaf's key and value hash as a slot holds them: value hash,
// module, then the key's bytes; it is also the leaf's encoding in a root
// record after a uvarint length of the key. A string, immutable, so that
// slots move between nodes without copies. A node keeps a leaf of a
// module with an id without the module (see entry.mod), and node.at puts
// it back.
func leafData(vh types.Hash, k types.StateKey) string {
	b := make([]byte, 0, leafFixed+len(k.Key))
	b = append(append(append(b, vh[:]...), k.Module[:]...), k.Key...)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// leafFixed is the length of leafData before the key's bytes.
const leafFixed = types.HashLen + types.AddressLen

// leafSlot returns the slot of the leaf with key path kp, value hash vh and
// key k.
func leafSlot(kp, vh types.Hash, k types.StateKey) slot {
	return slot{kind: slotLeaf, h: types.LeafHash(kp, vh), leaf: leafData(vh, k)}
}

// keyPath returns a leaf's key path (one hash).
func (s *slot) keyPath() types.Hash { return types.KeyPath(s.key()) }

// hasKey reports whether a leaf is the leaf of key k.
func (s *slot) hasKey(k types.StateKey) bool {
	return len(s.leaf) == leafFixed+len(k.Key) && s.leaf[types.HashLen:leafFixed] == string(k.Module[:]) && s.leaf[leafFixed:] == string(k.Key)
}

// vh returns a leaf's value hash.
func (s *slot) vh() types.Hash { return types.Hash([]byte(s.leaf[:types.HashLen])) }

// key returns a leaf's state key; its Key shares the slot's immutable
// bytes and must not be changed.
func (s *slot) key() types.StateKey {
	var k types.StateKey
	copy(k.Module[:], s.leaf[types.HashLen:leafFixed])
	if n := len(s.leaf) - leafFixed; n > 0 {
		k.Key = unsafe.Slice(unsafe.StringData(s.leaf[leafFixed:]), n)
	}
	return k
}

// ref names the record a child slot points to.
func (s *slot) ref() nodeRef { return nodeRef{born: s.born, id: s.h} }

// treeKind maps a slot to the kind of the binary subtree it stands for. A
// child node always holds two or more leaves: a node with one leaf is never
// stored, the leaf moves up into the parent slot instead.
func (s *slot) treeKind() types.NodeKind {
	switch s.kind {
	case slotLeaf:
		return types.KindLeaf
	case slotChild:
		return types.KindInternal
	}
	return types.KindEmpty
}

// node is a decoded physical node. Its id is the binary Merkle hash of the
// subtree it stands for, so the root node's id is the state root and a node
// fetched by id verifies itself. Nodes are immutable once built and shared
// through the cache; born is the version that wrote its record, and the
// same id may be stored again by a later version (A → B → A) as a record of
// its own.
type node struct {
	id   types.Hash
	born uint64
	// occ has bit i set when slot i is occupied; entries returns the
	// occupied slots in order. Near the bottom of a large tree most nodes
	// hold two or three leaves, so not storing empty slots lets the cache
	// hold several times more nodes.
	occ uint16
	// kept says a commit built the node and kept its top hashes at the end
	// of mem (newNode, node.top). Set before the node is shared, never
	// changed.
	kept bool
	// mem holds the occupied slots in order as pointer-free entries
	// (entries), then the leaves' data, which the entries name by
	// offsets into mem: one allocation the collector marks and never
	// scans. Entries and data as two allocations were two pointers per
	// node for the collector to follow, and marking is the larger part of
	// a cycle's cost over the cache (see RATIONALE.md, "Why does a node
	// keep its entries and its leaves' data in one allocation?"). A leaf
	// whose module has an id in mods keeps the id in its entry and only
	// its value hash and key in mem (see entry.mod); a leaf of a module
	// without one keeps its whole leafData.
	mem []byte
	// mods is the store's module table, which resolves the entries'
	// module ids (at). Ids are never reassigned, so the table a node was
	// made with always resolves them. The pointer is free: it takes the
	// node from 88 to 96 bytes, the allocator's size class of both.
	mods *moduleTable
	// A node a commit built with topKeepMin slots or more keeps the hashes
	// of its top binary subtrees at the end of its mem (kept; see keptTop
	// and node.top): a commit that changes a few slots of it rehashes only
	// the positions above them (hashEntries); for any other node a commit
	// replacing it rehashes the new node in full.
	// inner holds all the node's inner hashes, computed when a proof
	// first asks (node.sub; atomic: readers share the node) and not
	// counted by size, as before commits kept any. A proof reads two
	// positions per binary level: serving them from top and hashing the
	// rest on each read cost a 1M-key proof ~40% more CPU.
	inner atomic.Pointer[innerHashes]
}

// keptTop is what a commit keeps of a node's top positions, the last
// keptSize bytes of its mem: the mask of the internal positions (bit i for
// position i; 2 bytes, little endian), then the hashes of heap positions
// 1..end()-1 (1 is the node itself, 2i and 2i+1 the children of i, 16..31
// the slots), an empty position's zero and a one-leaf position's its
// leaf's. In mem rather than an object of its own: one allocation and one
// pointer for the collector less per kept node, and no memory miss of its
// own when the node is replaced (see RATIONALE.md, issue #2, round 12).
type keptTop []byte

// mask returns the bits of the internal kept positions.
func (t keptTop) mask() uint16 { return uint16(t[0]) | uint16(t[1])<<8 }

// hash returns kept position i's hash.
func (t keptTop) hash(i int) types.Hash {
	return types.Hash(t[2+(i-1)*types.HashLen : 2+i*types.HashLen])
}

// end returns one more than the last position kept.
func (t keptTop) end() int { return 1 + (len(t)-2)/types.HashLen }

// keptEnd returns one more than the last heap position a node with the
// occupied slots occ keeps, 0 for none: positions 1..topLen-1 for a node
// of topKeepMin slots or more. A full node keeping all fifteen cut the
// hashes of a 10k-key block at 1M keys by 15% and saved no CPU (see
// RATIONALE.md, issue #2, round 12).
func keptEnd(occ uint16) int {
	if bits.OnesCount16(occ) >= topKeepMin {
		return topLen
	}
	return 0
}

// keptSize returns the bytes of the keptTop of a node with the occupied
// slots occ (0 if it keeps none).
func keptSize(occ uint16) int {
	e := keptEnd(occ)
	if e == 0 {
		return 0
	}
	return 2 + (e-1)*types.HashLen
}

// top returns the node's kept top hashes, nil if it kept none.
func (n *node) top() keptTop {
	if !n.kept {
		return nil
	}
	return keptTop(n.mem[len(n.mem)-keptSize(n.occ):])
}

// topKeepMin is the fewest occupied slots of a node for which a commit
// keeps its top hashes. Below it a node hashes in a few steps anyway (the
// bottom nodes of a large tree hold two or three leaves, and most of a
// tree's nodes are bottom nodes), so keeping them would cost the cache
// memory per node and save nothing.
const topKeepMin = 5

// topLen is one more than the last heap position whose hash a node keeps:
// the top two binary levels (positions 1..3, 98 bytes at the end of the
// node's mem). A 10k-key block on a 1M-key tree then hashes 126k nodes'
// positions instead of 183k; keeping three levels (8) took it to 94k, at
// more than twice the bytes per kept node, while the peak RSS of `kairos
// bench state` at 1M keys is near its 1 GiB target (see RATIONALE.md).
const topLen = 4

// innerHashes holds the binary subtrees inside a node in heap order, 1..15;
// indexes 16..31 are the slots themselves and are not stored here.
type innerHashes [fanout]struct {
	kind types.NodeKind
	h    types.Hash
}

// ref names the node's record.
func (n *node) ref() nodeRef { return nodeRef{born: n.born, id: n.id} }

// entry is an occupied slot as a node keeps it: a slot whose leaf data is
// node.mem[off:end]. The offsets are 16 bits (nodeMemMax) so that an entry
// is 48 bytes rather than 56: ~8 bytes less per cached slot, ~11 MB of
// live heap at 1M keys.
//
// mod is a leaf's module id in node.mods (ModuleIDsMax fits 16 bits), in
// what was the entry's padding: with it, mem[off:end] is the leaf's value
// hash and key, 32 bytes less than its leafData, and at puts the module's
// address back. With mod 0 (a module without an id) mem[off:end] is the
// whole leafData. See RATIONALE.md, "Why does a cached node name its
// leaves' modules by id?".
type entry struct {
	h        types.Hash
	born     uint64
	off, end uint16
	mod      uint16
	kind     slotKind
}

var _ = uint16(ModuleIDsMax)

const entrySize = int(unsafe.Sizeof(entry{}))

// nodeMemMax is the most a node's mem holds: sixteen entries and sixteen
// leaves of the longest key. It must fit entry's offsets (the conversion
// fails to compile otherwise).
const nodeMemMax = fanout * (entrySize + leafFixed + types.StateKeyMax)

var _ = uint16(nodeMemMax)

// entries returns the node's occupied slots, which start its mem: an
// allocation of at least one entry is 8-aligned (the allocator aligns
// every object of 16 bytes or more to 8), as an entry needs.
func (n *node) entries() []entry {
	k := bits.OnesCount16(n.occ)
	if k == 0 {
		return nil
	}
	return unsafe.Slice((*entry)(unsafe.Pointer(unsafe.SliceData(n.mem))), k)
}

// touch reads a byte of each cache line of the node's entries and returns
// their sum, which only keeps the reads: a reader about to go through the
// entries of several nodes touches them all first, so that their misses
// overlap instead of each waiting in turn (nodeCache.getMany).
func (n *node) touch() byte {
	var b byte
	for off := 0; off < bits.OnesCount16(n.occ)*entrySize; off += 64 {
		b += n.mem[off]
	}
	return b
}

// packSlots lays a's non-empty slots out in mem (emptied first) as a
// node's mem holds them, its leaves' modules named by their ids in t
// (setting the ids of a's leaves that had none: a node made from a later
// reads them from its entries), and returns their occupancy bits and mem.
// The node keeps the data in mem: the slots' data may be parts of the mem
// of the nodes they came from, which it must not keep alive. mem must be
// 8-aligned (a heap allocation of 16 bytes or more).
func packSlots(mem []byte, a *[fanout]slot, t *moduleTable) (uint16, []byte) {
	return patchSlots(mem, nil, a, allSlots, t, false)
}

// patchSlots is packSlots of from's slots with those marked in changed
// replaced by a's (an empty one dropped), without making from's slots: an
// entry of from that stays is copied with its leaf's bytes as they are
// (its module id is t's: from was made with t), so a commit that changes
// one or two slots of a node moves the other entries and their data as
// they are, instead of unpacking them into slots and packing them again
// (see RATIONALE.md, issue #2, round 12). a is read only at the changed
// slots. With from nil, every slot is a's (packSlots). A from made with
// another table than t is patched through its unpacked slots. With kept,
// mem has room after the data for the node's keptTop (keptSize), which
// newNode appends.
func patchSlots(mem []byte, from *node, a *[fanout]slot, changed uint16, t *moduleTable, kept bool) (uint16, []byte) {
	var (
		fromOcc uint16
		es      []entry
	)
	if from != nil {
		if from.mods != t {
			// Ids of another table: every slot as a slot, its leaves
			// unpacked, named again in t.
			b := *a
			for i := range b {
				if changed&(1<<i) == 0 {
					b[i] = from.slot(i)
				}
			}
			return patchSlots(mem, nil, &b, allSlots, t, kept)
		}
		fromOcc, es = from.occ, from.entries()
	} else {
		changed = allSlots
	}
	// First pass: the occupancy, the entries' count and the data's
	// length; the module ids of the leaves that take one here (a's slots
	// without a valid id, and from's leaves kept whole whose module got
	// one since), in mids.
	var (
		occ  uint16
		mids [fanout]uint16
	)
	k, l, j := 0, 0, 0
	for m := fromOcc | changed; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(m)
		var e *entry
		if fromOcc&(1<<i) != 0 {
			e = &es[j]
			j++
		}
		if changed&(1<<i) == 0 {
			occ |= 1 << i
			k++
			if e.kind != slotLeaf {
				continue
			}
			n := int(e.end - e.off)
			if e.mod == 0 {
				if id, ok := t.id(unsafe.String(&from.mem[e.off+types.HashLen], types.AddressLen)); ok {
					mids[i] = uint16(id)
					n -= types.AddressLen
				}
			}
			l += n
			continue
		}
		s := &a[i]
		if s.kind == slotEmpty {
			continue
		}
		occ |= 1 << i
		k++
		if s.kind != slotLeaf {
			continue
		}
		l += len(s.leaf)
		if s.packed {
			// A packed leaf has no address to fall back on: it moves
			// only between nodes of one store, whose table named it.
			if t == nil {
				panic("state: a packed leaf put into a node without a module table")
			}
			continue
		}
		if t == nil {
			s.mid = 0 // an id of another node's table: no table, no ids
		} else if s.mid == 0 || !t.names(uint64(s.mid), s.leaf[types.HashLen:leafFixed]) {
			// A leaf read from a node of another table (at keeps its
			// id) is named again by its address here.
			s.mid = 0
			if id, ok := t.id(s.leaf[types.HashLen:leafFixed]); ok {
				s.mid = uint16(id)
			}
		}
		if s.mid != 0 {
			l -= types.AddressLen
		}
	}
	if kept {
		l += keptSize(occ)
	}
	mem = slices.Grow(mem[:0], k*entrySize+l)[:k*entrySize]
	j, jo := 0, 0
	for m := fromOcc | changed; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(m)
		var e *entry
		if fromOcc&(1<<i) != 0 {
			e = &es[jo]
			jo++
		}
		if occ&(1<<i) == 0 {
			continue
		}
		at := len(mem)
		var ne entry
		if changed&(1<<i) == 0 {
			ne = *e
			if e.kind == slotLeaf {
				d := from.mem[e.off:e.end]
				if mids[i] != 0 {
					ne.mod = mids[i]
					mem = append(append(mem, d[:types.HashLen]...), d[leafFixed:]...)
				} else {
					mem = append(mem, d...)
				}
			}
		} else {
			s := &a[i]
			if s.mid != 0 && !s.packed {
				mem = append(append(mem, s.leaf[:types.HashLen]...), s.leaf[leafFixed:]...)
			} else {
				mem = append(mem, s.leaf...)
			}
			ne = entry{h: s.h, born: s.born, mod: s.mid, kind: s.kind}
		}
		ne.off, ne.end = uint16(at), uint16(len(mem))
		*(*entry)(unsafe.Pointer(&mem[j*entrySize])) = ne
		j++
	}
	return occ, mem
}

// patchedOcc returns the occupancy of from's slots with those marked in
// changed replaced by a's (packSlots' and patchSlots' result; with from
// nil, a's).
func patchedOcc(from *node, a *[fanout]slot, changed uint16) uint16 {
	var occ uint16
	if from != nil {
		occ = from.occ &^ changed
	} else {
		changed = allSlots
	}
	for m := changed; m != 0; m &= m - 1 {
		if i := bits.TrailingZeros16(m); a[i].kind != slotEmpty {
			occ |= 1 << i
		}
	}
	return occ
}

// at returns the node's j-th occupied slot. A leaf named by its module's
// id gets its leafData back in an allocation of its own (the module's
// address between its value hash and key); any other leaf's data is part
// of mem.
func (n *node) at(j int) slot { return unpack(n.packedAt(j), n.mods) }

// packedAt is at with a leaf of a module with an id left packed (see
// slot.packed): its data is part of mem, for a reader that unpacks it only
// if it reads it.
func (n *node) packedAt(j int) slot {
	e := &n.entries()[j]
	s := slot{kind: e.kind, born: e.born, h: e.h}
	if e.kind == slotLeaf {
		s.leaf, s.mid, s.packed = unsafe.String(&n.mem[e.off], int(e.end-e.off)), e.mod, e.mod != 0
	}
	return s
}

// unpack returns s with its leaf's data whole if it is packed, in an
// allocation of its own (the address of module s.mid in t between its value
// hash and key).
func unpack(s slot, t *moduleTable) slot {
	if !s.packed {
		return s
	}
	m, ok := t.module(uint64(s.mid))
	if !ok {
		// decodeNode and packSlots only set ids the table holds, and a
		// table never drops one.
		panic("state: a node names a module id its table does not hold")
	}
	b := make([]byte, 0, len(s.leaf)+types.AddressLen)
	b = append(append(append(b, s.leaf[:types.HashLen]...), m[:]...), s.leaf[types.HashLen:]...)
	s.leaf, s.packed = unsafe.String(unsafe.SliceData(b), len(b)), false
	return s
}

// slot returns slot i (empty if unoccupied).
func (n *node) slot(i int) slot {
	if n.occ&(1<<i) == 0 {
		return slot{}
	}
	return n.at(bits.OnesCount16(n.occ & (1<<i - 1)))
}

// packedSlot is slot with a leaf of a module with an id left packed (see
// slot.packed), for a reader that may not read it: unpack before reading.
func (n *node) packedSlot(i int) slot {
	if n.occ&(1<<i) == 0 {
		return slot{}
	}
	return n.packedAt(bits.OnesCount16(n.occ & (1<<i - 1)))
}

// size estimates the memory the node takes in the cache: the node and its
// mem. It counts the top hashes a commit kept (in mem) and not those a
// proof computed later: the cache adds and subtracts it at different times, so
// it must not change.
func (n *node) size() int {
	return int(unsafe.Sizeof(node{})) + cap(n.mem) + 64
}

// allSlots marks every slot changed: hash a node in full.
const allSlots = 1<<fanout - 1

// under returns the bits of m (one per slot) under heap position i
// (1..15), shifted down to bit 0.
func under(m uint16, i int) uint16 {
	level := bits.Len(uint(i)) - 1
	w := fanout >> level
	lo := (i - 1<<level) * w
	return m >> lo & (1<<w - 1)
}

// keep appends the keptTop of positions 1..end-1 of in (a node's inner
// hashes, complete there) to mem.
func keep(mem []byte, in *innerHashes, end int) []byte {
	var mask uint16
	for i := 1; i < end; i++ {
		if in[i].kind == types.KindInternal {
			mask |= 1 << i
		}
	}
	mem = append(mem, byte(mask), byte(mask>>8))
	for i := 1; i < end; i++ {
		mem = append(mem, in[i].h[:]...)
	}
	return mem
}

// sub returns the kind and hash of binary subtree i (heap order, 1..31).
func (n *node) sub(i int) (types.NodeKind, types.Hash) {
	if i >= fanout {
		s := n.packedSlot(i - fanout) // hashing reads no leaf data
		return s.treeKind(), s.h
	}
	in := n.inner.Load()
	if in == nil {
		in = new(innerHashes)
		n.computeInner(in)
		if !n.inner.CompareAndSwap(nil, in) {
			in = n.inner.Load()
		}
	}
	return in[i].kind, in[i].h
}

// computeInner fills in with the node's inner hashes and returns its id.
func (n *node) computeInner(in *innerHashes) types.Hash {
	return hashEntries(n.occ, n.entries(), in, nil, allSlots)
}

// hashEntries fills in with the inner hashes of a node whose occupied
// slots occ hold the entries es, and returns its id; it reads no leaf
// data. With top nil every position is hashed. Otherwise top is what the
// node this one was made from kept, and changed marks the slots that
// differ from that node's (a superset does no harm): a kept position with
// no changed slot under it is taken from top (its kind too: the slots
// under it are the same), and a position below the kept ones is hashed
// only when its parent is, so a one-slot change costs at most eight hashes
// instead of up to fifteen. in is then
// complete at positions 1..top.end()-1 only.
func hashEntries(occ uint16, es []entry, in *innerHashes, top keptTop, changed uint16) types.Hash {
	end := 1 // positions below are taken from top when unchanged
	if top == nil {
		changed = allSlots
	} else {
		end = top.end()
	}
	get := func(i int) (types.NodeKind, types.Hash) {
		if i < fanout {
			return in[i].kind, in[i].h
		}
		s := i - fanout
		if occ&(1<<s) == 0 {
			return types.KindEmpty, types.EmptyHash
		}
		e := &es[bits.OnesCount16(occ&(1<<s-1))]
		if e.kind == slotLeaf {
			return types.KindLeaf, e.h
		}
		return types.KindInternal, e.h
	}
	// Top down: hash every position with a changed slot under it, and
	// every position below the kept ones that a hashed parent needs.
	var hashed uint16
	for i := 1; i < fanout; i++ {
		if under(changed, i) != 0 || i >= end && hashed&(1<<(i/2)) != 0 {
			hashed |= 1 << i
		}
	}
	for i := fanout - 1; i >= 1; i-- {
		switch {
		case hashed&(1<<i) != 0:
			lk, lh := get(2 * i)
			rk, rh := get(2*i + 1)
			in[i].kind, in[i].h = types.Combine(lk, lh, rk, rh)
		case i < end:
			in[i].kind, in[i].h = keptPos(occ, es, i, top)
		}
		// Else no hashed position needs it.
	}
	return in[1].h
}

// keptPos returns top position i of a node whose occupied slots occ hold
// the entries es, and whose slots under i are those of the node that kept
// top: its kept hash if it is internal, or the one leaf under it, or
// empty.
func keptPos(occ uint16, es []entry, i int, top keptTop) (types.NodeKind, types.Hash) {
	if top.mask()&(1<<i) != 0 {
		return types.KindInternal, top.hash(i)
	}
	u := under(occ, i)
	if u == 0 {
		return types.KindEmpty, types.EmptyHash
	}
	level := bits.Len(uint(i)) - 1
	s := (i-1<<level)*(fanout>>level) + bits.TrailingZeros16(u)
	return types.KindLeaf, es[bits.OnesCount16(occ&(1<<s-1))].h
}

// newNode builds a node of the slots of from with those marked in changed
// replaced by a's (see patchSlots; with from nil, a's slots: a new
// subtree), and computes its id and kept top hashes, rehashing only the
// positions above the changed slots when from kept its top (see
// hashEntries).
func newNode(born uint64, a *[fanout]slot, from *node, changed uint16, t *moduleTable) *node {
	n := &node{born: born, mods: t}
	n.occ, n.mem = patchSlots(nil, from, a, changed, t, true)
	var top keptTop
	if from != nil {
		top = from.top()
	}
	var in innerHashes
	// A kept top covers the same positions in every node that keeps one:
	// in is complete wherever the new node keeps its own.
	n.id = hashEntries(n.occ, n.entries(), &in, top, changed)
	if end := keptEnd(n.occ); end != 0 {
		n.kept = true
		n.mem = keep(n.mem, &in, end)
	}
	return n
}

// hashMatches recomputes a node's hash and compares it with its id: the
// check for nodes from peers, at Open and in Audit.
func (n *node) hashMatches(id types.Hash) bool {
	var in innerHashes
	return n.computeInner(&in) == id
}

// occupied counts the non-empty slots of a and returns the last one.
func occupied(a *[fanout]slot) (int, int) {
	c, last := 0, -1
	for i := range a {
		if a[i].kind != slotEmpty {
			c, last = c+1, i
		}
	}
	return c, last
}

// nodeRecordLen is the exact length of n's record with the module ids of
// t.
func nodeRecordLen(n *node, t *moduleTable) int {
	l := 1 + 4
	es := n.entries()
	for j := range es {
		e := &es[j]
		switch {
		case e.kind != slotLeaf:
			l += types.HashLen + uvarintLen(e.born)
		case e.mod != 0 && t == n.mods:
			kl := int(e.end-e.off) - types.HashLen
			l += uvarintLen(uint64(kl)) + types.HashLen + uvarintLen(uint64(e.mod)) + kl
		default:
			s := n.at(j)
			l += leafRecordLen(s.leaf, t)
		}
	}
	return l
}

// appendNode appends n's record to buf: tag, uint16 occupancy, uint16 leaf
// mask, then per occupied slot in order either the child's id followed by
// the uvarint born of its record (a few bytes: see RATIONALE.md), or the
// leaf as appendLeafRecord writes it: the uvarint length of its key, its
// value hash, its module's id in t (store format 4: 1–3 bytes instead of
// the 32-byte address; the address inline only for a module without one)
// and its key. The node's own born is in its key, not in the record. A
// leaf's key path and leaf hash are not stored: decodeNode derives them
// (two hashes per leaf), and the node's id, which covers every leaf hash,
// still checks them (hashMatches). Holding the key lets a read of an old
// version find the leaf's value in the flat index or the history, and a
// proof of absence by another leaf needs no read at all.
func appendNode(buf []byte, n *node, t *moduleTable) []byte {
	var leaves uint16
	j := 0
	for i := 0; i < fanout; i++ {
		if n.occ&(1<<i) != 0 {
			if n.entries()[j].kind == slotLeaf {
				leaves |= 1 << i
			}
			j++
		}
	}
	buf = append(buf, tagNode)
	buf = binary.BigEndian.AppendUint16(buf, n.occ)
	buf = binary.BigEndian.AppendUint16(buf, leaves)
	es := n.entries()
	for j := range es {
		e := &es[j]
		switch {
		case e.kind != slotLeaf:
			buf = binary.AppendUvarint(append(buf, e.h[:]...), e.born)
		case e.mod != 0 && t == n.mods:
			// The id the node was made with: the one t gives the module
			// (ids are never reassigned), without looking it up again.
			d := n.mem[e.off:e.end]
			buf = binary.AppendUvarint(buf, uint64(len(d)-types.HashLen))
			buf = binary.AppendUvarint(append(buf, d[:types.HashLen]...), uint64(e.mod))
			buf = append(buf, d[types.HashLen:]...)
		default:
			s := n.at(j)
			buf = appendLeafRecord(buf, s.leaf, t)
		}
	}
	return buf
}

// appendSlotBody appends a leaf or child slot as a root record holds it: a
// leaf as the uvarint length of its key and its leafData, the module
// inline (one record per version, read without the module table).
func appendSlotBody(buf []byte, s *slot) []byte {
	if s.kind == slotLeaf {
		buf = binary.AppendUvarint(buf, uint64(len(s.leaf)-leafFixed))
		return append(buf, s.leaf...)
	}
	buf = append(buf, s.h[:]...)
	return binary.AppendUvarint(buf, s.born)
}

// decodeNode parses a node record stored under r, resolving its leaves'
// module ids in t: an id t does not hold is corrupt. It does not rehash the
// node (hashMatches does); local records are trusted on the read path. The
// leaves' leaf hashes are computed here, and their data share one buffer.
func decodeNode(b []byte, r nodeRef, t *moduleTable) (*node, error) {
	rest, err := recordBody(b, tagNode)
	if err != nil {
		return nil, err
	}
	if len(rest) < 4 {
		return nil, fmt.Errorf("%w: short node", ErrCorrupt)
	}
	occ := binary.BigEndian.Uint16(rest)
	leaves := binary.BigEndian.Uint16(rest[2:])
	rest = rest[4:]
	if leaves&^occ != 0 {
		return nil, fmt.Errorf("%w: node leaf mask outside occupancy", ErrCorrupt)
	}
	n := &node{id: r.id, born: r.born, occ: occ, mods: t}
	// First pass: the entries, on the stack, with each leaf's value hash,
	// module and key as parts of the record; then mem is allocated once
	// and filled with the leaves' leafData.
	var (
		es    [fanout]entry
		parts [fanout]leafParts
	)
	k, total := 0, 0
	for i := 0; i < fanout; i++ {
		if occ&(1<<i) == 0 {
			continue
		}
		if leaves&(1<<i) != 0 {
			p := &parts[k]
			if rest, err = leafRecord(rest, p, t); err != nil {
				return nil, err
			}
			total += types.HashLen + len(p.key)
			if p.id == moduleInline {
				total += types.AddressLen
			}
			es[k] = entry{kind: slotLeaf, mod: uint16(p.id)}
			k++
			continue
		}
		if len(rest) < types.HashLen {
			return nil, fmt.Errorf("%w: short node", ErrCorrupt)
		}
		c := slot{kind: slotChild}
		copy(c.h[:], rest)
		if rest, err = slotBorn(&c, rest[types.HashLen:], r.born); err != nil {
			return nil, err
		}
		es[k] = entry{kind: slotChild, h: c.h, born: c.born}
		k++
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in node", ErrCorrupt, len(rest))
	}
	if k < 2 && (k == 0 || es[0].kind == slotLeaf) {
		return nil, fmt.Errorf("%w: node with fewer than two leaves", ErrCorrupt)
	}
	mem := make([]byte, k*entrySize, k*entrySize+total)
	for i := range k {
		if e := &es[i]; e.kind == slotLeaf {
			p := &parts[i]
			e.off = uint16(len(mem))
			mem = append(mem, p.vh...)
			if e.mod == 0 {
				mem = append(mem, p.module[:]...)
			}
			mem = append(mem, p.key...)
			e.end = uint16(len(mem))
			e.h = types.LeafHash(types.KeyPath(types.StateKey{Module: p.module, Key: p.key}), types.Hash(p.vh))
		}
	}
	n.mem = mem
	copy(n.entries(), es[:k])
	return n, nil
}

// leafParts is a leaf as decodeNode reads it from a record: its value hash
// and key point into the record, its module is resolved; id is the
// module's id in the record (moduleInline for an address inline).
type leafParts struct {
	vh, key []byte
	module  types.Address
	id      uint64
}

// leafRecord parses the leaf at the start of b (appendLeafRecord's form)
// into p, its module resolved in t, and returns the rest of b.
func leafRecord(b []byte, p *leafParts, t *moduleTable) ([]byte, error) {
	kl, m := uvarint(b)
	if m <= 0 || kl > types.StateKeyMax || uint64(len(b)-m) < types.HashLen+1+kl {
		return nil, fmt.Errorf("%w: bad leaf in node", ErrCorrupt)
	}
	b = b[m:]
	p.vh, b = b[:types.HashLen], b[types.HashLen:]
	id, m := uvarint(b)
	if m <= 0 {
		return nil, fmt.Errorf("%w: bad leaf in node", ErrCorrupt)
	}
	b = b[m:]
	p.id = id
	if id == moduleInline {
		if len(b) < types.AddressLen {
			return nil, fmt.Errorf("%w: bad leaf in node", ErrCorrupt)
		}
		p.module, b = types.Address(b[:types.AddressLen]), b[types.AddressLen:]
	} else {
		var ok bool
		if p.module, ok = t.module(id); !ok {
			return nil, fmt.Errorf("%w: %w %d", ErrCorrupt, errModuleID, id)
		}
	}
	if uint64(len(b)) < kl {
		return nil, fmt.Errorf("%w: bad leaf in node", ErrCorrupt)
	}
	p.key, b = b[:kl], b[kl:]
	return b, nil
}

// deriveLeaf computes a leaf slot's leaf hash from its data.
func deriveLeaf(s *slot) {
	s.h = types.LeafHash(s.keyPath(), s.vh())
}

// slotBorn reads the uvarint born that follows a child's id. A record is
// written by its own version or a later one than every record it names, so
// a born above the node's own (parent) is corrupt.
func slotBorn(s *slot, b []byte, parent uint64) ([]byte, error) {
	born, n := uvarint(b)
	if n <= 0 || born > parent {
		return nil, fmt.Errorf("%w: bad slot born", ErrCorrupt)
	}
	s.born = born
	return b[n:], nil
}

func recordBody(b []byte, tag byte) ([]byte, error) {
	if len(b) == 0 || b[0] != tag {
		return nil, fmt.Errorf("%w: record is not of type %q", ErrCorrupt, tag)
	}
	return b[1:], nil
}

// encodeRoot writes a root record: the kind of the root slot of a version,
// then the slot as a node record holds it (none for an empty slot).
func encodeRoot(s slot) []byte {
	buf := []byte{byte(s.kind)}
	if s.kind == slotEmpty {
		return buf
	}
	return appendSlotBody(buf, &s)
}

func decodeRoot(b []byte) (slot, error) {
	if len(b) == 0 {
		return slot{}, fmt.Errorf("%w: empty root record", ErrCorrupt)
	}
	rest := b[1:]
	switch slotKind(b[0]) {
	case slotEmpty:
		if len(rest) == 0 {
			return slot{}, nil
		}
	case slotLeaf:
		kl, m := uvarint(rest)
		if m > 0 && kl <= types.StateKeyMax && uint64(len(rest)-m) == leafFixed+kl {
			s := slot{kind: slotLeaf, leaf: string(rest[m:])}
			deriveLeaf(&s)
			return s, nil
		}
	case slotChild:
		if len(rest) > types.HashLen {
			s := slot{kind: slotChild}
			copy(s.h[:], rest)
			born, m := uvarint(rest[types.HashLen:])
			if m > 0 && m == len(rest)-types.HashLen {
				s.born = born
				return s, nil
			}
		}
	}
	return slot{}, fmt.Errorf("%w: bad root record", ErrCorrupt)
}

// nibble returns the 4-bit child index of kp at nibble depth d.
func nibble(kp types.Hash, d int) int {
	b := kp[d/2]
	if d%2 == 0 {
		return int(b >> 4)
	}
	return int(b & 0x0f)
}

// uvarint is binary.Uvarint that also rejects non-shortest encodings
// (n <= 0), so that every record has one byte form.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n > 0 && n != uvarintLen(v) {
		return 0, -1
	}
	return v, n
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
