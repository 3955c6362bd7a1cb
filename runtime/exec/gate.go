package exec

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// A block's parallel phases (key numbering, prefetch, execution,
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
//   - An executor has a crew: helper goroutines that take phase after
//     phase, spinning a bounded while between phases instead of being
//     started (and waking a thread) for each one. The executor keeps it
//     from block to block, parked (keptCrew). A parked helper, like one
//     just started, runs only once a thread wakes on the idle core (a
//     median ~150 µs), so a block's first phase runs mostly on its
//     caller unless the executor was woken ahead of it (Executor.Wake).

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
	id   uint64 // set by post: helpers tell phases apart by it
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
// execution.
const crewSpin = 1000

// wokenSpin replaces crewSpin for helpers woken by Executor.Wake, ahead
// of a block (~1 ms alone on a core): long enough to span a caller's
// serial work before the block, bounded so that a Wake without a block
// costs that and no more.
const wokenSpin = 10 * crewSpin

// crew is a block's helper goroutines (see above). A nil *crew is valid:
// the caller then runs every part of a phase.
type crew struct {
	cur     atomic.Pointer[phase]
	posts   atomic.Uint64 // phases posted so far, the id of the last
	rousals atomic.Uint64 // Executor.Wake calls: helpers spin wokenSpin after one
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

// help takes the crew's phases until it is stopped. It knows the last
// phase it saw by id, not by pointer: a parked helper of a kept crew must
// not keep its last block's phase (and all that its function holds)
// alive.
func (c *crew) help() {
	defer c.done.Done()
	var seen, roused uint64
	limit := crewSpin
	for spins := 0; ; {
		if ph := c.cur.Load(); ph != nil && ph.id != seen {
			seen, spins, limit = ph.id, 0, crewSpin
			ph.join()
			continue
		}
		if c.stopped.Load() {
			return
		}
		if r := c.rousals.Load(); r != roused {
			roused, spins, limit = r, 0, wokenSpin
		}
		if spins < limit {
			spins++
			runtime.Gosched()
			continue
		}
		// Park. Counted before the last look, so a phase posted after
		// it sees the count and sends a token.
		c.parked.Add(1)
		if ph := c.cur.Load(); (ph != nil && ph.id != seen) || c.stopped.Load() || c.rousals.Load() != roused {
			c.parked.Add(-1)
			continue
		}
		<-c.wake
		c.parked.Add(-1)
		spins, limit = 0, crewSpin
	}
}

// post makes ph the crew's current phase and wakes parked helpers.
func (c *crew) post(ph *phase) {
	ph.id = c.posts.Add(1)
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

// rouse wakes c's helpers for wokenSpin (see Executor.Wake).
func (c *crew) rouse() {
	c.rousals.Add(1)
	c.signal()
}

// stop ends the crew and waits for its helpers to exit. Idempotent.
func (c *crew) stop() {
	if c == nil {
		return
	}
	c.stopped.Store(true)
	c.signal()
	c.done.Wait()
}

// keptCrew is the crew an executor keeps between blocks (see Executor):
// a block takes it in prepare and gives it back when merged. A block
// that finds none (the first, or one running beside another block of the
// executor) starts a crew of its own and keeps it if the place is empty
// when it is done, or stops it. It is a separate object from the
// Executor, so that a cleanup of an unreachable executor can stop the
// crew it kept.
type keptCrew struct {
	p       atomic.Pointer[crew]
	started atomic.Bool // a crew was started (by a block or a rouse)
	closed  atomic.Bool
}

// take returns the kept crew, its parked helpers woken, or a new one of
// helpers goroutines (nil if helpers is 0).
func (k *keptCrew) take(helpers int) *crew {
	if c := k.p.Swap(nil); c != nil {
		c.signal()
		return c
	}
	k.started.Store(true)
	return newCrew(helpers)
}

// give takes c back from its block: kept unless another crew is, or k is
// closed, else stopped. The block's last phase is dropped, so that
// nothing of the block stays reachable. Once the block's last phase has
// returned no helper touches its memory: a phase waits for every helper
// that joined it, and a closed one admits none.
func (k *keptCrew) give(c *crew) {
	if c == nil {
		return
	}
	c.cur.Store(nil)
	if k.closed.Load() || !k.p.CompareAndSwap(nil, c) {
		c.stop()
		return
	}
	if k.closed.Load() { // closed since the check: close may have missed c
		k.close()
	}
}

// rouse wakes the kept crew's helpers for wokenSpin. Before the first
// block it starts the crew to keep; while a block holds the crew it does
// nothing (its helpers are at work), and a block that takes the crew
// just after the look finds helpers that spin longer between its phases,
// which changes no result.
func (k *keptCrew) rouse(helpers int) {
	c := k.p.Load()
	if c == nil && k.started.CompareAndSwap(false, true) {
		k.give(newCrew(helpers))
		c = k.p.Load()
	}
	if c != nil {
		c.rouse()
	}
}

// close stops the kept crew, and the ones given back from now on.
func (k *keptCrew) close() {
	k.closed.Store(true)
	if c := k.p.Swap(nil); c != nil {
		c.stop()
	}
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
