package order

import "testing"

// TestEmptyBlocks: with EmptyEvery, a sub-DAG that releases nothing
// releases an empty block exactly when the watermark crosses a multiple of
// it, timed at that multiple, linked to the previous block, and block
// times stay ordered around a block with transactions; without it, never.
func TestEmptyBlocks(t *testing.T) {
	const every = 100
	idle := func(o *Orderer, at int64) *Block {
		var sub []Cert
		for j := range 4 {
			sub = append(sub, Cert{Author: j, Time: at})
		}
		return o.Apply(sub)
	}
	off, _ := New(Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 1000, Retain: 2000})
	on, _ := New(Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 1000, Retain: 2000, EmptyEvery: every})
	// Watermarks 50 (first: the genesis watermark is not crossed), 90,
	// 130 (crosses 100), 170, 230 (crosses 200), 450 (crosses 300 and
	// 400: one block, at 400).
	cases := []struct {
		at       int64
		wantTime int64 // 0 = no block
	}{{50, 0}, {90, 0}, {130, 100}, {170, 0}, {230, 200}, {450, 400}}
	var prev *Block
	for _, c := range cases {
		if b := idle(off, c.at); b != nil {
			t.Fatalf("EmptyEvery 0: block %+v at %d", b, c.at)
		}
		b := idle(on, c.at)
		switch {
		case c.wantTime == 0 && b != nil:
			t.Fatalf("watermark %d: unexpected block %+v", c.at, b)
		case c.wantTime == 0:
			continue
		case b == nil || b.Time != c.wantTime || len(b.Txs) != 0 || b.Watermark != c.at:
			t.Fatalf("watermark %d: block %+v, want an empty one at %d", c.at, b, c.wantTime)
		case prev != nil && (b.Height != prev.Height+1 || b.Parent != prev.ID()):
			t.Fatalf("block %+v does not follow %+v", b, prev)
		}
		prev = b
	}
	// A transaction acked at 460..470 is released in a block timed at its
	// timestamp, after the empty block at 400, not an empty one at 500.
	a := txid(1)
	var sub []Cert
	for j := range 4 {
		sub = append(sub, Cert{Author: j, Time: 520, Acks: []Ack{{TxID: a, TRecv: 460 + int64(j)}}})
	}
	b := on.Apply(sub)
	if b == nil || len(b.Txs) != 1 || b.Time != 461 || b.Time <= prev.Time || b.Height != prev.Height+1 {
		t.Fatalf("block %+v after %+v", b, prev)
	}
	// The state carries the watermark, so a restored layer decides alike.
	st := on.State()
	r, err := Restore(on.Params(), &st)
	if err != nil {
		t.Fatal(err)
	}
	if x, y := idle(on, 610), idle(r, 610); x == nil || y == nil || x.ID() != y.ID() || x.Time != 600 {
		t.Fatalf("restored layer: %+v, original %+v", y, x)
	}
}
