package exec

import (
	"bytes"
	"context"
	"math/rand/v2"
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
			got := nonceOrder(txs, newAccessTable(txs, senders, 1).senderGroups)
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

// TestNonceOrderMetamorphic: shuffling each sender's transactions among
// the slots it holds (distinct nonces, with gaps) changes neither the
// write set nor any transaction's receipt, in every config.
func TestNonceOrderMetamorphic(t *testing.T) {
	const T, senders, n = int64(5e12), 4, 40
	ctx := context.Background()
	for seed := range uint64(seeds(t, 5)) {
		r := rand.New(rand.NewPCG(seed, 7))
		sorted := make([]*types.Tx, n)
		next := make([]uint64, senders)
		slots := make([][]int, senders)
		for i := range sorted {
			s := r.IntN(senders)
			next[s] += 1 + uint64(r.IntN(10)/9) // a gap now and then
			sorted[i] = transfer(s, r.IntN(senders+2), uint64(r.IntN(30)), next[s], T)
			slots[s] = append(slots[s], i)
		}
		shuffled := slices.Clone(sorted)
		for _, pos := range slots {
			p := r.Perm(len(pos))
			for k, j := range p {
				shuffled[pos[k]] = sorted[pos[j]]
			}
		}
		for _, cfg := range configs(NewNativeRunner(NativeModules())) {
			var got [2]*BlockResult
			for k, txs := range [][]*types.Tx{sorted, shuffled} {
				res, err := cfg.execute(ctx, newStore(t, senders+2, 100), mkBlock(2, T, txs), txs)
				if err != nil {
					t.Fatal(err)
				}
				got[k] = res
			}
			if !bytes.Equal(types.MustEncode(got[0].Writes), types.MustEncode(got[1].Writes)) {
				t.Fatalf("seed %d %s: write sets differ", seed, cfg.name)
			}
			byID := map[types.Hash][]byte{}
			for _, rc := range got[0].Receipts {
				byID[rc.TxID] = types.MustEncode(&rc)
			}
			for i, rc := range got[1].Receipts {
				if rc.TxID != shuffled[i].ID() || !bytes.Equal(byID[rc.TxID], types.MustEncode(&rc)) {
					t.Fatalf("seed %d %s: receipt %d differs", seed, cfg.name, i)
				}
			}
		}
	}
}
