package exec

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// A block's parallel phases (listing the entries, prefetch, execution,
// merge) each hand parts to other goroutines. In traces of 2-worker
// blocks a goroutine started for a phase waited a median 72 µs (mean
// 358 µs) before it ran, and most ran only after the caller had done its
// own part: short phases then ran serially, plus the wait. Two measures
// cut that cost:
//
//   - The parts of a phase are claimed from an atomic cursor, never
//     assigned, and the caller claims too. A helper joins a phase only
//     while the caller still works on it (see gate): one that comes late
//     does nothing, so a phase is never slower than the caller doing it
//     alone.
//   - A block has a crew: helper goroutines started once, in prepare,
//     that take phase after phase until the block is merged, spinning a
//     bounded while between phases instead of being started (and waking
//     a thread) for each one.

// gate lets helpers join a phase only while its caller is still working
// on it.
type gate struct {
	mu     sync.Mutex
	closed bool
	busy   atomic.Int32   // the helpers that joined and have not left
	wg     sync.WaitGroup // the same helpers, for a caller that parks
}

// enter joins the phase; false means it is over (the caller did it all).
// A helper that entered calls leave when done.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.busy.Add(1)
	g.wg.Add(1)
	return true
}

// leave is a joined helper's end of the phase.
func (g *gate) leave() {
	g.busy.Add(-1)
	g.wg.Done()
}

// closeSpin is how many times a caller whose part is done yields while
// a helper still works on the phase before it parks (~0.1 ms; a helper
// lagging in a short phase takes a few µs). Parked at once in wg.Wait,
// the caller is readied by the helper's Done, most likely onto the
// helper's own core, which then has two goroutines and hands one to the
// idle core only once a thread wakes there: in 2-worker numberings the
// helper ran 4–34 % of the short phases' parts that follow a phase
// (counting the keys, the repeats' slots), with the spin 39–44 %.
const closeSpin = 1000

// close ends the phase for helpers that have not joined and waits for
// those that have.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	for i := 0; i < closeSpin && g.busy.Load() > 0; i++ {
		runtime.Gosched()
	}
	g.wg.Wait()
}

// phase is one parallel phase: fn(0..n-1), claimed through next.
type phase struct {
	fn   func(int)
	n    int
	next atomic.Int64
	g    gate
}

// claim runs parts of ph until none is left to claim.
func (ph *phase) claim() {
	for p := int(ph.next.Add(1)) - 1; p < ph.n; p = int(ph.next.Add(1)) - 1 {
		ph.fn(p)
	}
}

// join is a helper's part in ph: the parts it can still claim.
func (ph *phase) join() {
	if ph.g.enter() {
		defer ph.g.leave()
		ph.claim()
	}
}

// crewSpin is how many times an idle crew helper yields, looking for the
// next phase, before it parks: about the serial stretch between two
// phases of a block (tens of µs), so that it is still running when the
// next phase comes, without burning a core through a block's serial
// execution or the time between blocks.
const crewSpin = 1000

// crew is a block's helper goroutines (see above). A nil *crew is valid:
// its phases start their helpers themselves.
type crew struct {
	cur     atomic.Pointer[phase]
	stopped atomic.Bool
	parked  atomic.Int32   // helpers parked on wake
	wake    chan struct{}  // a token per parked helper to wake
	done    sync.WaitGroup // the helpers, until they exit
}

// newCrew starts helpers goroutines; nil if there are none to start.
func newCrew(helpers int) *crew {
	if helpers <= 0 {
		return nil
	}
	c := &crew{wake: make(chan struct{}, helpers)}
	c.done.Add(helpers)
	for range helpers {
		go c.help()
	}
	return c
}

// help takes the crew's phases until it is stopped.
func (c *crew) help() {
	defer c.done.Done()
	var seen *phase
	for spins := 0; ; {
		if ph := c.cur.Load(); ph != seen && ph != nil {
			seen, spins = ph, 0
			ph.join()
			continue
		}
		if c.stopped.Load() {
			return
		}
		if spins < crewSpin {
			spins++
			runtime.Gosched()
			continue
		}
		// Park. Counted before the last look, so a phase posted after
		// it sees the count and sends a token.
		c.parked.Add(1)
		if ph := c.cur.Load(); (ph != seen && ph != nil) || c.stopped.Load() {
			c.parked.Add(-1)
			continue
		}
		<-c.wake
		c.parked.Add(-1)
		spins = 0
	}
}

// post makes ph the crew's current phase and wakes parked helpers.
func (c *crew) post(ph *phase) {
	c.cur.Store(ph)
	c.signal()
}

func (c *crew) signal() {
	for range c.parked.Load() {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// stop ends the crew and waits for its helpers to exit: none may touch
// the block's memory once it is handed back.
func (c *crew) stop() {
	if c == nil {
		return
	}
	c.stopped.Store(true)
	c.signal()
	c.done.Wait()
}

// parallel runs fn(0..n-1) and returns when all have returned. The caller
// and the crew's helpers claim parts from an atomic cursor, so which
// goroutine runs a part varies: fn's result must depend only on its part,
// never on the goroutine or the order of the parts. Without a crew (one
// worker) the caller runs every part: the parts are units of claiming, not
// goroutines to start.
func (c *crew) parallel(n int, fn func(int)) {
	if n <= 1 {
		fn(0)
		return
	}
	ph := &phase{fn: fn, n: n}
	if c != nil {
		c.post(ph)
	}
	ph.claim()
	ph.g.close()
}

// goWorkers runs work(p) for p = 0..n-1 through c.parallel, each with a
// worker of its own (see worker) flushed when work returns, before
// goWorkers returns, so the engine has its instances back. A helper may
// come late or never, so work(p), for any p alone, must finish the whole
// phase: the workers claim their transactions.
func (c *crew) goWorkers(ctx context.Context, n int, work func(ctx context.Context, p int)) {
	c.parallel(n, func(p int) {
		w := new(worker)
		defer w.flush()
		work(withWorker(ctx, w), p)
	})
}
