package host_test

import (
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// Runs, frames and their buffers are pooled and reused by later
// transactions; a Result must own everything in it. Metamorphic: the
// receipts of a sequence of increments read the same after every later
// transaction as when they were returned, and a transaction repeated on
// the same state gets the same receipt.
func TestResultsOutliveTheRun(t *testing.T) {
	for ei := range engines {
		t.Run(engines[ei].name, func(t *testing.T) {
			c := newChain(t, ei)
			self := addr("counter")
			c.deploy(self, contract(t, "counter_wat"), alice, nil, 1e9)
			record := func(r any) string { return fmt.Sprintf("%+v", r) }
			var kept []any
			var want []string
			for n := uint64(1); n <= 20; n++ {
				r := c.run(call{from: alice, to: self, method: "increment"}, false)
				if r.Status != types.StatusOK || len(r.Writes) != 1 || string(r.Writes[0].Value) != string(u64(n)) {
					t.Fatalf("increment %d: %+v", n, r)
				}
				kept = append(kept, r)
			}
			for _, r := range kept {
				want = append(want, record(r))
			}
			for range 3 { // every later run must leave the kept receipts alone
				c.run(call{from: bob, to: self, method: "increment"}, false)
				for i, r := range kept {
					if record(r) != want[i] {
						t.Fatalf("receipt %d changed:\n was %s\n now %s", i, want[i], record(r))
					}
				}
			}
			get := call{from: alice, to: self, method: "get"}
			if a, b := c.run(get, false), c.run(get, false); record(a) != record(b) {
				t.Fatalf("the same call twice:\n%+v\n%+v", a, b)
			}
		})
	}
}
