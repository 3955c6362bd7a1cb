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

// feed is a block's prefetch: the parent values of every transaction's
// declared exact keys, laid out by entry (own, as overlay.own reads them:
// a transaction's values next to the previous one's), read in chunks of
// consecutive transactions. It needs only the listed entries, not their
// slots, so it runs beside the key numbering: with two workers prepare
// posts its chunks to the crew right after the listing (the helper reads
// while the caller numbers the keys alone), and the caller claims what is
// left once the numbering is done. (With more workers the numbering keeps
// its parts and the prefetch follows it; see prepare.) Before, the
// numbering ran on both cores, then a prefetch by slot, then its layout
// by entry: the hand-offs of all their phases, and a 2-part numbering
// that cost ~0.4 ms more CPU than one part for ~0.1 ms less wall time
// (see RATIONALE.md, round 12).
//
// It reads only what the listing wrote (the entries' keys and kinds),
// never the slots the numbering writes meanwhile, and no entry of own is
// written by two chunks. The block executes after finish, which waits for
// every loader: nothing reads own before it is complete.
type feed struct {
	ctx    context.Context
	parent StateView
	t      *accessTable
	txs    []*types.Tx // t's, in block order (the listing's)
	own    [][]byte    // by entry: the values (nil for a prefix)
	bufs   []feedBuf   // the loaders' batches, one per loading goroutine
	ph     phase       // part c loads chunk c: transactions c*feedChunk...
	mu     sync.Mutex
	err    error       // the first failure
	failed atomic.Bool // set with err: the chunks left are skipped
}

// feedChunk is the most transactions of one prefetch chunk: large enough
// that a batch of GetMany and the claim cost little per key, small enough
// that the chunks left when the numbering is done split evenly.
const feedChunk = 64

// newFeed returns the feed of table t's block, whose transactions are
// txs, with at most loaders goroutines loading at once (the block's
// workers). Nothing is read until a chunk is claimed.
func newFeed(ctx context.Context, parent StateView, t *accessTable, txs []*types.Tx, loaders int) *feed {
	n, sc := len(t.all), t.sc
	f := &feed{ctx: ctx, parent: parent, t: t, txs: txs, own: grow(&sc.own, t.start[n]), bufs: grow(&sc.feedBufs, max(1, loaders))}
	f.ph = phase{fn: f.load, n: (n + feedChunk - 1) / feedChunk}
	return f
}

// start posts the feed's chunks to crew c (nil: none), whose helpers
// load them until none is left.
func (f *feed) start(c *crew) {
	if c != nil {
		c.post(&f.ph)
	}
}

// finish loads the chunks no helper claimed, waits for the helpers'
// chunks and returns the feed's values by entry, or its error.
func (f *feed) finish() ([][]byte, error) {
	f.ph.claim()
	f.ph.g.close()
	if f.err != nil {
		return nil, f.err
	}
	return f.own, nil
}

// fail records err as the feed's; the chunks left are skipped.
func (f *feed) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf("%w: prefetch: %w", ErrState, err)
	}
	f.mu.Unlock()
	f.failed.Store(true)
}

// load reads chunk c's values into own. A module record entry that
// repeats the previous call's in the chunk (calls of one module in a row,
// see entries) takes the value read for that one; other keys used by
// several transactions are read by each, which gives the same value, the
// parent's.
func (f *feed) load(c int) {
	if f.failed.Load() {
		return
	}
	t := f.t
	lo, hi := c*feedChunk, min((c+1)*feedChunk, len(t.all))
	b := f.buf()
	defer b.busy.Store(false)
	keys, pos := b.keys[:0], b.pos[:0]
	rec := "" // the key of the chunk's last record entry read
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
		case j == 1 && call && e.k == rec:
			// Filled below, from the previous record entry.
		default:
			if j == 1 && call {
				rec = e.k
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
	// order the module changed at almost every key (~35 % more CPU).
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
	rec, prev := "", 0
	for i := lo; i < hi; i++ {
		if es := t.all[i]; !isBarrier(f.txs[i]) {
			if at := t.start[i] + 1; es[1].k == rec {
				f.own[at] = f.own[prev]
			} else {
				rec, prev = es[1].k, at
			}
		}
	}
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

// permuteOwn lays own (by entry in block order, start being the entries'
// bounds in that order) out in execution order (see nonceOrder) in the
// scratch's other array, and returns it.
func permuteOwn(sc *scratch, own [][]byte, start []int, order []int) [][]byte {
	out := grow(&sc.ownPermuted, len(own))[:0]
	for _, i := range order {
		out = append(out, own[start[i]:start[i+1]]...)
	}
	return out
}
