package state

import (
	"bytes"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// FuzzDecodeRecords feeds arbitrary bytes to every decoder of stored
// records. None may panic; a node or root that decodes must encode back to
// the same bytes (one record, one encoding).
func FuzzDecodeRecords(f *testing.F) {
	var a [fanout]slot
	a[3] = leafSlot(types.KeyPath(types.StateKey{Key: []byte("k")}), types.Hash{2}, types.StateKey{Key: []byte("k")})
	a[9] = slot{kind: slotChild, h: types.Hash{3}, born: 300}
	n := makeNode(7, &a)
	f.Add(appendNode(nil, n))
	f.Add(encodeRoot(a[3]))
	f.Add(encodeRoot(a[9]))
	f.Add(encodeStale(staleList{refs: []nodeRef{{born: 2, id: types.Hash{4}}}, paths: []types.Hash{{5}}}))
	f.Add(types.MustEncode(ChangeSet{Height: 1, Changes: []Change{{Key: types.StateKey{Key: []byte{}}, New: []byte{1}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The highest parent born admits every slot born.
		if n, err := decodeNode(b, nodeRef{born: ^uint64(0)}); err == nil {
			if again := appendNode(nil, n); !bytes.Equal(again, b) {
				t.Fatalf("node %x re-encodes as %x", b, again)
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
