package state

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestRecordLengthsExact: a commit encodes its records straight into
// pebble's batch at the length nodeRecordLen announces (a short length
// would cut a record, a long one leave zero bytes in it), so it must be
// exact for every shape: random nodes of leaves with keys of every length
// class and children with borns of every uvarint length. Each record must
// also decode back, with the leaves' key paths and leaf hashes derived.
func TestRecordLengthsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	hash := func() (h types.Hash) {
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		return h
	}
	keyLens := []int{0, 1, 127, 128, types.StateKeyMax}
	// Modules of ids of one, two and three bytes, and modules without an
	// id (inline).
	mods := newModuleTable(ModuleIDsMax)
	var known []types.Address
	for range 200 {
		m := hash()
		known = append(known, types.Address(m[:types.AddressLen]))
	}
	mods.assign(known)
	for i := range 20000 {
		mods.assign([]types.Address{{0xfe, byte(i), byte(i >> 8)}})
	}
	if _, ok := mods.module(16384); !ok {
		t.Fatal("no three-byte module id")
	}
	module := func() types.Address {
		switch r.IntN(4) {
		case 0:
			return known[r.IntN(len(known))]
		case 1:
			i := r.IntN(20000)
			return types.Address{0xfe, byte(i), byte(i >> 8)}
		case 2:
			m := hash()
			return types.Address(m[:types.AddressLen])
		}
		return types.Address{}
	}
	for range 2000 {
		parent := r.Uint64N(1 << (8 * r.IntN(8)))
		var a [fanout]slot
		for i := range a {
			switch r.IntN(3) {
			case 1:
				k := types.StateKey{Key: bytes.Repeat([]byte{byte(r.Uint32())}, keyLens[r.IntN(len(keyLens))])}
				k.Module = module()
				a[i] = leafSlot(types.KeyPath(k), hash(), k)
			case 2:
				a[i] = slot{kind: slotChild, h: hash(), born: r.Uint64N(parent + 1)}
			}
		}
		if c, _ := occupied(&a); c < 2 {
			continue
		}
		n := makeNode(parent, &a, mods)
		enc := appendNode(nil, n, mods)
		if len(enc) != nodeRecordLen(n, mods) {
			t.Fatalf("node record of %d bytes, nodeRecordLen %d", len(enc), nodeRecordLen(n, mods))
		}
		got, err := decodeNode(enc, n.ref(), mods)
		if err != nil || got.all() != a {
			t.Fatalf("node does not decode back: %v", err)
		}
		for i := range a {
			// A root record names no module id: the slot comes back
			// without one (makeNode set a's).
			want := a[i]
			want.mid = 0
			if r, err := decodeRoot(encodeRoot(a[i])); err != nil || r != want {
				t.Fatalf("root record of slot %d does not decode back: %v", i, err)
			}
		}
	}
}

// TestLeafRecordBytes pins format 4's leaf encoding: key length, value
// hash, module id (or moduleInline and the address), key; a record decodes
// only against a table that holds its ids.
func TestLeafRecordBytes(t *testing.T) {
	mods := newModuleTable(ModuleIDsMax)
	known, other := types.Address{7}, types.Address{9}
	mods.assign([]types.Address{known})
	k := types.StateKey{Module: known, Key: []byte("key")}
	vh := types.Hash{1, 2}
	l := leafData(vh, k)
	want := append(append([]byte{3}, vh[:]...), 1)
	want = append(want, "key"...)
	if got := appendLeafRecord(nil, l, mods); !bytes.Equal(got, want) || leafRecordLen(l, mods) != len(want) {
		t.Fatalf("leaf of a known module: %x (len %d), want %x", got, leafRecordLen(l, mods), want)
	}
	l = leafData(vh, types.StateKey{Module: other, Key: []byte("key")})
	want = append(append(append(append([]byte{3}, vh[:]...), moduleInline), other[:]...), "key"...)
	if got := appendLeafRecord(nil, l, mods); !bytes.Equal(got, want) || leafRecordLen(l, mods) != len(want) {
		t.Fatalf("leaf of a module without an id: %x, want %x", got, want)
	}

	var a [fanout]slot
	for i, m := range []types.Address{known, other} {
		k := types.StateKey{Module: m, Key: []byte{byte(i)}}
		a[i*5] = leafSlot(types.KeyPath(k), vh, k)
	}
	n := makeNode(3, &a, mods)
	n.id = n.computeInner(new(innerHashes))
	enc := appendNode(nil, n, mods)
	// tag, occupancy, leaf mask; two leaves of one-byte keys.
	if want := 5 + (1 + 32 + 1 + 1) + (1 + 32 + 1 + 32 + 1); len(enc) != want {
		t.Fatalf("node record of %d bytes, want %d", len(enc), want)
	}
	got, err := decodeNode(enc, n.ref(), mods)
	if err != nil || got.all() != a || !got.hashMatches(n.id) {
		t.Fatalf("node does not decode back: %v", err)
	}
	if _, err := decodeNode(enc, n.ref(), newModuleTable(ModuleIDsMax)); !errors.Is(err, ErrCorrupt) || !errors.Is(err, errModuleID) {
		t.Fatalf("decoded against a table without its module id: %v", err)
	}
	// The decoded slots know their module ids; a node made from them
	// without a table names none, and reads and encodes every module
	// inline.
	b := got.all()
	bare := makeNode(3, &b, nil)
	if withoutIDs(bare.all()) != withoutIDs(a) || !bytes.Equal(appendNode(nil, bare, nil), appendNode(nil, n, nil)) {
		t.Fatal("a node made without a table from slots with module ids")
	}
}

// BenchmarkNodeRecord encodes (nodeRecordLen, appendNode) and decodes
// bottom nodes as a 1M-key tree of 16 modules holds them (three leaves of
// 9-byte keys), per node: what format 4's module id lookups cost the
// commit's encoding and a cache miss's decoding.
func BenchmarkNodeRecord(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	mods := newModuleTable(ModuleIDsMax)
	var ms []types.Address
	for i := range 16 {
		ms = append(ms, types.Address{byte(i), 1})
	}
	mods.assign(ms)
	nodes := make([]*node, 1024)
	recs := make([][]byte, len(nodes))
	for i := range nodes {
		var a [fanout]slot
		for j := range 3 {
			k := types.StateKey{Module: ms[r.IntN(len(ms))], Key: []byte{'k', 0, 0, 0, 0, byte(i), byte(j), 1, 2}}
			var vh types.Hash
			vh[0] = byte(r.Uint32())
			a[j*5] = leafSlot(types.KeyPath(k), vh, k)
		}
		nodes[i] = makeNode(7, &a, mods)
		recs[i] = appendNode(nil, nodes[i], mods)
	}
	b.Run("encode", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		for i := 0; b.Loop(); i++ {
			n := nodes[i%len(nodes)]
			buf = appendNode(buf[:0:nodeRecordLen(n, mods)], n, mods)
		}
	})
	b.Run("decode", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			n := nodes[i%len(nodes)]
			if _, err := decodeNode(recs[i%len(recs)], n.ref(), mods); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// withoutIDs returns a with its leaves' module ids cleared: two slots that
// differ only in whether they know their module's id are the same leaf.
func withoutIDs(a [fanout]slot) [fanout]slot {
	for i := range a {
		a[i].mid = 0
	}
	return a
}

// TestLeafMovedAcrossModuleTables: a leaf read from a node (at keeps its
// module id) and put into a node of another table whose id 1 is another
// module must still name its own module there; a packed leaf, which has no
// address to fall back on, must not go into a node without a table.
func TestLeafMovedAcrossModuleTables(t *testing.T) {
	m, other := types.Address{7}, types.Address{9}
	ta, tb := newModuleTable(10), newModuleTable(10)
	ta.assign([]types.Address{m})     // m is id 1 in ta
	tb.assign([]types.Address{other}) // other is id 1 in tb
	tb.assign([]types.Address{m})     // m is id 2 in tb
	sk := types.StateKey{Module: m, Key: []byte("k")}
	vh := types.ValueHash([]byte("v"))
	var a [fanout]slot
	a[0] = slot{kind: slotLeaf, h: types.LeafHash(types.KeyPath(sk), vh), leaf: leafData(vh, sk)}
	src := makeNode(1, &a, ta)
	var b [fanout]slot
	b[0] = src.at(0)
	moved := makeNode(2, &b, tb).at(0)
	if got := moved.key().Module; got != m {
		t.Fatalf("leaf moved to another table names module %x, want %x", got[:1], m[:1])
	}
	p := [fanout]slot{src.packedSlot(0)}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "without a module table") {
			t.Fatalf("packed leaf into a node without a table: recovered %v", r)
		}
	}()
	makeNode(2, &p, nil)
}

// TestPatchSlotsAgainstPackSlots: a commit builds a changed node by
// patching the old one (patchSlots: its entries and leaf bytes that stay
// are copied as they are) instead of packing all of its slots again. Over
// random nodes (leaves of modules with ids, of a module that gets its id
// only after the node was made, of modules without one; children) and
// random patches (deletions, new leaves, a slot turning from leaf to child
// and back, down to one slot or none, a changed mask with unchanged
// slots in it) the result must be what packSlots makes of the patched
// slots: the same occupancy, entries, leaf data, record and slots; and a
// node made with another table is patched through its slots.
func TestPatchSlotsAgainstPackSlots(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	mods := newModuleTable(ModuleIDsMax)
	withID := []types.Address{{1}, {2}, {3}}
	mods.assign(withID)
	other := newModuleTable(ModuleIDsMax) // the same modules under other ids
	other.assign([]types.Address{{3}})
	other.assign([]types.Address{{2}})
	other.assign([]types.Address{{1}})
	late := 0 // modules that get an id between the node and its patch
	leaf := func(m types.Address) slot {
		k := types.StateKey{Module: m, Key: []byte{byte(r.Uint32()), byte(r.Uint32())}}
		return leafSlot(types.KeyPath(k), randHash(r), k)
	}
	randLeafSlot := func() (slot, *types.Address) {
		switch r.IntN(4) {
		case 0:
			return leaf(types.Address{0xee}), nil // never gets an id here
		case 1:
			late++
			m := types.Address{0xaa, byte(late), byte(late >> 8)}
			return leaf(m), &m
		}
		return leaf(withID[r.IntN(len(withID))]), nil
	}
	randPatchSlot := func() (slot, *types.Address) {
		switch r.IntN(4) {
		case 0:
			return slot{}, nil
		case 1:
			return slot{kind: slotChild, h: randHash(r), born: r.Uint64N(9)}, nil
		}
		return randLeafSlot()
	}
	for round := range 3000 {
		table := mods
		if round%7 == 6 {
			table = other
		}
		var a [fanout]slot
		var lateMods []types.Address
		for i := range a {
			if r.IntN(16) < []int{16, 6, 2}[round%3] {
				s, m := randPatchSlot()
				a[i] = s
				if m != nil {
					lateMods = append(lateMods, *m)
				}
			}
		}
		from := makeNode(5, &a, table)
		table.assign(lateMods) // kept leaves whose module has an id now
		var p [fanout]slot
		var changed uint16
		for range 1 + r.IntN([]int{1, 2, fanout}[r.IntN(3)]) {
			i := r.IntN(fanout)
			s, m := randPatchSlot()
			if m != nil && r.IntN(2) == 0 {
				mods.assign([]types.Address{*m})
			}
			p[i], changed = s, changed|1<<i
		}
		if r.IntN(4) == 0 {
			// A slot the writes reached that did not change.
			i := r.IntN(fanout)
			if changed&(1<<i) == 0 {
				p[i], changed = from.slot(i), changed|1<<i
			}
		}
		want := from.all()
		for i := range want {
			if changed&(1<<i) != 0 {
				want[i] = p[i]
			}
		}
		wantSlots := want
		wocc, wmem := packSlots(nil, &want, mods)
		q := p
		occ, mem := patchSlots(nil, from, &q, changed, mods, false)
		if occ != wocc || occ != patchedOcc(from, &p, changed) {
			t.Fatalf("round %d: occupancy %016b, packSlots %016b, patchedOcc %016b", round, occ, wocc, patchedOcc(from, &p, changed))
		}
		got := &node{born: 6, occ: occ, mem: mem, mods: mods}
		ref := &node{born: 6, occ: wocc, mem: wmem, mods: mods}
		if !slices.Equal(got.entries(), ref.entries()) || !bytes.Equal(mem, wmem) || cap(mem) != cap(wmem) {
			t.Fatalf("round %d: patched entries %v, packSlots %v", round, got.entries(), ref.entries())
		}
		if bits.OnesCount16(occ) == 0 {
			continue
		}
		if withoutIDs(got.all()) != withoutIDs(wantSlots) {
			t.Fatalf("round %d: patched node's slots differ from the patched slots", round)
		}
		if !bytes.Equal(appendNode(nil, got, mods), appendNode(nil, ref, mods)) {
			t.Fatalf("round %d: records differ", round)
		}
	}
}

// makeNode builds a node from a full slot array, in one allocation of its
// mem (see node.mem), naming its leaves' modules by their ids in t.
func makeNode(born uint64, a *[fanout]slot, t *moduleTable) *node {
	n := &node{born: born, mods: t}
	n.occ, n.mem = packSlots(nil, a, t)
	return n
}

// all returns the node's slots as a full array.
func (n *node) all() (a [fanout]slot) {
	j := 0
	for i := range a {
		if n.occ&(1<<i) != 0 {
			a[i] = n.at(j)
			j++
		}
	}
	return a
}
