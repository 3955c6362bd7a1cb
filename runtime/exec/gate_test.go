package exec

import (
	"bytes"
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

// waitGoroutines waits until at most n goroutines run, collecting (which
// runs cleanups) while it waits, and fails the test at the deadline: the
// helpers stopped exit at once, the deadline only covers unrelated
// goroutines of the runtime settling.
func waitGoroutines(t *testing.T, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		runtime.GC()
		runtime.Gosched()
	}
	if got := runtime.NumGoroutine(); got > n {
		t.Fatalf("%s: %d goroutines, %d before", what, got, n)
	}
}

// TestKeptCrewSurvivesTheBlock checks that an executor keeps its block's
// helpers for the next block (the same crew, not a new one), and that
// the kept crew holds no phase of the block it last ran.
func TestKeptCrewSurvivesTheBlock(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 30, 1000)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 3})
	defer x.Close()
	var last *crew
	for h := uint64(2); h < 5; h++ {
		b, txs := newGen(h, 20).block(h, int64(h)*1e12, 600)
		if _, err := x.ExecuteBlock(ctx, s, b, txs); err != nil {
			t.Fatal(err)
		}
		c := x.crew.p.Load()
		switch {
		case c == nil:
			t.Fatalf("height %d: no crew kept", h)
		case last != nil && c != last:
			t.Fatalf("height %d: a new crew, not the kept one", h)
		case c.cur.Load() != nil:
			t.Fatalf("height %d: the kept crew holds the block's last phase", h)
		}
		last = c
	}
}

// TestExecutorCloseStopsHelpers checks that Close stops the helpers an
// executor keeps, including while blocks run on it at once, that the
// executor still gives the serial result after Close, and that an
// executor dropped without Close has its helpers stopped by the
// collector's cleanup.
func TestExecutorCloseStopsHelpers(t *testing.T) {
	ctx := context.Background()
	r := NewNativeRunner(NativeModules())
	s := newStore(t, 30, 1000)
	b, txs := newGen(7, 20).block(2, 2e12, 600)
	res, err := New(r, Options{Workers: 1}).ExecuteSerial(ctx, s, b, txs)
	if err != nil {
		t.Fatal(err)
	}
	want := encodeResult(res)
	check := func(x *Executor, serial bool) {
		t.Helper()
		run := x.ExecuteBlock
		if serial {
			run = x.ExecuteSerial
		}
		res, err := run(ctx, s, b, txs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encodeResult(res), want) {
			t.Fatal("result differs from serial")
		}
	}
	before := runtime.NumGoroutine()

	x := New(r, Options{Workers: 4})
	check(x, false)
	if n := runtime.NumGoroutine(); n < before+3 {
		t.Fatalf("%d goroutines after a block, want the 3 kept helpers over %d", n, before)
	}
	// Blocks at once (one takes the kept crew, the others start theirs)
	// with Close in the middle.
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			defer func() { errs <- nil }()
			check(x, i%2 == 0)
		}()
	}
	x.Close()
	for range 4 {
		<-errs
	}
	x.Close() // a crew given back after the first Close is stopped too
	waitGoroutines(t, before, "after Close")
	check(x, false) // still usable: a crew of its own, stopped when done
	check(x, true)
	waitGoroutines(t, before, "a block after Close")

	x.Wake() // closed: starts nothing
	waitGoroutines(t, before, "a Wake after Close")

	func() {
		y := New(r, Options{Workers: 4})
		check(y, false)
	}()
	waitGoroutines(t, before, "an executor dropped without Close")
}

// TestWakeParksAgain checks that Wake starts an executor's helpers when
// it has none, that woken helpers park again without a block (the spin
// is bounded), and that Wake between, during and after blocks changes
// no result.
func TestWakeParksAgain(t *testing.T) {
	ctx := context.Background()
	r := NewNativeRunner(NativeModules())
	s := newStore(t, 30, 1000)
	b, txs := newGen(9, 20).block(2, 2e12, 600)
	res, err := New(r, Options{Workers: 1}).ExecuteSerial(ctx, s, b, txs)
	if err != nil {
		t.Fatal(err)
	}
	want := encodeResult(res)
	x := New(r, Options{Workers: 3})
	defer x.Close()
	x.Wake()
	c := x.crew.p.Load()
	if c == nil {
		t.Fatal("Wake started no crew")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.parked.Load() < 2 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := c.parked.Load(); n < 2 {
		t.Fatalf("%d of 2 woken helpers parked again", n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			x.Wake()
			runtime.Gosched()
		}
	}()
	for range 4 {
		x.Wake()
		res, err := x.ExecuteBlock(ctx, s, b, txs)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encodeResult(res), want) {
			t.Fatal("result differs from serial")
		}
	}
	<-done
}
