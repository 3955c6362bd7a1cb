package exec

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/kairos-network/kairos/types"
)

// feed is a block's prefetch, published as it lands: the parent values of
// every transaction's declared exact keys, read in chunks of consecutive
// transactions and laid out by entry (own, as overlay.own reads them), so
// that a transaction waits only for its own chunk (wait) and execution
// starts as soon as the first chunk has landed, while later chunks are
// still read. A prefetch by slot (key order) could not be published so:
// a transaction's keys are spread over all the block's slots, so the first
// transaction would have waited for nearly all of it.
//
// The chunks are the parts of a crew phase (ph) that prepare posts and
// leaves running: the helpers claim chunks in the order the executing
// workers will reach them (lanes, see newFeed) until none is left, and a
// worker whose next transaction's chunk has not landed claims the next
// chunk itself (or, when every chunk is claimed, yields until the one it
// needs lands). So ExecuteSerial's helper reads ahead of its one executing
// goroutine, and ExecuteBlock's helper reads ahead and then joins the
// execution, where before both modes read the whole prefetch on both
// cores before either executed anything.
//
// Invariant: a transaction reads an entry of own only after wait returned
// for it, i.e. after the ready flag of its chunk was stored, which the
// chunk's loader stores after writing all of the chunk's entries (atomic
// store and load: the values happen before the read). No entry is written
// by two loaders: chunks are disjoint ranges of entries.
type feed struct {
	ctx    context.Context
	parent StateView
	t      *accessTable
	txs    []*types.Tx // t's, in execution order
	own    [][]byte    // by entry: the values (nil for a prefix)
	bufs   []feedBuf   // the loaders' batches, one per loading goroutine
	bounds []int       // chunk c is transactions bounds[c]:bounds[c+1]
	// order is the claim order: part p of ph loads chunk order[p].
	order   []int32
	chunkOf []int32 // by transaction
	ready   []atomic.Bool
	ph      phase
	stopped atomic.Bool // no more chunks are loaded (stop, or a failure)
	mu      sync.Mutex
	err     error // the first failure
}

// feedChunk is the most transactions of one prefetch chunk: small enough
// that the first one lands within tens of µs, large enough that a batch
// of GetMany and the claim cost little per key.
const feedChunk = 64

// newFeed returns the feed of table t's block, its chunks ordered for
// lanes executing workers that each start at the front of a contiguous
// range of the block (as executeIndependent's do; 1 for block order):
// the first chunk of each lane's range first, then the second of each,
// and so on. At most loaders goroutines load chunks at once (the block's
// workers). Nothing is read until a chunk is claimed.
func newFeed(ctx context.Context, parent StateView, t *accessTable, txs []*types.Tx, lanes, loaders int) *feed {
	n, sc := len(t.all), t.sc
	f := &feed{ctx: ctx, parent: parent, t: t, txs: txs, own: grow(&sc.own, t.start[n]),
		bufs: grow(&sc.feedBufs, max(1, loaders)), chunkOf: grow(&sc.chunkOf, n)}
	lanes = max(1, lanes)
	firsts := make([]int, lanes+1) // lane p's first chunk
	for p := range lanes {
		firsts[p] = len(f.bounds)
		for lo := p * n / lanes; lo < (p+1)*n/lanes; lo += feedChunk {
			f.bounds = append(f.bounds, lo)
		}
	}
	firsts[lanes] = len(f.bounds)
	f.bounds = append(f.bounds, n)
	for c := range len(f.bounds) - 1 {
		for i := f.bounds[c]; i < f.bounds[c+1]; i++ {
			f.chunkOf[i] = int32(c)
		}
	}
	for k := 0; len(f.order) < firsts[lanes]; k++ {
		for p := range lanes {
			if c := firsts[p] + k; c < firsts[p+1] {
				f.order = append(f.order, int32(c))
			}
		}
	}
	f.ready = make([]atomic.Bool, len(f.order))
	f.ph = phase{fn: func(p int) { f.load(int(f.order[p])) }, n: len(f.order)}
	return f
}

// wait returns once transaction i's chunk has landed, claiming and
// loading other chunks meanwhile; or the prefetch's error.
func (f *feed) wait(i int) error {
	c := f.chunkOf[i]
	for !f.ready[c].Load() {
		if f.stopped.Load() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.err != nil {
				return f.err
			}
			return fmt.Errorf("%w: prefetch stopped", ErrState)
		}
		if !f.ph.claimOne() {
			runtime.Gosched() // another goroutine loads it
		}
	}
	return nil
}

// stop ends the feed: no chunk is loaded after it returns. Call it before
// the block's scratch is handed back (on an error path, the helpers would
// otherwise read the rest of the block first).
func (f *feed) stop() {
	f.stopped.Store(true)
	f.ph.g.close()
}

// fail records err as the feed's and stops further loads.
func (f *feed) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf("%w: prefetch: %w", ErrState, err)
	}
	f.mu.Unlock()
	f.stopped.Store(true)
}

// load reads chunk c's values into own and publishes it. A module record
// entry that repeats the previous transaction's in the chunk (calls of
// one module in a row, see entries) takes the value read for that one;
// other keys used by several transactions are read by each, which gives
// the same value, the parent's.
func (f *feed) load(c int) {
	if f.stopped.Load() {
		return
	}
	t := f.t
	lo, hi := f.bounds[c], f.bounds[c+1]
	b := f.buf()
	defer b.busy.Store(false)
	keys, pos := b.keys[:0], b.pos[:0]
	rec := int32(-1) // the slot of the chunk's last record entry read
	add := func(i, j int, call bool) {
		e, at := &t.all[i][j], t.start[i]+j
		switch {
		case e.prefix:
			f.own[at] = nil
		case len(e.k)-types.AddressLen > types.StateKeyMax:
			// An over-long key fails the transaction when it is used; it
			// must not fail the block here. No state holds it, so absent
			// (nil) is its value.
			f.own[at] = nil
		case j == 1 && call && e.slot == rec:
			// Filled below, from the previous record entry.
		default:
			if j == 1 && call {
				rec = e.slot
			}
			k := types.StateKey{Key: unsafe.Slice(unsafe.StringData(e.k[types.AddressLen:]), len(e.k)-types.AddressLen)}
			copy(k.Module[:], e.k)
			keys = append(keys, k)
			pos = append(pos, int32(at))
		}
	}
	// The batch goes by module: the account records, the module records,
	// then the declared keys (mostly of the one module called). GetMany
	// hashes a key's module once per run of one module, and in entry
	// order the module changed at almost every key (the chunk's prefetch
	// cost ~35 % more CPU than one in key order).
	for i := lo; i < hi; i++ {
		add(i, 0, false)
	}
	for i := lo; i < hi; i++ {
		if !isBarrier(f.txs[i]) {
			add(i, 1, true)
		}
	}
	for i := lo; i < hi; i++ {
		j := 1
		if !isBarrier(f.txs[i]) {
			j = 2
		}
		for ; j < len(t.all[i]); j++ {
			add(i, j, false)
		}
	}
	var vals [][]byte
	var err error
	if br, ok := f.parent.(batchReader); ok {
		vals, err = br.GetMany(f.ctx, keys, b.vals[:0])
		if err == nil && len(vals) != len(keys) {
			err = fmt.Errorf("exec: prefetch read %d values for %d keys", len(vals), len(keys))
		}
	} else {
		vals = b.vals[:0]
		for _, k := range keys {
			var v []byte
			if v, err = f.parent.Get(f.ctx, k); err != nil {
				break
			}
			vals = append(vals, v)
		}
	}
	// The buffers keep their arrays for the next chunk, and no key or
	// value of the block.
	clear(keys)
	b.keys, b.pos, b.vals = keys[:0], pos[:0], vals[:0]
	defer clear(vals)
	if err != nil {
		f.fail(err)
		return
	}
	for k, v := range vals {
		f.own[pos[k]] = v
	}
	rec, prev := -1, 0
	for i := lo; i < hi; i++ {
		if es := t.all[i]; !isBarrier(f.txs[i]) {
			if at := t.start[i] + 1; es[1].slot == rec {
				f.own[at] = f.own[prev]
			} else {
				rec, prev = es[1].slot, at
			}
		}
	}
	f.ready[c].Store(true)
}

// feedBuf is one loader's batch: the keys, the entries they are for and
// their values, kept from chunk to chunk (and block to block, in the
// scratch) so that a loader writes a small array in its cache, not a
// range of one the size of the block's entries (that cost ~0.3 ms of CPU
// per 5 000-transfer block in cache misses). Padded apart: two loaders
// write their own.
type feedBuf struct {
	busy atomic.Bool
	keys []types.StateKey
	pos  []int32
	vals [][]byte
	_    [64]byte
}

// buf claims a free batch. There is always one: at most len(bufs)
// goroutines load at once.
func (f *feed) buf() *feedBuf {
	for {
		for i := range f.bufs {
			if b := &f.bufs[i]; !b.busy.Load() && b.busy.CompareAndSwap(false, true) {
				return b
			}
		}
		runtime.Gosched() // not reached with loaders bounded as promised
	}
}
