package state

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// snapExportWindowLeaves is about how many leaves an export on pebble reads
// values for at once: value records are read in key order, and the more
// of them one pass reads, the more of them share a data block. At 1M keys
// each window reads about every data block of the value records again
// (block reads were a third of an export's CPU at 128Ki leaves, eight
// windows); 256Ki leaves halve the passes for about 64 MB per window with
// 100-byte values (a leaf, its target and its value record copy, ~256 B;
// the chunks being cut hold a window or two): export CPU per MB +13%
// against 128Ki, and 512Ki gave +28% for twice that memory again
// (RATIONALE.md).
const snapExportWindowLeaves = 1 << 18

// exportWindowLeaves is the window in force; tests lower it so that a small
// export spans many windows.
var exportWindowLeaves = snapExportWindowLeaves

// valueWindows reads the values of an export's chunks a window of
// consecutive chunks at a time. A window's value records are read in key
// order, (born, leaf hash), through pebble iterators (one per core, each on
// its part of the sorted keys), so that a data block is read once for all
// of the window's records in it instead of once per record; the chunks of
// the window then take their leaves from it. A window is dropped once all
// its chunks have taken theirs, so memory stays a few windows however
// large the snapshot.
type valueWindows struct {
	ctx    context.Context
	db     *pebble.DB
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

func newValueWindows(ctx context.Context, db *pebble.DB, p *snapPlan, perChunk int) *valueWindows {
	return &valueWindows{ctx: ctx, db: db, leaves: p.leaves, runs: p.runs, per: max(1, exportWindowLeaves/perChunk), wins: map[int]*valueWindow{}}
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
	// Value record keys are nodeKey(born, hash), whose escaping keeps
	// byte order: sorting by (born, hash) sorts by key without building
	// the keys first (as strings, their shared first 19 bytes made every
	// comparison long, and the sort was a twentieth of an export).
	type target struct {
		born uint64
		hash *types.Hash
		i    int
	}
	ts := make([]target, hi-lo)
	for j := range ts {
		l := &r.leaves[lo+j]
		ts[j] = target{l.born, &l.hash, lo + j}
	}
	slices.SortFunc(ts, func(a, b target) int {
		if c := cmp.Compare(a.born, b.born); c != 0 {
			return c
		}
		return bytes.Compare(a.hash[:], b.hash[:])
	})
	out := make([]SnapshotLeaf, hi-lo)
	parts := min(runtime.GOMAXPROCS(0), max(1, len(ts)/1024))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := ts[p*len(ts)/parts : (p+1)*len(ts)/parts]
			errs[p] = func() error {
				it, err := r.db.NewIter(nil)
				if err != nil {
					return err
				}
				defer it.Close()
				var kb [nodeKeyLen]byte
				for j, t := range part {
					if j%4096 == 0 && ctx.Err() != nil {
						return ctx.Err()
					}
					k := appendNodeKey(kb[:0], t.born, *t.hash)
					if !it.SeekGE(k) || !bytes.Equal(it.Key(), k) {
						if err := it.Error(); err != nil {
							return err
						}
						return fmt.Errorf("%w: missing value record %v", ErrCorrupt, r.leaves[t.i].hash)
					}
					// The iterator's value is valid until it moves.
					sl, err := checkLeafValue(&r.leaves[t.i], bytes.Clone(it.Value()))
					if err != nil {
						return err
					}
					out[t.i-lo] = sl
				}
				return it.Error()
			}()
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// leafValue reads the key and value of a leaf from its value record and
// checks them against the leaf's key path and hash.
func (s *Store) leafValue(ctx context.Context, l *snapLeaf) (SnapshotLeaf, error) {
	b, err := s.d.Get(ctx, nodeKey(l.born, l.hash))
	if errors.Is(err, ds.ErrNotFound) {
		return SnapshotLeaf{}, fmt.Errorf("%w: missing value record %v", ErrCorrupt, l.hash)
	}
	if err != nil {
		return SnapshotLeaf{}, err
	}
	return checkLeafValue(l, b)
}

// checkLeafValue decodes value record b of leaf l and checks it against
// the leaf's key path and hash.
func checkLeafValue(l *snapLeaf, b []byte) (SnapshotLeaf, error) {
	k, val, err := decodeValue(b)
	if err != nil {
		return SnapshotLeaf{}, err
	}
	if kp := types.KeyPath(k); kp != l.path || types.LeafHash(kp, types.ValueHash(val)) != l.hash {
		return SnapshotLeaf{}, fmt.Errorf("%w: value record %v does not match its leaf", ErrCorrupt, l.hash)
	}
	return SnapshotLeaf{Key: k, Value: val}, nil
}
