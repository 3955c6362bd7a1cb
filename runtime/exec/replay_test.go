package exec

import (
	"context"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// nonceOf reads the account nonce of test account i from s.
func nonceOf(t *testing.T, s *state.Store, i int) uint64 {
	t.Helper()
	v, err := s.Get(context.Background(), AccountKey(addr(i)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Nonce(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReplayProtection(t *testing.T) {
	const T = int64(5e12) // block time
	ok, inv := types.StatusOK, types.StatusInvalid
	cases := []struct {
		name      string
		txs       []*types.Tx
		want      []types.Status
		wantNonce uint64 // of account 0 after the block
	}{
		{"first nonce is 1", []*types.Tx{transfer(0, 1, 1, 1, T)}, []types.Status{ok}, 1},
		{"nonce 0 is never valid", []*types.Tx{transfer(0, 1, 1, 0, T)}, []types.Status{inv}, 0},
		{"duplicate nonce in one block", []*types.Tx{transfer(0, 1, 1, 1, T), transfer(0, 1, 2, 1, T)}, []types.Status{ok, inv}, 1},
		{"identical tx twice", []*types.Tx{transfer(0, 1, 1, 1, T), transfer(0, 1, 1, 1, T)}, []types.Status{ok, inv}, 1},
		{"gap", []*types.Tx{transfer(0, 1, 1, 2, T)}, []types.Status{inv}, 0},
		{"sequence", []*types.Tx{transfer(0, 1, 1, 1, T), transfer(0, 1, 1, 2, T), transfer(0, 1, 1, 3, T)}, []types.Status{ok, ok, ok}, 3},
		{"valid until the block time", []*types.Tx{transfer(0, 1, 1, 1, T)}, []types.Status{ok}, 1},
		{"expired: nonce not consumed", []*types.Tx{transfer(0, 1, 1, 1, T-1), transfer(0, 1, 1, 1, T)}, []types.Status{inv, ok}, 1},
		{"bad nonce then the right one", []*types.Tx{transfer(0, 1, 1, 5, T), transfer(0, 1, 1, 1, T)}, []types.Status{inv, ok}, 1},
		{"failed tx consumes its nonce", []*types.Tx{transfer(0, 1, 1<<50, 1, T), transfer(0, 1, 1, 1, T)}, []types.Status{types.StatusAborted, inv}, 1},
	}
	for _, c := range cases {
		for _, cfg := range configs(NewNativeRunner(NativeModules())) {
			t.Run(c.name+"/"+cfg.name, func(t *testing.T) {
				ctx := context.Background()
				s := newStore(t, 2, 100)
				res, err := cfg.execute(ctx, s, mkBlock(2, T, c.txs), c.txs)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range res.Receipts {
					if r.Status != c.want[i] {
						t.Errorf("tx %d: %s (%s), want %s", i, r.Status, r.Error, c.want[i])
					}
					if r.Status == inv && (r.GasUsed != 0 || r.Error == "") {
						t.Errorf("tx %d: invalid with gas %d, error %q", i, r.GasUsed, r.Error)
					}
				}
				if _, err := s.Commit(ctx, 2, res.Writes); err != nil {
					t.Fatal(err)
				}
				if n := nonceOf(t, s, 0); n != c.wantNonce {
					t.Errorf("nonce %d, want %d", n, c.wantNonce)
				}
			})
		}
	}
}

// TestReplayAcrossBlocks: a transaction executed in one block is invalid in
// the next, and an invalid block leaves nothing but receipts.
func TestReplayAcrossBlocks(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 2, 100)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	tx := transfer(0, 1, 7, 1, 1e18)
	for _, step := range []struct {
		h    uint64
		want types.Status
	}{{2, types.StatusOK}, {3, types.StatusInvalid}} {
		txs := []*types.Tx{tx}
		res, err := x.ExecuteBlock(ctx, s, mkBlock(step.h, int64(step.h)*1e12, txs), txs)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Receipts[0].Status; got != step.want {
			t.Fatalf("height %d: %s, want %s", step.h, got, step.want)
		}
		if step.want == types.StatusInvalid && len(res.Writes) != 0 {
			t.Fatalf("height %d: invalid tx wrote %d keys", step.h, len(res.Writes))
		}
		if _, err := s.Commit(ctx, step.h, res.Writes); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.Get(ctx, types.StateKey{Module: TokenModule, Key: BalanceKey(addr(1))})
	if err != nil {
		t.Fatal(err)
	}
	if u64(v) != 107 {
		t.Fatalf("receiver balance %d, want 107 (one transfer)", u64(v))
	}
}
