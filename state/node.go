package state

import (
	"encoding/binary"
	"fmt"
	"math/bits"
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

// Record tags: the first byte of every value under /kairos/n/.
const (
	tagNode  = 'N'
	tagValue = 'V'
)

type slotKind uint8

const (
	slotEmpty slotKind = iota
	slotLeaf
	slotChild
)

// slot is one child position of a node, or the root of a version. A leaf
// lives in its parent's slot as (key path, leaf hash); its key and value are
// in a value record stored under (born, leaf hash), which binds them to the
// key path (readValue checks). A child is named by (born, id): born is the
// version that wrote the record, which its datastore key starts with, so a
// lookup is one Get. The value hash is not
// kept: only a proof of absence by another leaf needs it, and it reads the
// value record; a slot of 65 bytes instead of 97 lets the cache hold a third
// more nodes.
type slot struct {
	kind slotKind
	h    types.Hash // leaf hash or child node id
	kp   types.Hash // leaf only
	born uint64     // version that wrote the value record or child node
}

// ref names the record a leaf or child slot points to.
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
	// occ has bit i set when slot i is occupied; entries holds the
	// occupied slots in order. Near the bottom of a large tree most nodes
	// hold two or three leaves, so not storing empty slots lets the cache
	// hold several times more nodes.
	occ uint16
	// kept says a commit built the node and kept its top hashes (newNode):
	// size counts them. Set before the node is shared, never changed.
	kept    bool
	entries []slot
	// top points to the hashes of the node's binary subtrees at heap
	// positions 1..topLen-1 (1 is the node itself, 2i and 2i+1 the
	// children of i, 16..31 the slots), with a mask of the internal ones:
	// an empty position's hash is zero and a one-leaf position's is its
	// leaf's. A commit that changes a few slots rehashes only the
	// positions above them (hashChanged). A node a commit built with
	// topKeepMin slots or more has them; for any other node a commit
	// replacing it rehashes the new node in full.
	top atomic.Pointer[keptTop]
	// inner holds all the node's inner hashes, computed when a proof
	// first asks (node.sub; atomic: readers share the node) and not
	// counted by size, as before commits kept any. A proof reads two
	// positions per binary level: serving them from top and hashing the
	// rest on each read cost a 1M-key proof ~40% more CPU.
	inner atomic.Pointer[innerHashes]
}

// keptTop is what a commit keeps of a node's top positions: one
// pointer-free object (the collector marks it and never scans it), the
// mask of the internal positions beside their hashes.
type keptTop struct {
	mask uint8                  // bit i: position i is internal
	h    [topLen - 1]types.Hash // position i at h[i-1]
}

// topKeepMin is the fewest occupied slots of a node for which a commit
// keeps its top hashes. Below it a node hashes in a few steps anyway (the
// bottom nodes of a large tree hold two or three leaves, and most of a
// tree's nodes are bottom nodes), so keeping them would cost the cache an
// allocation per node and save nothing.
const topKeepMin = 5

// topLen is one more than the last heap position whose hash a node keeps:
// the top two binary levels (positions 1..3). A 10k-key block on a 1M-key
// tree then hashes 126k nodes' positions instead of 183k; keeping three
// levels (8) took it to 94k, at 240 bytes per kept node instead of 112,
// while the peak RSS of `kairos bench state` at 1M keys is near its 1 GiB
// target (see RATIONALE.md).
const topLen = 4

// innerHashes holds the binary subtrees inside a node in heap order, 1..15;
// indexes 16..31 are the slots themselves and are not stored here.
type innerHashes [fanout]struct {
	kind types.NodeKind
	h    types.Hash
}

// ref names the node's record.
func (n *node) ref() nodeRef { return nodeRef{born: n.born, id: n.id} }

// makeNode builds a node from a full slot array. Its slots are an
// allocation of their own: they hold no pointers, so the collector never
// scans them (a node and its slots in one object made a collection of a
// 360k-node cache cost ~1.7 times the CPU; see RATIONALE.md).
func makeNode(born uint64, a *[fanout]slot) *node {
	n := &node{born: born}
	n.occ, n.entries = packSlots(make([]slot, 0, occupiedCount(a)), a)
	return n
}

// packSlots appends a's non-empty slots to dst and returns their
// occupancy bits and dst.
func packSlots(dst []slot, a *[fanout]slot) (uint16, []slot) {
	var occ uint16
	for i := range a {
		if a[i].kind != slotEmpty {
			occ |= 1 << i
			dst = append(dst, a[i])
		}
	}
	return occ, dst
}

// slot returns slot i (empty if unoccupied).
func (n *node) slot(i int) slot {
	if n.occ&(1<<i) == 0 {
		return slot{}
	}
	return n.entries[bits.OnesCount16(n.occ&(1<<i-1))]
}

// all returns the node's slots as a full array, the working copy of a
// commit.
func (n *node) all() (a [fanout]slot) {
	j := 0
	for i := range a {
		if n.occ&(1<<i) != 0 {
			a[i] = n.entries[j]
			j++
		}
	}
	return a
}

// size estimates the memory the node takes in the cache. It counts the
// top hashes a commit kept and not those a proof computed later: the cache
// adds and subtracts it at different times, so it must not change.
func (n *node) size() int {
	sz := int(unsafe.Sizeof(node{})) + cap(n.entries)*int(unsafe.Sizeof(slot{})) + 64
	if n.kept {
		sz += int(unsafe.Sizeof(keptTop{}))
	}
	return sz
}

// allSlots marks every slot changed: hash a node in full.
const allSlots = 1<<fanout - 1

// topMaskOf returns a bit per top position (1..topLen-1) that is internal
// in a node with occupied slots occ, of which kids are children: a binary
// subtree is internal when it holds two slots or more or a child
// (types.Combine hashes exactly those; an empty one or a single leaf is no
// hash of its own).
func topMaskOf(occ, kids uint16) uint8 {
	var m uint8
	for i := 1; i < topLen; i++ {
		if bits.OnesCount16(under(occ, i)) > 1 || under(kids, i) != 0 {
			m |= 1 << i
		}
	}
	return m
}

// shape returns the occupied slots of a and, among them, the children.
func shape(a *[fanout]slot) (occ, kids uint16) {
	for i := range a {
		switch a[i].kind {
		case slotChild:
			kids |= 1 << i
			occ |= 1 << i
		case slotLeaf:
			occ |= 1 << i
		}
	}
	return occ, kids
}

// under returns the bits of m (one per slot) under heap position i
// (1..15), shifted down to bit 0.
func under(m uint16, i int) uint16 {
	level := bits.Len(uint(i)) - 1
	w := fanout >> level
	lo := (i - 1<<level) * w
	return m >> lo & (1<<w - 1)
}

// keep returns the top positions of in (a node's inner hashes, complete at
// 1..topLen-1) for node.top, with the mask of the internal ones.
func keep(in *innerHashes, mask uint8) *keptTop {
	t := &keptTop{mask: mask}
	for i := 1; i < topLen; i++ {
		t.h[i-1] = in[i].h
	}
	return t
}

// sub returns the kind and hash of binary subtree i (heap order, 1..31).
func (n *node) sub(i int) (types.NodeKind, types.Hash) {
	if i >= fanout {
		s := n.slot(i - fanout)
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
	a := n.all()
	return hashSlots(&a, in)
}

// hashSlots fills in with the inner hashes of a node holding the slots a
// and returns its id.
func hashSlots(a *[fanout]slot, in *innerHashes) types.Hash {
	return hashChanged(a, in, nil, allSlots)
}

// hashChanged fills in with the inner hashes of a node holding the slots a
// and returns its id. With top nil every position is hashed. Otherwise top
// is what the node a was made from kept, and changed marks the slots that
// differ from that node's (a superset does no harm): a top position with
// no changed slot under it is taken from top (its kind too: the slots
// under it are the same), and a position below the kept ones is hashed
// only when its parent is, so a one-slot change costs at most eight hashes
// instead of up to fifteen. in is then complete at positions
// 1..topLen-1 only.
func hashChanged(a *[fanout]slot, in *innerHashes, top *keptTop, changed uint16) types.Hash {
	if top == nil {
		changed = allSlots
	}
	get := func(i int) (types.NodeKind, types.Hash) {
		if i >= fanout {
			return a[i-fanout].treeKind(), a[i-fanout].h
		}
		return in[i].kind, in[i].h
	}
	// Top down: hash every position with a changed slot under it, and
	// every position below the kept levels that a hashed parent needs.
	var hashed uint16
	for i := 1; i < fanout; i++ {
		if under(changed, i) != 0 || i >= topLen && hashed&(1<<(i/2)) != 0 {
			hashed |= 1 << i
		}
	}
	for i := fanout - 1; i >= 1; i-- {
		switch {
		case hashed&(1<<i) != 0:
			lk, lh := get(2 * i)
			rk, rh := get(2*i + 1)
			in[i].kind, in[i].h = types.Combine(lk, lh, rk, rh)
		case i < topLen:
			in[i].kind, in[i].h = keptPos(a, i, top)
		}
		// Else no hashed position needs it.
	}
	return in[1].h
}

// keptPos returns top position i of a node holding the slots a, whose
// slots under i are those of the node that kept top: its kept hash if it
// is internal, or the one leaf under it, or empty.
func keptPos(a *[fanout]slot, i int, top *keptTop) (types.NodeKind, types.Hash) {
	if top.mask&(1<<i) != 0 {
		return types.KindInternal, top.h[i-1]
	}
	level := bits.Len(uint(i)) - 1
	w := fanout >> level
	lo := (i - 1<<level) * w
	for s := lo; s < lo+w; s++ {
		if a[s].kind == slotLeaf {
			return types.KindLeaf, a[s].h
		}
	}
	return types.KindEmpty, types.EmptyHash
}

// newNode builds a node from a full slot array and computes its id and
// kept top hashes from it. from is the node the array was made from, and
// changed marks the slots that differ from its (see hashChanged); with
// from nil (a new subtree) or a from without kept hashes, the node is
// hashed in full.
func newNode(born uint64, a *[fanout]slot, from *node, changed uint16) *node {
	n := makeNode(born, a)
	var in innerHashes
	var top *keptTop
	if from != nil {
		top = from.top.Load()
	}
	n.id = hashChanged(a, &in, top, changed)
	if len(n.entries) >= topKeepMin {
		n.kept = true
		n.top.Store(keep(&in, topMaskOf(shape(a))))
	}
	return n
}

// hashMatches recomputes a node's hash and compares it with its id: the
// check for nodes from peers, at Open and in Audit.
func (n *node) hashMatches(id types.Hash) bool {
	var in innerHashes
	return n.computeInner(&in) == id
}

// occupiedCount counts the non-empty slots of a.
func occupiedCount(a *[fanout]slot) int {
	c, _ := occupied(a)
	return c
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

// nodeRecordLen is the exact length of n's record.
func nodeRecordLen(n *node) int {
	l := 1 + 4
	for i := range n.entries {
		s := &n.entries[i]
		l += types.HashLen + uvarintLen(s.born)
		if s.kind == slotLeaf {
			l += types.HashLen
		}
	}
	return l
}

// appendNode appends n's record to buf: tag, uint16 occupancy, uint16 leaf
// mask, then per occupied slot in order either the child id or the leaf's
// key path and leaf hash, each followed by the uvarint born of the record
// it names (a few bytes: see RATIONALE.md). The node's own born is in its
// key, not in the record. Storing the leaf hash rather than the
// value hash spares a hash per leaf when a node is decoded; the node's id
// still covers every leaf hash, and the key path is checked against the
// value record whenever a value is read (and by Audit).
func appendNode(buf []byte, n *node) []byte {
	var leaves uint16
	j := 0
	for i := 0; i < fanout; i++ {
		if n.occ&(1<<i) != 0 {
			if n.entries[j].kind == slotLeaf {
				leaves |= 1 << i
			}
			j++
		}
	}
	buf = append(buf, tagNode)
	buf = binary.BigEndian.AppendUint16(buf, n.occ)
	buf = binary.BigEndian.AppendUint16(buf, leaves)
	for i := range n.entries {
		s := &n.entries[i]
		switch s.kind {
		case slotLeaf:
			buf = append(buf, s.kp[:]...)
			buf = append(buf, s.h[:]...)
		case slotChild:
			buf = append(buf, s.h[:]...)
		}
		buf = binary.AppendUvarint(buf, s.born)
	}
	return buf
}

// decodeNode parses a node record stored under r. It does not rehash the
// node (hashMatches does); local records are trusted on the read path.
func decodeNode(b []byte, r nodeRef) (*node, error) {
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
	n := &node{id: r.id, born: r.born, occ: occ, entries: make([]slot, 0, bits.OnesCount16(occ))}
	for i := 0; i < fanout; i++ {
		if occ&(1<<i) == 0 {
			continue
		}
		if leaves&(1<<i) != 0 {
			if len(rest) < 2*types.HashLen {
				return nil, fmt.Errorf("%w: short node", ErrCorrupt)
			}
			l := slot{kind: slotLeaf}
			copy(l.kp[:], rest)
			copy(l.h[:], rest[types.HashLen:])
			if rest, err = slotBorn(&l, rest[2*types.HashLen:], r.born); err != nil {
				return nil, err
			}
			n.entries = append(n.entries, l)
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
		n.entries = append(n.entries, c)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in node", ErrCorrupt, len(rest))
	}
	if len(n.entries) < 2 && (len(n.entries) == 0 || n.entries[0].kind == slotLeaf) {
		return nil, fmt.Errorf("%w: node with fewer than two leaves", ErrCorrupt)
	}
	return n, nil
}

// slotBorn reads the uvarint born that follows a slot's hashes. A record
// is written by its own version or a later one than every record it names,
// so a born above the node's own (parent) is corrupt.
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

// valueRecordLen is the exact length of the value record of (k, value).
func valueRecordLen(k types.StateKey, value []byte) int {
	return 1 + types.AddressLen + uvarintLen(uint64(len(k.Key))) + len(k.Key) + len(value)
}

// appendValue appends the value record of (k, value) to buf: tag, module,
// uvarint key length, key, value. It is stored under (born, leaf hash), so
// its lifetime is the leaf's: two keys with the same value never share a
// record.
func appendValue(buf []byte, k types.StateKey, value []byte) []byte {
	buf = append(buf, tagValue)
	buf = append(buf, k.Module[:]...)
	buf = binary.AppendUvarint(buf, uint64(len(k.Key)))
	buf = append(buf, k.Key...)
	return append(buf, value...)
}

func decodeValue(b []byte) (k types.StateKey, value []byte, err error) {
	rest, err := recordBody(b, tagValue)
	if err != nil {
		return k, nil, err
	}
	if len(rest) < types.AddressLen {
		return k, nil, fmt.Errorf("%w: short value record", ErrCorrupt)
	}
	copy(k.Module[:], rest)
	rest = rest[types.AddressLen:]
	kl, n := uvarint(rest)
	if n <= 0 || kl > uint64(len(rest)-n) || kl > types.StateKeyMax {
		return k, nil, fmt.Errorf("%w: bad key length in value record", ErrCorrupt)
	}
	k.Key = append([]byte{}, rest[n:n+int(kl)]...)
	value = append([]byte{}, rest[n+int(kl):]...)
	return k, value, nil
}

// encodeRoot writes a root record: the root slot of a version, a leaf as
// (key path, leaf hash) like in a node, then the born of the record it
// names (none for an empty slot).
func encodeRoot(s slot) []byte {
	buf := []byte{byte(s.kind)}
	switch s.kind {
	case slotLeaf:
		buf = append(append(buf, s.kp[:]...), s.h[:]...)
	case slotChild:
		buf = append(buf, s.h[:]...)
	default:
		return buf
	}
	return binary.AppendUvarint(buf, s.born)
}

func decodeRoot(b []byte) (slot, error) {
	if len(b) == 0 {
		return slot{}, fmt.Errorf("%w: empty root record", ErrCorrupt)
	}
	switch slotKind(b[0]) {
	case slotEmpty:
		if len(b) == 1 {
			return slot{}, nil
		}
	case slotLeaf:
		if len(b) > 1+2*types.HashLen {
			s := slot{kind: slotLeaf}
			copy(s.kp[:], b[1:])
			copy(s.h[:], b[1+types.HashLen:])
			if rootBorn(&s, b[1+2*types.HashLen:]) {
				return s, nil
			}
		}
	case slotChild:
		if len(b) > 1+types.HashLen {
			s := slot{kind: slotChild}
			copy(s.h[:], b[1:])
			if rootBorn(&s, b[1+types.HashLen:]) {
				return s, nil
			}
		}
	}
	return slot{}, fmt.Errorf("%w: bad root record", ErrCorrupt)
}

// rootBorn reads the born at the end of a root record into s.
func rootBorn(s *slot, b []byte) bool {
	born, n := uvarint(b)
	s.born = born
	return n > 0 && n == len(b)
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
