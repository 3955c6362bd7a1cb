package exec

import (
	"slices"
	"sort"
	"strings"

	"github.com/kairos-network/kairos/types"
)

// dag is the conflict DAG of a block in compressed form: ndeps[i] is the
// number of distinct earlier transactions i waits for, and the transactions
// waiting for j are out[start[j]:start[j+1]].
type dag struct {
	ndeps []int32
	start []int32
	out   []int32
}

func (d *dag) dependents(j int) []int32 { return d.out[d.start[j]:d.start[j+1]] }

// access is one entry of the conflict analysis: k is module ‖ key. slot
// numbers an exact key in its block's accessTable (-1 for a prefix).
type access struct {
	k      string
	slot   int32
	prefix bool
	write  bool
}

// accessTable is a block's conflict entries, computed once per block: the
// prefetch reads its exact keys and the DAG indexes them by slot, so
// neither hashes a key into a map of its own.
type accessTable struct {
	all   [][]access       // per transaction, see entries
	keys  []string         // the distinct exact keys, by slot
	slots map[string]int32 // key -> slot
}

// newAccessTable lists every transaction's entries, with up to workers
// goroutines over contiguous ranges, and numbers the distinct exact keys
// in order of first appearance.
func newAccessTable(txs []*types.Tx, senders []types.Address, workers int) *accessTable {
	t := &accessTable{all: make([][]access, len(txs))}
	parts := max(1, min(workers, len(txs)/accessPartMin))
	parallel(parts, func(p int) {
		for i := p * len(txs) / parts; i < (p+1)*len(txs)/parts; i++ {
			t.all[i] = entries(txs[i], senders[i])
		}
	})
	ne := 0
	for _, es := range t.all {
		ne += len(es)
	}
	// Sized for the upper bound, so the map never rehashes while it grows.
	t.slots = make(map[string]int32, ne)
	for _, es := range t.all {
		for j := range es {
			e := &es[j]
			if e.prefix {
				e.slot = -1
				continue
			}
			sl, ok := t.slots[e.k]
			if !ok {
				sl = int32(len(t.keys))
				t.slots[e.k] = sl
				t.keys = append(t.keys, e.k)
			}
			e.slot = sl
		}
	}
	return t
}

// accessPartMin is the fewest transactions worth an entry-listing
// goroutine of their own.
const accessPartMin = 256

// entries lists tx's accesses for the conflict analysis: the implicit write
// of the sender's account record first, for a call the implicit read of
// the called module's record, then the declared list.
func entries(tx *types.Tx, sender types.Address) []access {
	es := make([]access, 0, 2+len(tx.Body.Access))
	es = append(es, access{k: accountKey(sender), write: true})
	if tx.Body.Payload.Kind == types.Call {
		es = append(es, access{k: key(ModulesModule, recordKey(tx.Body.Payload.Module))})
	}
	for _, a := range tx.Body.Access {
		es = append(es, access{k: key(a.Module, a.Key), prefix: a.Prefix, write: a.Mode >= types.Write})
	}
	return es
}

// keyState is the conflict history of one exact key or one prefix: its
// latest writer and the readers since then.
type keyState struct {
	writer  int32 // -1: none yet
	readers []int32
}

// isBarrier reports a lifecycle transaction (deploy, upgrade, admin): it
// changes which code runs at an address, which cross-module calls read
// without declaring, so it is ordered against every other transaction.
// Lifecycle transactions are rare; the O(n) edges each one adds are cheap.
func isBarrier(tx *types.Tx) bool { return tx.Body.Payload.Kind != types.Call }

// buildDAG computes each transaction's dependencies: for everything it
// touches, the latest earlier writer of an overlapping key or prefix, and
// if it writes, the earlier readers of it since that writer. Older
// conflicts are reached transitively through those (see doc.go). A
// barrier depends on every transaction since the previous barrier, and
// every transaction depends on the latest barrier before it.
func buildDAG(txs []*types.Tx, senders []types.Address) *dag {
	return newAccessTable(txs, senders, 1).dag(txs)
}

// dag builds the conflict DAG of the block t was made of (see buildDAG).
func (t *accessTable) dag(txs []*types.Tx) *dag {
	n := len(t.all)
	all := t.all
	prefixSet := map[string]bool{}
	for _, es := range all {
		for _, e := range es {
			if e.prefix {
				prefixSet[e.k] = true
			}
		}
	}
	// Sorted key lists turn "every key under a prefix" into a binary
	// search and a contiguous range. They are needed only with prefixes.
	var sortedExact, sortedPrefix []string
	var prefixLens []int
	if len(prefixSet) > 0 {
		sortedExact = slices.Clone(t.keys)
		sort.Strings(sortedExact)
		sortedPrefix = sortedKeys(prefixSet)
		lens := map[int]bool{}
		for p := range prefixSet {
			lens[len(p)] = true
		}
		for l := range lens {
			prefixLens = append(prefixLens, l)
		}
		sort.Ints(prefixLens)
	}
	// Exact keys are indexed by slot; prefixes, rare, by a map.
	exact := make([]keyState, len(t.keys))
	for j := range exact {
		exact[j].writer = -1
	}
	prefixes := make(map[string]*keyState, len(prefixSet))
	stateOf := func(k string) *keyState {
		s := prefixes[k]
		if s == nil {
			s = &keyState{writer: -1}
			prefixes[k] = s
		}
		return s
	}

	mark := make([]int32, n) // mark[j] == i+1: j already a dependency of i
	deps := make([][]int32, n)
	var ndeps = make([]int32, n)
	edges := 0
	barrier := int32(-1)
	for i := range n {
		me := int32(i)
		add := func(j int32) {
			if j >= 0 && j != me && mark[j] != me+1 {
				mark[j] = me + 1
				deps[i] = append(deps[i], j)
			}
		}
		add(barrier)
		if isBarrier(txs[i]) {
			for j := barrier + 1; j < me; j++ {
				add(j)
			}
			barrier = me
		}
		consult := func(s *keyState, write bool) {
			if s == nil {
				return
			}
			add(s.writer)
			if write {
				for _, r := range s.readers {
					add(r)
				}
			}
		}
		for _, e := range all[i] {
			// Prefixes that contain e.k (for a prefix entry, e.k itself too).
			for _, l := range prefixLens {
				if l > len(e.k) {
					break
				}
				consult(prefixes[e.k[:l]], e.write)
			}
			if !e.prefix {
				consult(&exact[e.slot], e.write)
				continue
			}
			// Exact keys and longer prefixes under e.k.
			for _, k := range under(sortedExact, e.k) {
				consult(&exact[t.slots[k]], e.write)
			}
			for _, k := range under(sortedPrefix, e.k) {
				if len(k) > len(e.k) {
					consult(prefixes[k], e.write)
				}
			}
		}
		for _, e := range all[i] {
			var s *keyState
			if e.prefix {
				s = stateOf(e.k)
			} else {
				s = &exact[e.slot]
			}
			if e.write {
				s.writer, s.readers = me, nil
			} else if l := len(s.readers); l == 0 || s.readers[l-1] != me {
				s.readers = append(s.readers, me)
			}
		}
		ndeps[i] = int32(len(deps[i]))
		edges += len(deps[i])
	}
	d := &dag{ndeps: ndeps, start: make([]int32, n+1), out: make([]int32, edges)}
	for i := range n {
		for _, j := range deps[i] {
			d.start[j+1]++
		}
	}
	for j := range n {
		d.start[j+1] += d.start[j]
	}
	fill := append([]int32(nil), d.start[:n]...)
	for i := range n { // ascending i: each dependents list is in block order
		for _, j := range deps[i] {
			d.out[fill[j]] = int32(i)
			fill[j]++
		}
	}
	return d
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// under returns the contiguous run of sorted keys that start with prefix.
func under(sorted []string, prefix string) []string {
	lo := sort.SearchStrings(sorted, prefix)
	hi := lo
	for hi < len(sorted) && strings.HasPrefix(sorted[hi], prefix) {
		hi++
	}
	return sorted[lo:hi]
}
