package exec

import (
	"context"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestSimulateDerivesAccess: a transaction simulated with an empty access
// list returns the access it used; declaring exactly that makes it pass in
// a block with the same receipt, and dropping any entry makes it fail.
func TestSimulateDerivesAccess(t *testing.T) {
	ctx := context.Background()
	env := BlockEnv{Height: 2, Time: 1e12}
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	payloads := []types.Payload{
		call(TokenModule, "transfer", TransferArgs(addr(1), 5)),
		call(ScanModule, "sum", []byte("a/")),
		call(ScanModule, "clear", []byte("a/x/")),
		call(CounterModule, "incr", []byte("c")),
	}
	for _, p := range payloads {
		t.Run(p.Method, func(t *testing.T) {
			s := newStore(t, 2, 100)
			tx := mkTx(0, 1, 1e18, p)
			sim, err := x.Simulate(ctx, s, env, tx)
			if err != nil {
				t.Fatal(err)
			}
			if sim.Receipt.Status != types.StatusOK || len(sim.Access) == 0 {
				t.Fatalf("simulate: %s (%s), access %v", sim.Receipt.Status, sim.Receipt.Error, sim.Access)
			}
			run := func(access []types.Access) types.Receipt {
				tx := mkTx(0, 1, 1e18, p, access...)
				txs := []*types.Tx{tx}
				res, err := x.ExecuteBlock(ctx, s, mkBlock(env.Height, env.Time, txs), txs)
				if err != nil {
					t.Fatal(err)
				}
				return res.Receipts[0]
			}
			r := run(sim.Access)
			if r.Status != types.StatusOK || r.GasUsed != sim.Receipt.GasUsed || string(r.Return) != string(sim.Receipt.Return) {
				t.Fatalf("block: %s gas %d, simulation gas %d (%s)", r.Status, r.GasUsed, sim.Receipt.GasUsed, r.Error)
			}
			for i := range sim.Access {
				if r := run(slices.Delete(slices.Clone(sim.Access), i, i+1)); r.Status != types.StatusAccessViolation {
					t.Errorf("without entry %d: %s, want access_violation", i, r.Status)
				}
			}
		})
	}
}

func TestSimulateTransferAccessList(t *testing.T) {
	s := newStore(t, 2, 100)
	x := New(NewNativeRunner(NativeModules()), Options{})
	sim, err := x.Simulate(context.Background(), s, BlockEnv{Height: 2, Time: 1}, mkTx(0, 1, 1e18, call(TokenModule, "transfer", TransferArgs(addr(1), 5))))
	if err != nil {
		t.Fatal(err)
	}
	want := []types.Access{rw(TokenModule, BalanceKey(addr(0))), rw(TokenModule, BalanceKey(addr(1)))}
	slices.SortFunc(want, func(a, b types.Access) int { return slices.Compare(a.Key, b.Key) })
	if len(sim.Access) != 2 || string(types.MustEncode(sim.Access)) != string(types.MustEncode(want)) {
		t.Fatalf("access %v, want %v", sim.Access, want)
	}
	if len(sim.Writes) != 2 {
		t.Fatalf("writes %v", sim.Writes)
	}
	// A stale nonce simulates as invalid, and the state is untouched.
	sim, err = x.Simulate(context.Background(), s, BlockEnv{Height: 2, Time: 1}, mkTx(0, 7, 1e18, call(TokenModule, "transfer", TransferArgs(addr(1), 5))))
	if err != nil || sim.Receipt.Status != types.StatusInvalid {
		t.Fatalf("stale nonce: %v %+v", err, sim)
	}
	if n := nonceOf(t, s, 0); n != 0 {
		t.Fatalf("simulation consumed nonce: %d", n)
	}
}
