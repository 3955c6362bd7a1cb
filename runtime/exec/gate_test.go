package exec

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelRunsEachPartOnce runs phases of many sizes through a crew
// (phase after phase, as a block does) and without one: each part must
// run exactly once, and parallel must not return before all have.
func TestParallelRunsEachPartOnce(t *testing.T) {
	for _, helpers := range []int{0, 1, 3} {
		c := newCrew(helpers)
		for round := range 200 {
			n := 1 + round%17
			runs := make([]atomic.Int32, n)
			c.parallel(n, func(p int) { runs[p].Add(1) })
			for p := range runs {
				if got := runs[p].Load(); got != 1 {
					t.Fatalf("helpers %d, round %d: part %d of %d ran %d times", helpers, round, p, n, got)
				}
			}
		}
		c.stop()
		c.stop() // idempotent: ExecuteBlock's deferred stop follows done's
	}
}

// TestGoWorkersFlushesEveryWorker checks that each work call gets a
// worker of its own on its context.
func TestGoWorkersFlushesEveryWorker(t *testing.T) {
	c := newCrew(1)
	defer c.stop()
	for range 50 {
		seen := make([]*worker, 3)
		c.goWorkers(context.Background(), 3, func(ctx context.Context, p int) { seen[p] = workerOf(ctx) })
		if seen[0] == nil || seen[0] == seen[1] || seen[1] == seen[2] || seen[0] == seen[2] {
			t.Fatalf("workers %p %p %p: want three distinct", seen[0], seen[1], seen[2])
		}
	}
}

// TestCrewStopLeavesNoGoroutine checks that a stopped crew's helpers
// have exited, whether parked or spinning when stopped.
func TestCrewStopLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		c := newCrew(2)
		c.parallel(4, func(int) {})
		c.stop()
	}
	// stop waits for its helpers, so none may be left; the deadline only
	// covers unrelated goroutines of the runtime settling.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after stopping crews, %d before", n, before)
	}
}
