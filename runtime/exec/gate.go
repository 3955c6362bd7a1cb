package exec

import (
	"context"
	"sync"
	"sync/atomic"
)

// gate lets helper goroutines join a phase of a block only while its
// caller is still working on it. The caller does the whole phase by
// itself if no helper joins (every phase's parts are claimed, never
// assigned), then closes the gate and waits only for the helpers that
// joined: a helper the scheduler starts late finds the gate closed and
// does nothing, so it can no longer make the phase slower than serial.
//
// Why: in traces of 2-worker blocks a goroutine started for a phase
// waited a median 72 µs (mean 358 µs) before it ran, and most ran only
// after the caller had done its own part, so the caller then waited for a
// helper that had nothing left to do but its static share.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // the helpers that joined
}

// enter joins the phase; false means it is over (the caller did it all).
// A helper that entered calls g.wg.Done when done.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// close ends the phase for helpers that have not joined and waits for
// those that have.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// parallel runs fn(0..n-1) and returns when all have returned. The caller
// and up to n-1 helper goroutines claim parts from an atomic cursor, so
// which goroutine runs a part varies: fn's result must depend only on
// its part, never on the goroutine or the order of the parts.
func parallel(n int, fn func(int)) {
	if n <= 1 {
		fn(0)
		return
	}
	var next atomic.Int64
	claim := func() {
		for p := int(next.Add(1)) - 1; p < n; p = int(next.Add(1)) - 1 {
			fn(p)
		}
	}
	g := new(gate)
	for range n - 1 {
		go func() {
			if g.enter() {
				defer g.wg.Done()
				claim()
			}
		}()
	}
	claim()
	g.close()
}

// goWorkers runs work(p) for p = 0..n-1, each with a worker of its own
// (see worker) flushed when work returns: p = 0 on the calling goroutine,
// the others on helpers that run only if they start before the caller's
// work returns (see gate). So work(p), for any p alone, must finish the
// whole phase: the workers claim their transactions, and the caller's
// returns only when none is left to run or running elsewhere unawaited.
// goWorkers returns once the caller's work and every joined helper's
// have returned and flushed, so the engine has its instances back.
func goWorkers(ctx context.Context, n int, work func(ctx context.Context, p int)) {
	run := func(p int) {
		w := new(worker)
		defer w.flush()
		work(withWorker(ctx, w), p)
	}
	g := new(gate)
	for p := 1; p < n; p++ {
		go func() {
			if g.enter() {
				defer g.wg.Done()
				run(p)
			}
		}()
	}
	run(0)
	g.close()
}
