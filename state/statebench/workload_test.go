package statebench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

func small() Workload { return Workload{Keys: 1000, Block: 100, ValueSize: 16, Modules: 3, Seed: 7} }

func TestWritesDeterministicSortedDistinct(t *testing.T) {
	w := small()
	for h := uint64(1); h <= w.FillBlocks()+5; h++ {
		a, b := w.Writes(h), w.Writes(h)
		if len(a) != w.Block {
			t.Fatalf("block %d: %d writes, want %d", h, len(a), w.Block)
		}
		for i := range a {
			if !bytes.Equal(a[i].Value, b[i].Value) || modelKey(a[i].Key) != modelKey(b[i].Key) {
				t.Fatalf("block %d write %d differs between two calls", h, i)
			}
			if i > 0 && !lessKey(a[i-1].Key, a[i].Key) {
				t.Fatalf("block %d: writes %d,%d not strictly sorted", h, i-1, i)
			}
		}
	}
}

// TestHintedWrites: HintedWrites(h) writes what Writes(h) does, and each
// write's hint is the value a model that applied the blocks before holds
// (none for a key not written yet); values of odd sizes too.
func TestHintedWrites(t *testing.T) {
	for _, w := range []Workload{small(), {Keys: 300, Block: 40, ValueSize: 13, Modules: 2, Seed: 3}} {
		last := w.NewHeights()
		model := map[string][]byte{}
		hinted := 0
		for h := uint64(1); h <= w.FillBlocks()+8; h++ {
			plain, ws := w.Writes(h), w.HintedWrites(h, last)
			if len(ws) != len(plain) {
				t.Fatalf("block %d: %d hinted writes, %d writes", h, len(ws), len(plain))
			}
			for i, wr := range ws {
				k := modelKey(wr.Key)
				if k != modelKey(plain[i].Key) || !bytes.Equal(wr.Value, plain[i].Value) || len(wr.Value) != w.ValueSize {
					t.Fatalf("block %d write %d: hinted %x=%x, plain %x=%x", h, i, k, wr.Value, modelKey(plain[i].Key), plain[i].Value)
				}
				if !bytes.Equal(wr.Old, model[k]) {
					t.Fatalf("block %d write %d: hint %x, the key holds %x", h, i, wr.Old, model[k])
				}
				if wr.Old != nil {
					hinted++
				}
			}
			for _, wr := range plain {
				model[modelKey(wr.Key)] = wr.Value
			}
		}
		if hinted == 0 {
			t.Fatal("no write replaced a value")
		}
	}
}

func TestFillCoversEveryKeyOnce(t *testing.T) {
	w := Workload{Keys: 1050, Block: 100, ValueSize: 8, Modules: 4, Seed: 1}
	seen := map[int]int{}
	for h := uint64(1); h <= w.FillBlocks(); h++ {
		for _, i := range w.Indexes(h) {
			seen[i]++
		}
	}
	if len(seen) != w.Keys {
		t.Fatalf("fill wrote %d distinct keys, want %d", len(seen), w.Keys)
	}
	for i, n := range seen {
		if n != 1 || i < 0 || i >= w.Keys {
			t.Fatalf("key %d written %d times", i, n)
		}
	}
	if len(model(w, w.FillBlocks()+3)) != w.Keys {
		t.Fatal("updates after the fill must not add keys")
	}
}

func TestSeedChangesUpdates(t *testing.T) {
	a, b := small(), small()
	b.Seed++
	h := a.FillBlocks() + 1
	if bytes.Equal(a.Writes(h)[0].Value, b.Writes(h)[0].Value) {
		t.Fatal("different seeds produced the same value bytes")
	}
}

func TestValidate(t *testing.T) {
	for _, w := range []Workload{{}, {Keys: 10, Block: 20, ValueSize: 1, Modules: 1}, {Keys: 10, Block: 5, ValueSize: 0, Modules: 1}} {
		if w.Validate() == nil {
			t.Errorf("%+v: want an error", w)
		}
	}
	if err := DefaultWorkload().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFloorRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := small()
	f, err := OpenFloor(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := w.FillBlocks() + 2
	for h := uint64(1); h <= last; h++ {
		if err := f.Commit(ctx, w.Writes(h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = OpenFloor(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	model := model(w, last)
	for i := 0; i < w.Keys; i++ {
		k := w.Key(i)
		got, err := f.Get(ctx, state.Write{Key: k})
		if err != nil || !bytes.Equal(got, model[modelKey(k)]) {
			t.Fatalf("key %d: got %x, %v; want %x", i, got, err, model[modelKey(k)])
		}
	}
	if n, err := DirBytes(dir); err != nil || n == 0 {
		t.Fatalf("DirBytes = %d, %v", n, err)
	}
}

// TestRunSmall runs the whole benchmark at a tiny size: every measurement
// path (commits, prunes, reads, proofs that must verify, disk samples) runs
// and the table has its rows.
func TestRunSmall(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Workload = Workload{Keys: 400, Block: 50, ValueSize: 20, Modules: 2, Seed: 3}
	cfg.Blocks, cfg.Keep, cfg.Samples = 12, 3, 4
	cfg.ReadSamples, cfg.ProofSamples, cfg.ProofKeys = 50, 10, 300
	cfg.Dir = t.TempDir()
	var out strings.Builder
	if err := Run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"commit, update blocks", "latest read, warm", "without the value cache", "50 random keys, first read", "the same 50 keys again", "proof at 400 keys", "proof at 300 keys", "disk bytes per live key", "disk by record kind", "history", "pebble floor", "snapshot import", "end", "from local chunks"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// model is the dumb reference: the latest value of every key after applying
// blocks 1..h in order.
func model(w Workload, h uint64) map[string][]byte {
	m := make(map[string][]byte)
	for b := uint64(1); b <= h; b++ {
		for _, wr := range w.Writes(b) {
			m[modelKey(wr.Key)] = wr.Value
		}
	}
	return m
}

func modelKey(k types.StateKey) string { return string(k.Module[:]) + string(k.Key) }

// TestMeasureReads checks the passes of measureReads against a counting
// reader: every key twice, then the warm set once untimed and
// warmReadPasses times timed; a warm set larger than the keys is clamped,
// and a failing read is returned.
func TestMeasureReads(t *testing.T) {
	keys := readKeys(Workload{Keys: 100, Block: 10, ValueSize: 8, Modules: 1, Seed: 1}, 30)
	for _, warm := range []int{1, 7, 30, 500} {
		calls := map[string]int{}
		st, err := measureReads(keys, warm, func(k types.StateKey) error {
			calls[modelKey(k)]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		w := min(warm, len(keys))
		if st.keys != len(keys) || st.warmKeys != w {
			t.Fatalf("warm %d: stats name %d keys, %d warm", warm, st.keys, st.warmKeys)
		}
		want := map[string]int{}
		for i, k := range keys {
			want[modelKey(k)] += 2
			if i < w {
				want[modelKey(k)] += 1 + warmReadPasses
			}
		}
		for k, n := range want {
			if calls[k] != n {
				t.Fatalf("warm %d: key read %d times, want %d", warm, calls[k], n)
			}
		}
	}
	boom := errors.New("boom")
	if _, err := measureReads(keys, 5, func(types.StateKey) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing read: %v", err)
	}
}
