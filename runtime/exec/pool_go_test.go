//go:build !race

// The Go guest takes seconds per instantiation under the race detector;
// the pooled engine's concurrency is raced with the WAT modules.

package exec

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestPooledGoToken runs blocks of Go token transfers (contracts/token, a
// Go guest with _initialize) at two conflict rates, plus one transfer that
// aborts, on the fresh engine serially and on one pooled engine serially
// and with 2 workers: results and roots must be byte-identical.
// KAIROS_EXEC_SKIP_GO=1 skips it (it builds the module with the local Go
// toolchain).
func TestPooledGoToken(t *testing.T) {
	if os.Getenv("KAIROS_EXEC_SKIP_GO") != "" {
		t.Skip("KAIROS_EXEC_SKIP_GO set")
	}
	code, err := BuildGoGuest("../../contracts/token")
	if err != nil {
		t.Fatal(err)
	}
	e := newPooledEngine(t, DefaultPoolConfig())
	fresh, pooled := NewRunner(nil, newFreshEngine(t)), NewRunner(nil, e)
	cs := []config{
		{name: "fresh serial", x: New(fresh, Options{}), serial: true},
		{name: "pooled serial", x: New(pooled, Options{}), serial: true},
		{name: "pooled workers=2", x: New(pooled, Options{Workers: 2}), serial: false},
	}
	ctx := context.Background()
	for _, rate := range []float64{0, 0.5} {
		b, txs, genesis, err := Workload(BenchGo, code, 24, 12, rate)
		if err != nil {
			t.Fatal(err)
		}
		// A transfer of more than the balance aborts in the guest.
		from, to := types.AddressFromPublicKey(benchPub(20)), types.AddressFromPublicKey(benchPub(21))
		bad := &types.Tx{Body: types.TxBody{ChainID: "bench", Sender: benchPub(20), Nonce: 1, ValidUntil: 2e12, GasLimit: 1 << 30,
			Access:  []types.Access{rw(benchGoToken, goBalanceKey(from)), rw(benchGoToken, goBalanceKey(to))},
			Payload: types.Payload{Kind: types.Call, Module: benchGoToken, Method: "transfer", Args: TransferArgs(to, 1<<41)}}}
		txs = append(txs[:6:6], append([]*types.Tx{bad}, txs[6:]...)...)
		b = mkBlock(2, 1e12, txs)
		var want []byte
		var wantRoot types.Root
		for _, c := range cs {
			s := genesisStore(t, genesis)
			res, err := c.execute(ctx, s, b, txs)
			if err != nil {
				t.Fatal(err)
			}
			for i, rc := range res.Receipts {
				status := types.StatusOK
				if i == 6 {
					status = types.StatusAborted // the overdraft
				}
				if rc.Status != status {
					t.Fatalf("%s: tx %d %s (%s), want %s", c.name, i, rc.Status, rc.Error, status)
				}
			}
			root, err := s.Commit(ctx, 2, res.Writes)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeResult(res); want == nil {
				want, wantRoot = got, root
			} else if !bytes.Equal(got, want) || root != wantRoot {
				t.Fatalf("conflict %.0f%%: %s differs from fresh serial", 100*rate, c.name)
			}
		}
	}
	st := e.Stats()
	t.Logf("pooled engine: %+v", st)
	if st.Reuses == 0 {
		t.Fatalf("no instance reused: %+v", st)
	}
	// Restores copy the pages a call dirtied, not the Go guest's ~2.6 MiB
	// snapshot: well under 1 MiB per reuse on average.
	if st.RestoredBytes <= 0 || st.RestoredBytes >= int64(st.Reuses)<<20 {
		t.Fatalf("restored %d bytes in %d reuses", st.RestoredBytes, st.Reuses)
	}
}
