package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// BenchmarkCluster measures end-to-end throughput of four real nodes on
// 127.0.0.1: b.N counter transactions (distinct senders, 16 keys) are
// submitted round robin, and the clock stops when node 0 has executed all
// of them. The baseline, measured in the same run, executes the same
// transactions in one block straight on a pebble store: the cost of
// execution and commit alone, without ordering, networking or fsyncs per
// consensus step.
//
//	go test -run '^$' -bench BenchmarkCluster -benchtime 400x ./node/
func BenchmarkCluster(b *testing.B) {
	// The sub-benchmarks get their own b.N; both build the same txs.
	benchTxs := func(n int) [][]byte {
		raws := make([][]byte, n)
		for i := range raws {
			raws[i] = counterTx(1_000_000+i, fmt.Sprintf("k%d", i%16))
		}
		return raws
	}
	b.Run("baseline-execute-only", func(b *testing.B) {
		raws := benchTxs(b.N)
		s, err := state.OpenPebble(b.TempDir(), state.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		blk := &types.Block{Height: 1, Time: time.Now().UnixNano()}
		var txs []*types.Tx
		for _, raw := range raws {
			tx, err := types.DecodeTx(raw, testChain, blk.Time, types.DefaultTxLimits)
			if err != nil {
				b.Fatal(err)
			}
			blk.Txs = append(blk.Txs, types.OrderedTx{ID: tx.ID(), TS: blk.Time})
			txs = append(txs, tx)
		}
		b.ResetTimer()
		x := exec.New(exec.NewNativeRunner(exec.NativeModules()), exec.Options{Workers: 1})
		res, err := x.ExecuteBlock(context.Background(), s, blk, txs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(context.Background(), 1, res.Writes); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	})
	b.Run("four-nodes", func(b *testing.B) {
		raws := benchTxs(b.N)
		c := newCluster(b, 4)
		b.ResetTimer()
		var ids []types.Hash
		start := time.Now()
		for i, raw := range raws {
			id, err := c.nodes[i%4].SubmitTx(context.Background(), raw)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		submitted := time.Since(start)
		deadline := time.Now().Add(5 * time.Minute)
		for !c.executedAll(c.nodes[0], ids) {
			if time.Now().After(deadline) {
				b.Fatalf("not executed: %+v", c.nodes[0].Status())
			}
			time.Sleep(5 * time.Millisecond) // polling a condition
		}
		b.StopTimer()
		h := c.nodes[0].Status().Height
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
		b.ReportMetric(float64(b.N)/float64(h), "tx/block")
		b.ReportMetric(float64(submitted.Milliseconds()), "submit-ms")
	})
}
