package exec

import (
	"cmp"
	"slices"
	"strings"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// mergePartMin is the fewest slots (or transactions) worth a merging
// goroutine of their own.
const mergePartMin = 1024

// mergeWriteParts is how many ranges of transactions per worker a disjoint
// merge's first pass has, beside the part that makes the writes' array:
// with one range per worker, the worker that makes the array would start
// its range only after it, while the other one waits at the end.
const mergeWriteParts = 2

// kv is one merged write of a key without a slot.
type kv struct {
	k   string
	v   []byte
	idx int // the writing transaction (for sorting only)
}

// txOutcomes holds the txOutcomes of a block's transactions by execution
// position: receipts[i] and the writes (empty value = delete, each key
// once) that transaction i leaves. The merge hands receipts on as the
// block's: a receipt is copied once, from runTx's result. own is the
// block's prefetched parent values by entry (block.own, nil: none), where
// the merge finds a write's old value.
type txOutcomes struct {
	receipts []types.Receipt
	writes   [][]write
	own      [][]byte
}

func newTxOutcomes(n int) *txOutcomes { return new(scratch).outcomes(n, nil) }

// outcomes is newTxOutcomes with the writes' array in sc (the receipts
// are the result's) and the prefetched values own.
func (sc *scratch) outcomes(n int, own [][]byte) *txOutcomes {
	return &txOutcomes{receipts: make([]types.Receipt, n), writes: grow(&sc.writes, n), own: own}
}

// set records the outcome of transaction i.
func (o *txOutcomes) set(i int, out txOut) { o.receipts[i], o.writes[i] = out.receipt, out.writes }

// merge combines the transactions' writes in block order into the sorted
// write set of the block t was made of (t nil: no slots). A slot's value
// is the last one written to it, found in one pass over the writes in
// block order, which also copies the receipts' events into the block's
// array and adds up the gas; the written slots are then emitted in slot
// order, which is key order, by up to workers goroutines over ranges of
// slots. Keys without a slot (written under a declared prefix) are sorted
// apart and merged in. disjoint says no slot is written by two
// transactions (a block whose DAG has no edge: two writers of a key would
// be one): the first pass is then split over ranges of transactions too,
// as no two of them write one slot, and counts the written slots of each
// range of slots on the way, since a write is then a written slot. The
// result's receipts are outs.receipts. A write of a slot carries its
// key's parent value, prefetched for the writer's entry (outs.own), as the
// commit's old value (state.Write.Old): the commit then need not read it
// back from the flat index. Writes without a slot carry none.
//
// Each pass with more than one part is a phase of the block's crew (see
// gate.go), a hand-off to another goroutine: a disjoint merge has two such
// passes, not four. A disjoint merge also knows how many writes it emits
// before the first pass (the writes with a slot), so a part of that pass
// makes their array, beside the transactions' ranges: made (and so
// zeroed, ~1.2 MB for 5 000 transfers) by the caller between the passes,
// it was most of the ~60 µs of CPU the caller alone spent making the
// result's arrays in a 2-worker merge (see RATIONALE.md, round 13).
func (x *Executor) merge(outs *txOutcomes, t *accessTable, workers int, disjoint bool) *BlockResult {
	n := len(outs.receipts)
	res := &BlockResult{Receipts: outs.receipts}
	var keys []string
	if t != nil {
		keys = t.keys
	}
	// last[s] is the last write of slot s: (transaction+1)<<32 | its
	// index in that transaction's writes, 0 for none. No pointer: the
	// collector neither scans it nor makes its stores pay barriers.
	var last []uint64
	var evAt []int // where each transaction's events start in res.Events
	var c *crew
	if t != nil {
		c = t.sc.crew
		last = grow(&t.sc.last, len(keys))
		clear(last)
		evAt = grow(&t.sc.evAt, n+1)
	} else {
		evAt = make([]int, n+1)
	}
	evAt[0] = 0
	for i := range outs.receipts {
		evAt[i+1] = evAt[i] + len(outs.receipts[i].Events)
	}
	res.Events = make([]types.Event, evAt[n])
	wparts, makes := 1, 0
	if disjoint {
		wparts, makes = max(1, min(mergeWriteParts*workers, n/mergePartMin)), 1
	}
	parts := max(1, min(workers, len(keys)/mergePartMin))
	extras := make([][]kv, wparts)
	gas := make([]uint64, wparts)
	// counts[q*parts+p] is the written slots of slot range p that the
	// transactions of range q wrote (disjoint only).
	var counts []int
	if disjoint {
		counts = make([]int, wparts*parts)
	}
	var slotted []state.Write
	c.parallel(makes+wparts, func(q int) {
		if q < makes { // first, so that the caller, which usually claims first, takes it
			nw := 0
			for _, ws := range outs.writes {
				nw += len(ws)
			}
			slotted = make([]state.Write, nw) // the writes with a slot, and extras
			return
		}
		q -= makes
		var g uint64
		var cnt []int
		if disjoint {
			cnt = counts[q*parts : (q+1)*parts]
		}
		for j := q * n / wparts; j < (q+1)*n/wparts; j++ {
			i := j
			if x.opts.reverseMerge {
				i = n - 1 - j
			}
			for k, w := range outs.writes[i] {
				if w.slot >= 0 {
					last[w.slot] = uint64(i+1)<<32 | uint64(k)
					if disjoint {
						cnt[int(w.slot)*parts/len(keys)]++
					}
				} else {
					extras[q] = append(extras[q], kv{w.k, w.v, i})
				}
			}
			r := &outs.receipts[i]
			g += r.GasUsed
			copy(res.Events[evAt[i]:], r.Events)
		}
		gas[q] = g
	})
	for _, g := range gas {
		res.GasUsed += g
	}
	extra := slices.Concat(extras...)
	// from[p] is the first slot of range p, from[parts] = len(keys): the
	// slots s with s*parts/len(keys) = p, as counted above.
	from := make([]int, parts+1)
	for p := range from {
		from[p] = (p*len(keys) + parts - 1) / parts
	}
	at := make([]int, parts+1) // where range p's writes go in slotted
	if disjoint {
		for q := range wparts {
			for p := range parts {
				at[p+1] += counts[q*parts+p]
			}
		}
	} else {
		c.parallel(parts, func(p int) {
			for s := from[p]; s < from[p+1]; s++ {
				if last[s] != 0 {
					at[p+1]++
				}
			}
		})
	}
	for p := range parts {
		at[p+1] += at[p]
	}
	if disjoint {
		slotted = slotted[:at[parts]] // shorter by the extras
	} else {
		slotted = make([]state.Write, at[parts])
	}
	c.parallel(parts, func(p int) {
		j := at[p]
		var sk slotKeys
		if from[p] < len(keys) {
			sk = t.slotKeys(int32(from[p]))
		}
		for s := from[p]; s < from[p+1]; s++ {
			if l := last[s]; l != 0 {
				i := int(l>>32 - 1)
				w := &outs.writes[i][uint32(l)]
				slotted[j] = state.Write{Key: sk.at(int32(s)), Value: nilIfEmpty(w.v)}
				if w.e >= 0 && outs.own != nil {
					// The key's parent value, which the writer's entry
					// was prefetched with: the commit's old value.
					slotted[j].Old = outs.own[t.start[i]+int(w.e)]
				}
				j++
			}
		}
	})
	res.Writes = slotted
	if len(extra) > 0 {
		res.Writes = mergeExtra(slotted, lastOfEach(extra))
	}
	return res
}

func nilIfEmpty(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v
}

// lastOfEach sorts writes by (key, transaction) and keeps the last write of
// each key. A transaction writes a key once, so the order is total and
// the order writes came in cannot show.
func lastOfEach(run []kv) []kv {
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

// mergeExtra merges the sorted writes of keys without a slot into the
// sorted writes of slots. The two never share a key: a key any
// transaction declared exactly has a slot wherever it is written.
func mergeExtra(slotted []state.Write, extra []kv) []state.Write {
	out := make([]state.Write, 0, len(slotted)+len(extra))
	i := 0
	for _, e := range extra {
		k := splitKey(e.k)
		for i < len(slotted) && slotted[i].Key.Compare(k) < 0 {
			out = append(out, slotted[i])
			i++
		}
		out = append(out, state.Write{Key: k, Value: nilIfEmpty(e.v)})
	}
	return append(out, slotted[i:]...)
}
