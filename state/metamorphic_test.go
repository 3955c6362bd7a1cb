package state

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// config is one way of reaching the same states.
type config struct {
	name    string
	open    func(t *testing.T) *Store
	procs   int
	shuffle bool // shuffle the writes of each block
	split   bool // split each block's writes over several heights
	prune   bool
}

func openMem(t *testing.T) *Store {
	s, err := OpenMemory(Options{CacheBytes: 1 << 18})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openPebble(t *testing.T) *Store {
	s, err := OpenPebble(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openLevel(t *testing.T) *Store {
	s, err := OpenLevelDB(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMetamorphic applies the same blocks under different backends,
// GOMAXPROCS, write orders, batch splits and pruning; the roots at block
// boundaries must all equal the reference computation.
func TestMetamorphic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	blocks := make([][]Write, 6)
	for i := range blocks {
		// Enough writes for the parallel top level (parallelMin).
		blocks[i] = randWrites(r, 600, 400)
	}
	m := newModel()
	var want []types.Root
	for _, b := range blocks {
		want = append(want, refRoot(m.apply(b)))
	}
	configs := []config{
		{name: "memory", open: openMem, procs: 1},
		{name: "memory-procs4", open: openMem, procs: 4},
		{name: "memory-shuffled", open: openMem, procs: 2, shuffle: true},
		{name: "memory-split", open: openMem, procs: 2, split: true},
		{name: "memory-pruned", open: openMem, procs: 2, prune: true},
		{name: "pebble", open: openPebble, procs: 2, shuffle: true},
		{name: "leveldb", open: openLevel, procs: 2, split: true},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
			s := c.open(t)
			if c.prune {
				s.opts.KeepVersions = 2
			}
			cr := rand.New(rand.NewPCG(11, uint64(len(c.name))))
			h := uint64(0)
			for i, b := range blocks {
				b = append([]Write{}, b...)
				if c.shuffle {
					cr.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
				}
				parts := [][]Write{b}
				if c.split {
					cut := cr.IntN(len(b) + 1)
					parts = [][]Write{b[:cut], b[cut:]}
				}
				var root types.Root
				for _, p := range parts {
					h++
					root = mustCommit(t, s, h, p)
				}
				if root != want[i] {
					t.Fatalf("block %d: root %s, reference %s", i, root, want[i])
				}
				if c.prune {
					if _, err := s.Prune(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			}
			checkIterate(t, s, m.versions[len(m.versions)-1])
			rep, err := s.Audit(context.Background())
			if err != nil || !rep.Clean() {
				t.Fatalf("audit: %+v %v", rep, err)
			}
		})
	}
}

// TestRootIndependentOfHistory reaches one final set of pairs through two
// unrelated histories.
func TestRootIndependentOfHistory(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	final := randWrites(r, 300, 300)
	a := openMem(t)
	rootA := mustCommit(t, a, 1, final)
	b := openMem(t)
	// History b: write noise first, then delete it and write the final set.
	noise := randWrites(r, 300, 1000)
	mustCommit(t, b, 1, noise)
	var fix []Write
	inFinal := map[string]bool{}
	for _, w := range final {
		inFinal[modelKey(w.Key)] = true
		fix = append(fix, w)
	}
	for _, w := range noise {
		if !inFinal[modelKey(w.Key)] {
			fix = append(fix, Write{Key: w.Key})
		}
	}
	if rootB := mustCommit(t, b, 2, fix); rootB != rootA {
		t.Fatalf("same pairs, different roots: %s vs %s", rootA, rootB)
	}
}

func TestCommitRejects(t *testing.T) {
	s := openMem(t)
	var k types.StateKey
	k.Key = []byte("x")
	cases := []struct {
		name   string
		height uint64
		ws     []Write
		want   error
	}{
		{"height gap", 2, nil, ErrHeight},
		{"height zero", 0, nil, ErrHeight},
		{"duplicate key", 1, []Write{{Key: k, Value: []byte{1}}, {Key: k, Value: []byte{2}}}, ErrDuplicateKey},
		{"long key", 1, []Write{{Key: types.StateKey{Key: make([]byte, types.StateKeyMax+1)}, Value: []byte{1}}}, ErrKeyTooLong},
		{"large value", 1, []Write{{Key: k, Value: make([]byte, types.StateValueMax+1)}}, ErrValueTooLarge},
		{"too many writes", 1, make([]Write, BlockWritesMax+1), ErrTooManyWrites},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Commit(context.Background(), c.height, c.ws); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if h, root := s.Latest(); h != 0 || root != types.EmptyRoot {
				t.Fatalf("failed commit changed the store: %d %s", h, root)
			}
		})
	}
	if _, err := s.View(context.Background(), 1); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("View above latest: %v", err)
	}
	if _, err := s.Prove(context.Background(), 0, k, k); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("Prove duplicate: %v", err)
	}
	if _, err := s.Prove(context.Background(), 0); err == nil {
		t.Fatal("Prove of no keys accepted")
	}
	v, err := s.View(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close() // idempotent
	if _, err := v.Get(context.Background(), k); !errors.Is(err, ErrViewClosed) {
		t.Fatalf("Get on a closed view: %v", err)
	}
}
