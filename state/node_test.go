package state

import (
	"bytes"
	"math/rand/v2"
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
	for range 2000 {
		parent := r.Uint64N(1 << (8 * r.IntN(8)))
		var a [fanout]slot
		for i := range a {
			switch r.IntN(3) {
			case 1:
				k := types.StateKey{Key: bytes.Repeat([]byte{byte(r.Uint32())}, keyLens[r.IntN(len(keyLens))])}
				m := hash()
				k.Module = types.Address(m[:types.AddressLen])
				a[i] = leafSlot(types.KeyPath(k), hash(), k)
			case 2:
				a[i] = slot{kind: slotChild, h: hash(), born: r.Uint64N(parent + 1)}
			}
		}
		if c, _ := occupied(&a); c < 2 {
			continue
		}
		n := makeNode(parent, &a)
		enc := appendNode(nil, n)
		if len(enc) != nodeRecordLen(n) {
			t.Fatalf("node record of %d bytes, nodeRecordLen %d", len(enc), nodeRecordLen(n))
		}
		got, err := decodeNode(enc, n.ref())
		if err != nil || got.all() != a {
			t.Fatalf("node does not decode back: %v", err)
		}
		for i := range a {
			if r, err := decodeRoot(encodeRoot(a[i])); err != nil || r != a[i] {
				t.Fatalf("root record of slot %d does not decode back: %v", i, err)
			}
		}
	}
}
