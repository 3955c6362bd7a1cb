package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/kairos-network/kairos/types"
)

// snapExportWindowLeaves is about how many leaves an export on pebble reads
// values for at once: the flat index is read in key order, and the more
// keys one pass reads, the more of them share a data block. At 1M keys
// each window reads about every data block of the index again (measured
// when values were in value records, read the same way: block reads were a
// third of an export's CPU at 128Ki leaves, eight windows); 256Ki leaves
// halve the passes for about 64 MB per window with 100-byte values (a
// leaf, its key and value copy, ~256 B; the chunks being cut hold a window
// or two): export CPU per MB +13% against 128Ki, and 512Ki gave +28% for
// twice that memory again (RATIONALE.md).
const snapExportWindowLeaves = 1 << 18

// exportWindowLeaves is the window in force; tests lower it so that a small
// export spans many windows.
var exportWindowLeaves = snapExportWindowLeaves

// valueWindows reads the values of an export's chunks a window of
// consecutive chunks at a time. A window's leaves are read from the flat
// index in its key order, (module, key), through pebble iterators (one per
// core, each on its part of the sorted keys), so that a data block is read
// once for all of the window's keys in it instead of once per key; a leaf
// the index holds another value for (one replaced after the exported
// version) is read from the history. The chunks of the window then take
// their leaves from it. A window is dropped once all its chunks have taken
// theirs, so memory stays a few windows however large the snapshot.
type valueWindows struct {
	ctx    context.Context
	v      *View
	leaves []snapLeaf
	runs   [][2]int
	per    int // chunks per window

	mu   sync.Mutex
	wins map[int]*valueWindow
}

type valueWindow struct {
	once sync.Once
	lo   int            // the window's first leaf
	vals []SnapshotLeaf // of leaves[lo:lo+len(vals)]
	err  error
	left int // chunks that have not taken their leaves yet
}

func newValueWindows(ctx context.Context, v *View, p *snapPlan, perChunk int) *valueWindows {
	return &valueWindows{ctx: ctx, v: v, leaves: p.leaves, runs: p.runs, per: max(1, exportWindowLeaves/perChunk), wins: map[int]*valueWindow{}}
}

// read returns the keys and values of leaves[lo:hi], one chunk's run.
func (r *valueWindows) read(lo, hi int) ([]SnapshotLeaf, error) {
	i := sort.Search(len(r.runs), func(i int) bool { return r.runs[i][0] >= lo })
	if i == len(r.runs) || r.runs[i] != [2]int{lo, hi} {
		return nil, fmt.Errorf("state: export read of leaves [%d, %d) is not a chunk", lo, hi)
	}
	w := i / r.per
	first, last := w*r.per, min((w+1)*r.per, len(r.runs))-1
	r.mu.Lock()
	win := r.wins[w]
	if win == nil {
		win = &valueWindow{lo: r.runs[first][0], left: last - first + 1}
		r.wins[w] = win
	}
	r.mu.Unlock()
	win.once.Do(func() { win.vals, win.err = r.load(r.ctx, win.lo, r.runs[last][1]) })
	r.mu.Lock()
	if win.left--; win.left == 0 {
		delete(r.wins, w)
	}
	r.mu.Unlock()
	if win.err != nil {
		return nil, win.err
	}
	return win.vals[lo-win.lo : hi-win.lo], nil
}

// load reads the values of leaves[lo:hi] in key order, on every core.
func (r *valueWindows) load(ctx context.Context, lo, hi int) ([]SnapshotLeaf, error) {
	// A leaf's data is its value hash, then module and key: comparing what
	// follows the hash groups a module's keys in the order of their flat
	// index keys, which the escaping keeps. Modules come in address order,
	// not in their ids' (the index's): one seek back per module, which
	// costs less than resolving ids in the comparison.
	ts := make([]int, hi-lo)
	for j := range ts {
		ts[j] = lo + j
	}
	slices.SortFunc(ts, func(a, b int) int {
		return strings.Compare(r.leaves[a].data[types.HashLen:], r.leaves[b].data[types.HashLen:])
	})
	out := make([]SnapshotLeaf, hi-lo)
	parts := min(runtime.GOMAXPROCS(0), max(1, len(ts)/1024))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			part := ts[p*len(ts)/parts : (p+1)*len(ts)/parts]
			errs[p] = r.loadPart(ctx, lo, part, out)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// loadPart reads the values of the leaves part names (sorted by flat index
// key) into out (indexed from leaf lo): from the flat index, then those it
// does not hold from the history, which is read after the index (see
// leafValue).
func (r *valueWindows) loadPart(ctx context.Context, lo int, part []int, out []SnapshotLeaf) error {
	var old []int
	err := func() error {
		l, err := r.v.s.newIndexLookup(ctx)
		if err != nil {
			return err
		}
		defer l.close()
		for j, i := range part {
			if j%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			sl := r.leaves[i].slot()
			v, err := l.get(sl.key())
			if err != nil {
				return err
			}
			if v != nil && types.ValueHash(v) == sl.vh() {
				// The iterator's value is valid until it moves.
				out[i-lo] = snapshotLeaf(&sl, bytes.Clone(v))
				continue
			}
			old = append(old, i)
		}
		return nil
	}()
	if err != nil {
		return err
	}
	if len(old) == 0 {
		return nil
	}
	// One iterator for all of them, created after the index was read, and
	// the leaves in key path order (the leaves' order), so that it only
	// moves forward.
	slices.Sort(old)
	it, err := r.v.s.historyIter(ctx)
	if err != nil {
		return err
	}
	defer it.Close()
	for _, i := range old {
		sl := r.leaves[i].slot()
		val, err := historySeek(it, r.v.height, r.leaves[i].path, &sl)
		if err != nil {
			return err
		}
		out[i-lo] = snapshotLeaf(&sl, val)
	}
	return nil
}

// snapshotLeaf returns leaf sl with its value as a chunk holds it.
func snapshotLeaf(sl *slot, value []byte) SnapshotLeaf {
	k := sl.key()
	return SnapshotLeaf{Key: types.StateKey{Module: k.Module, Key: bytes.Clone(k.Key)}, Value: value}
}
