package exec

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// mergePartMin is the fewest writes worth a merging goroutine of their own.
const mergePartMin = 1024

// kv is one merged write in the executor's internal key form.
type kv struct {
	k   string
	v   []byte
	idx int // the writing transaction (for sorting only)
}

// merge combines the transactions' writes in block order and sorts them,
// with up to parts goroutines: each turns a contiguous range of
// transactions into a sorted run (the last writer of a key in the range
// wins), then the runs are folded in block order (on equal keys the later
// run wins), which is the serial result whatever parts is.
func (x *Executor) merge(outs []txOut, parts int) *BlockResult {
	res := &BlockResult{Receipts: make([]types.Receipt, len(outs))}
	nw, ne := 0, 0
	for i := range outs {
		nw += len(outs[i].writes)
		ne += len(outs[i].receipt.Events)
	}
	parts = max(1, min(parts, nw/mergePartMin))
	if x.opts.reverseMerge {
		parts = 1
	}
	runs := make([][]kv, parts)
	parallel(parts, func(p int) {
		runs[p] = x.sortedRun(outs[p*len(outs)/parts : (p+1)*len(outs)/parts])
	})
	final := runs[0]
	for _, r := range runs[1:] {
		final = foldRuns(final, r)
	}
	res.Writes = make([]state.Write, len(final))
	parallel(parts, func(p int) {
		for i := p * len(final) / parts; i < (p+1)*len(final)/parts; i++ {
			v := final[i].v
			if len(v) == 0 {
				v = nil
			}
			res.Writes[i] = state.Write{Key: splitKey(final[i].k), Value: v}
		}
	})
	res.Events = make([]types.Event, 0, ne)
	for i := range outs {
		r := outs[i].receipt
		res.Receipts[i] = r
		res.GasUsed += r.GasUsed
		res.Events = append(res.Events, r.Events...)
	}
	return res
}

// sortedRun merges the writes of outs, in block order, into a run sorted
// by key: it sorts every write by (key, transaction) and keeps the last of
// each key, which needs no map.
func (x *Executor) sortedRun(outs []txOut) []kv {
	nw := 0
	for i := range outs {
		nw += len(outs[i].writes)
	}
	run := make([]kv, 0, nw)
	for i := range outs {
		idx := i
		if x.opts.reverseMerge {
			idx = len(outs) - 1 - i
		}
		for k, v := range outs[i].writes {
			run = append(run, kv{k, v, idx})
		}
	}
	// A transaction writes a key once, so (key, idx) orders the run
	// totally and map iteration order cannot show.
	slices.SortFunc(run, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := run[:0]
	for j := range run {
		if j+1 < len(run) && run[j+1].k == run[j].k {
			continue // a later transaction overwrites it
		}
		out = append(out, run[j])
	}
	return out
}

// foldRuns merges two sorted runs; on a key in both, later (the run of
// later transactions) wins.
func foldRuns(earlier, later []kv) []kv {
	out := make([]kv, 0, len(earlier)+len(later))
	i, j := 0, 0
	for i < len(earlier) && j < len(later) {
		switch c := strings.Compare(earlier[i].k, later[j].k); {
		case c < 0:
			out = append(out, earlier[i])
			i++
		case c > 0:
			out = append(out, later[j])
			j++
		default:
			out = append(out, later[j])
			i, j = i+1, j+1
		}
	}
	out = append(out, earlier[i:]...)
	return append(out, later[j:]...)
}

// parallel runs fn(0..n-1), the last on the calling goroutine, and waits.
func parallel(n int, fn func(int)) {
	var wg sync.WaitGroup
	wg.Add(n - 1)
	for p := range n - 1 {
		go func() {
			defer wg.Done()
			fn(p)
		}()
	}
	fn(n - 1)
	wg.Wait()
}
