package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
)

// hintMode says how a store of TestCommitHints is given old-value hints.
type hintMode int

const (
	hintNone  hintMode = iota // no hints
	hintRight                 // the value the key holds (none for an absent key)
	hintWrong                 // a mix of wrong, stale, none-for-present, present-but-absent and right hints
)

// hinted returns ws with hints of mode m, as the caller of a commit on top
// of model (the version below) would give them; older is an older version's
// model, the source of stale hints.
func hinted(rng *rand.Rand, ws []Write, m hintMode, model, older map[string][]byte) []Write {
	out := make([]Write, len(ws))
	keys := slices.Sorted(maps.Keys(model))
	for i, w := range ws {
		cur := model[modelKey(w.Key)]
		switch m {
		case hintRight:
			w.Old = cur
		case hintWrong:
			switch rng.Intn(6) {
			case 0: // garbage
				w.Old = fmt.Appendf(nil, "garbage-%d", rng.Int())
			case 1: // stale: an older version's value (absent there: nil)
				w.Old = older[modelKey(w.Key)]
			case 2: // none, whatever the key holds
				w.Old = nil
			case 3: // another key's value, picked in key order so that a failure repeats
				if len(keys) > 0 {
					w.Old = model[keys[rng.Intn(len(keys))]]
				}
			case 4: // empty, not nil: no hint either
				w.Old = []byte{}
			case 5: // right
				w.Old = cur
			}
		}
		out[i] = w
	}
	return out
}

// dumpStore returns every key and value of s's datastore.
func dumpStore(t *testing.T, s *Store) map[string]string {
	t.Helper()
	res, err := s.d.Query(context.Background(), query.Query{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(all))
	for _, e := range all {
		m[e.Key] = string(e.Value)
	}
	return m
}

// TestCommitHints commits one random workload (replacements, deletions,
// recreations, A → B → A, pipelined with CommitAsync) to stores given no
// hints, right hints and wrong ones, on a backend with atomic batches
// (pebble) and one without (memory, whose change sets record old values):
// the roots and every stored key and value must be the same. A wrong hint
// the commit trusted would change a history record or a change set.
func TestCommitHints(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{"memory", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			stores := make([]*Store, 3)
			for m := range stores {
				if backend == "pebble" {
					stores[m] = OpenOnFSStore(t, vfs.NewMem(), Options{})
				} else {
					s, err := Open(ctx, dssync.MutexWrap(ds.NewMapDatastore()), Options{})
					if err != nil {
						t.Fatal(err)
					}
					stores[m] = s
				}
			}
			rng := rand.New(rand.NewSource(9))
			models := []map[string][]byte{{}}
			waits := make([]func() error, len(stores))
			for h := uint64(1); h <= 30; h++ {
				model := models[h-1]
				var ws []Write
				for _, i := range rng.Perm(48)[:8+rng.Intn(24)] {
					w := Write{Key: key(fmt.Sprintf("k%02d", i))}
					if rng.Intn(4) > 0 { // a quarter deletes; few values, so A → B → A happens
						w.Value = fmt.Appendf(nil, "v%d", rng.Intn(3))
					}
					ws = append(ws, w)
				}
				next := make(map[string][]byte, len(model))
				for k, v := range model {
					next[k] = v
				}
				for _, w := range ws {
					if w.Value == nil {
						delete(next, modelKey(w.Key))
					} else {
						next[modelKey(w.Key)] = w.Value
					}
				}
				models = append(models, next)
				older := models[max(0, int(h)-3)]
				for m, s := range stores {
					root, wait, err := s.CommitAsync(ctx, h, hinted(rng, ws, hintMode(m), model, older))
					if err != nil {
						t.Fatalf("height %d, mode %d: %v", h, m, err)
					}
					if root != refRoot(next) {
						t.Fatalf("height %d, mode %d: root %s, reference %s", h, m, root, refRoot(next))
					}
					waits[m] = wait
				}
			}
			var dumps []map[string]string
			for m, s := range stores {
				if err := waits[m](); err != nil {
					t.Fatal(err)
				}
				dumps = append(dumps, dumpStore(t, s))
			}
			for m := 1; m < len(dumps); m++ {
				if len(dumps[m]) != len(dumps[0]) {
					t.Errorf("mode %d: %d stored keys, %d without hints", m, len(dumps[m]), len(dumps[0]))
				}
				for k, v := range dumps[0] {
					if got, ok := dumps[m][k]; !ok || got != v {
						t.Errorf("mode %d: key %s: %q (stored %v), without hints %q", m, k, got, ok, v)
					}
				}
			}
			// The history is what old reads return: check them too.
			for m, s := range stores {
				for h := uint64(1); h < uint64(len(models)); h++ {
					v, err := s.View(ctx, h)
					if err != nil {
						t.Fatal(err)
					}
					for k, want := range models[h] {
						got, err := v.Get(ctx, splitKey(k))
						if err != nil || !bytes.Equal(got, want) {
							t.Fatalf("mode %d, height %d, key %q: %q, %v; want %q", m, h, k, got, err, want)
						}
					}
					v.Close()
				}
			}
		})
	}
}

// TestCommitHintSkipsRead shows that a right hint is used, not only
// checked: with a key's value gone from the flat index (the index is
// damaged), replacing the key fails with ErrCorrupt without a hint, and
// succeeds with the right one, whose value the version's history then
// holds. A wrong or empty hint for it fails as no hint does.
func TestCommitHintSkipsRead(t *testing.T) {
	ctx := context.Background()
	k := key("k")
	for _, c := range []struct {
		name string
		w    Write
		want error
	}{
		{"no hint", Write{Key: k, Value: []byte("B")}, ErrCorrupt},
		{"wrong hint", Write{Key: k, Value: []byte("B"), Old: []byte("X")}, ErrCorrupt},
		{"empty hint", Write{Key: k, Value: []byte("B"), Old: []byte{}}, ErrCorrupt},
		{"right hint", Write{Key: k, Value: []byte("B"), Old: []byte("A")}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := OpenOnFSStore(t, vfs.NewMem(), Options{})
			mustCommit(t, s, 1, []Write{{Key: k, Value: []byte("A")}, {Key: key("other"), Value: []byte("O")}})
			// The version below the one tested does not write k: the
			// commit would take k's old value from its writes.
			mustCommit(t, s, 2, []Write{{Key: key("other"), Value: []byte("P")}})
			if err := s.d.Delete(ctx, mustKVKey(t, s.modules, k)); err != nil {
				t.Fatal(err)
			}
			_, err := s.Commit(ctx, 3, []Write{c.w})
			if !errors.Is(err, c.want) {
				t.Fatalf("commit: %v, want %v", err, c.want)
			}
			if err != nil {
				return
			}
			v, err := s.View(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if got, err := v.Get(ctx, k); err != nil || string(got) != "A" {
				t.Fatalf("version 1: %q, %v; want A", got, err)
			}
		})
	}
}
