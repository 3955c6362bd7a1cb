package state

import (
	"bytes"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// FuzzDecodeRecords feeds arbitrary bytes to every decoder of stored
// records. None may panic; a node or root that decodes must encode back to
// the same bytes (one record, one encoding), except that a leaf carrying
// inline a module the table has an id for re-encodes with the id (a record
// written before the module had one).
func FuzzDecodeRecords(f *testing.F) {
	mods := newModuleTable(ModuleIDsMax)
	mods.assign([]types.Address{{}, {1}, {2}})
	var a [fanout]slot
	a[3] = leafSlot(types.KeyPath(types.StateKey{Key: []byte("k")}), types.Hash{2}, types.StateKey{Key: []byte("k")})
	a[9] = slot{kind: slotChild, h: types.Hash{3}, born: 300}
	n := makeNode(7, &a, mods)
	f.Add(appendNode(nil, n, mods))
	mk := types.StateKey{Module: types.Address{5}, Key: []byte("m")}
	a[12] = leafSlot(types.KeyPath(mk), types.Hash{4}, mk) // inline
	f.Add(appendNode(nil, makeNode(7, &a, mods), mods))
	f.Add(encodeRoot(a[3]))
	f.Add(encodeRoot(a[9]))
	f.Add(encodeStale(staleList{refs: []nodeRef{{born: 2, id: types.Hash{4}}}, paths: []types.Hash{{5}}}))
	f.Add(types.MustEncode(ChangeSet{Height: 1, Changes: []Change{{Key: types.StateKey{Key: []byte{}}, New: []byte{1}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The highest parent born admits every slot born.
		if n, err := decodeNode(b, nodeRef{born: ^uint64(0)}, mods); err == nil {
			again := appendNode(nil, n, mods)
			if len(again) == len(b) && !bytes.Equal(again, b) {
				t.Fatalf("node %x re-encodes as %x", b, again)
			}
			if n2, err := decodeNode(again, n.ref(), mods); err != nil || withoutIDs(n2.all()) != withoutIDs(n.all()) {
				t.Fatalf("node %x re-encodes as %x, which decodes differently: %v", b, again, err)
			}
			n.hashMatches(types.Hash{})
		}
		if r, err := decodeRoot(b); err == nil && !bytes.Equal(encodeRoot(r), b) {
			t.Fatalf("root %x re-encodes differently", b)
		}
		if l, err := decodeStale(b); err == nil && !bytes.Equal(encodeStale(l), b) && len(b) > 0 {
			t.Fatalf("stale list %x re-encodes differently", b)
		}
		_, _ = decodeChangeSet(b)
	})
}
