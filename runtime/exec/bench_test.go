package exec

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// BenchmarkExecute runs the transfer workload (10 000 accounts, 5 000
// transfers per block) serially and with 1 and 2 workers.
func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	for _, rate := range []float64{0, 0.1, 1} {
		blk, txs, genesis, err := TransferWorkload(10_000, 5_000, rate)
		if err != nil {
			b.Fatal(err)
		}
		s, err := state.OpenMemory(state.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, 1, genesis); err != nil {
			b.Fatal(err)
		}
		r := NewNativeRunner(NativeModules())
		for _, c := range []struct {
			name string
			run  func() (*BlockResult, error)
		}{
			{"serial", func() (*BlockResult, error) { return New(r, Options{}).ExecuteSerial(ctx, s, blk, txs) }},
			{"workers=1", func() (*BlockResult, error) { return New(r, Options{Workers: 1}).ExecuteBlock(ctx, s, blk, txs) }},
			{"workers=2", func() (*BlockResult, error) { return New(r, Options{Workers: 2}).ExecuteBlock(ctx, s, blk, txs) }},
		} {
			b.Run(fmt.Sprintf("conflict=%.0f%%/%s", 100*rate, c.name), func(b *testing.B) {
				for b.Loop() {
					if _, err := c.run(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(txs))*float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			})
		}
		s.Close()
	}
}

// TestBenchSmall runs Bench on a tiny workload (it fails on any transfer
// that is not OK) and checks the workload's conflict shape: 100% is one
// chain, 0% has no edge.
func TestBenchSmall(t *testing.T) {
	rows, err := Bench(context.Background(), BenchConfig{Accounts: 40, Txs: 20, Rounds: 1}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	_, txs, _, err := TransferWorkload(40, 20, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := buildDAG(txs, sendersOf(txs))
	for i := 1; i < len(txs); i++ {
		if d.ndeps[i] != 1 {
			t.Fatalf("100%% conflict: tx %d has %d dependencies, want 1", i, d.ndeps[i])
		}
	}
	_, txs, _, _ = TransferWorkload(40, 20, 0)
	if d := buildDAG(txs, sendersOf(txs)); len(d.out) != 0 {
		t.Fatalf("0%% conflict: %d edges", len(d.out))
	}
	if _, _, _, err := TransferWorkload(10, 6, 0); err == nil {
		t.Fatal("workload larger than its accounts accepted")
	}
}

func sendersOf(txs []*types.Tx) []types.Address {
	s := make([]types.Address, len(txs))
	for i, tx := range txs {
		s[i] = tx.SenderAddress()
	}
	return s
}
