package state

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestRecordLengthsExact: a commit encodes its records straight into
// pebble's batch at the lengths nodeRecordLen and valueRecordLen announce
// (a short length would cut a record, a long one leave zero bytes in it),
// so both must be exact for every shape: random nodes of leaves and
// children with borns of every uvarint length, and values with keys and
// values of every length class. Each record must also decode back.
func TestRecordLengthsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	hash := func() (h types.Hash) {
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		return h
	}
	for range 2000 {
		parent := r.Uint64N(1 << (8 * r.IntN(8)))
		var a [fanout]slot
		for i := range a {
			born := r.Uint64N(parent + 1)
			switch r.IntN(3) {
			case 1:
				a[i] = slot{kind: slotLeaf, h: hash(), kp: hash(), born: born}
			case 2:
				a[i] = slot{kind: slotChild, h: hash(), born: born}
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
	}
	for _, kl := range []int{0, 1, 127, 128, types.StateKeyMax} {
		for _, vl := range []int{1, 100, 1 << 14} {
			k := types.StateKey{Key: bytes.Repeat([]byte{'k'}, kl)}
			k.Module[0] = byte(kl)
			v := bytes.Repeat([]byte{'v'}, vl)
			enc := appendValue(nil, k, v)
			if len(enc) != valueRecordLen(k, v) {
				t.Fatalf("value record of %d bytes, valueRecordLen %d", len(enc), valueRecordLen(k, v))
			}
			gk, gv, err := decodeValue(enc)
			if err != nil || !bytes.Equal(gk.Key, k.Key) || gk.Module != k.Module || !bytes.Equal(gv, v) {
				t.Fatalf("value record does not decode back: %v", err)
			}
		}
	}
}
