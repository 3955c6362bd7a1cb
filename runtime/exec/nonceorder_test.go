package exec

import (
	"context"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func TestNonceOrder(t *testing.T) {
	type st struct {
		sender int
		nonce  uint64
	}
	cases := []struct {
		name string
		txs  []st
		want []int // block index executed at each position; nil = block order
	}{
		{"empty", nil, nil},
		{"in order", []st{{0, 1}, {0, 2}, {1, 1}}, nil},
		{"swapped pair", []st{{0, 2}, {0, 1}}, []int{1, 0}},
		{"interleaved senders keep their slots", []st{{0, 3}, {1, 2}, {0, 1}, {1, 1}, {2, 9}, {0, 2}}, []int{2, 3, 5, 1, 4, 0}},
		{"duplicates keep block order", []st{{0, 2}, {0, 1}, {0, 2}, {0, 1}}, []int{1, 3, 0, 2}},
		{"gaps sort too", []st{{0, 7}, {1, 1}, {0, 2}, {0, 5}}, []int{2, 1, 3, 0}},
		{"other sender untouched", []st{{1, 5}, {0, 2}, {1, 4}, {0, 1}}, []int{2, 3, 0, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			txs := make([]*types.Tx, len(c.txs))
			senders := make([]types.Address, len(c.txs))
			for i, s := range c.txs {
				txs[i] = transfer(s.sender, s.sender+1, 1, s.nonce, 1)
				senders[i] = addr(s.sender)
			}
			got := nonceOrder(txs, senders)
			if !slices.Equal(got, c.want) {
				t.Fatalf("order %v, want %v", got, c.want)
			}
		})
	}
}

// TestNonceOrderBlock: nonces 2,1 of one sender (the fair order can place
// them so) both execute, and the receipts stay in the block's order.
func TestNonceOrderBlock(t *testing.T) {
	const T = int64(5e12)
	txs := []*types.Tx{transfer(0, 1, 1, 2, T), transfer(2, 1, 1, 1, T), transfer(0, 1, 1, 1, T)}
	b := mkBlock(2, T, txs)
	before := slices.Clone(b.Txs)
	for _, cfg := range configs(NewNativeRunner(NativeModules())) {
		t.Run(cfg.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, 3, 100)
			res, err := cfg.execute(ctx, s, b, txs)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res.Receipts {
				if r.TxID != b.Txs[i].ID || r.Status != types.StatusOK {
					t.Errorf("receipt %d: %s (%s) for %x, want ok for %x", i, r.Status, r.Error, r.TxID[:4], b.Txs[i].ID[:4])
				}
			}
			if !slices.Equal(b.Txs, before) {
				t.Fatal("the caller's block was modified")
			}
			if _, err := s.Commit(ctx, 2, res.Writes); err != nil {
				t.Fatal(err)
			}
			if n := nonceOf(t, s, 0); n != 2 {
				t.Fatalf("nonce %d, want 2", n)
			}
		})
	}
}
