package enginetest

import (
	"testing"

	"github.com/kairos-network/kairos/types"
)

// BenchmarkTokenTransfer: one token transfer (the Go example module)
// through the full host path, host.Run on runtime/vm, per engine and
// instance strategy: pooled (restore the post-_initialize snapshot) or
// fresh (instantiate and run _initialize per frame). The writes are not
// committed, so every iteration does the same work.
//
//	go test -run '^$' -bench TokenTransfer -count 3 ./runtime/enginetest/
//
// Metered against unmetered code is runtime/meter's BenchmarkCall.
func BenchmarkTokenTransfer(b *testing.B) {
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			ch := newChain(b, c)
			setup(ch)
			t := tx{from: alice, to: token, method: "transfer", input: enc(bob, uint64(1)), time: t0}
			var gas int64
			for b.Loop() {
				r := ch.run(t, false, false)
				if r.Status != types.StatusOK {
					b.Fatal(record(r))
				}
				gas = r.GasUsed
			}
			b.ReportMetric(float64(gas), "gas/op")
		})
	}
}
