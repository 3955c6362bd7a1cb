package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// historyStores returns a fresh store of each backend whose history reads
// differ: memory (point probes per version) and pebble (one iterator).
func historyStores(t *testing.T, opts Options) map[string]*Store {
	mem, err := Open(context.Background(), dssync.MutexWrap(ds.NewMapDatastore()), opts)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Store{"memory": mem, "pebble": OpenOnFSStore(t, vfs.NewMem(), opts)}
}

// historyWorkload is a key whose value changes at every version, including a
// deletion, a recreation and A → B → A, beside keys that keep theirs and
// keys that share its first nibble (so that proofs of its absence end at
// another leaf). It returns the model of every version (index = height).
func historyWorkload(t *testing.T, s *Store) []map[string][]byte {
	t.Helper()
	a := key("a")
	others := []types.StateKey{key("b"), key("c"), key("d")}
	steps := [][]byte{[]byte("A"), []byte("B"), nil, []byte("C"), []byte("A"), []byte("B"), []byte("A")}
	models := []map[string][]byte{{}}
	for i, v := range steps {
		h := uint64(i + 1)
		ws := []Write{{Key: a, Value: v}}
		if h == 1 {
			for _, k := range others {
				ws = append(ws, Write{Key: k, Value: []byte("o-" + string(k.Key))})
			}
		}
		if h%2 == 0 { // another key changes too, in every other version
			ws = append(ws, Write{Key: others[0], Value: fmt.Appendf(nil, "b%d", h)})
		}
		m := map[string][]byte{}
		for k, x := range models[h-1] {
			m[k] = x
		}
		for _, w := range ws {
			if w.Value == nil {
				delete(m, modelKey(w.Key))
			} else {
				m[modelKey(w.Key)] = w.Value
			}
		}
		models = append(models, m)
		if root := mustCommit(t, s, h, ws); root != refRoot(m) {
			t.Fatalf("height %d: root %s, reference %s", h, root, refRoot(m))
		}
	}
	return models
}

// absentNextTo returns a key absent from m whose key path shares its first
// nibble with the key path of k: in a tree of a few keys its proof of absence
// ends at k's leaf.
func absentNextTo(k types.StateKey, m map[string][]byte) types.StateKey {
	want := nibble(types.KeyPath(k), 0)
	for i := 0; ; i++ {
		c := key(fmt.Sprintf("x%d", i))
		if _, ok := m[modelKey(c)]; !ok && nibble(types.KeyPath(c), 0) == want {
			return c
		}
	}
}

// TestOldVersionReads reads every version of a key that changed at every
// version (A, B, deleted, C, A, B, A) through Get, Prove and Leaves, on a
// warm store and on a reopened one whose cache is empty: values of replaced
// leaves come from the history, and a proof of absence by another leaf
// carries that leaf's value hash at the proved version.
func TestOldVersionReads(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			models := historyWorkload(t, s)
			check := func(s *Store) {
				latest, _ := s.Latest()
				for h := uint64(1); h <= latest; h++ {
					m := models[h]
					v, err := s.View(ctx, h)
					if err != nil {
						t.Fatal(err)
					}
					for _, k := range []types.StateKey{key("a"), key("b"), key("c")} {
						got, err := v.Get(ctx, k)
						if err != nil || !bytes.Equal(got, m[modelKey(k)]) {
							t.Fatalf("version %d: %s = %q, %v; model %q", h, k, got, err, m[modelKey(k)])
						}
					}
					b := key("b")
					absent := absentNextTo(b, m)
					p, err := v.Prove(ctx, key("a"), absent)
					if err != nil {
						t.Fatal(err)
					}
					if err := types.Verify(v.Root(), p); err != nil {
						t.Fatalf("version %d: %v", h, err)
					}
					for _, e := range p.Entries {
						if !bytes.Equal(e.Value, m[modelKey(e.Key)]) {
							t.Fatalf("version %d: proof of %s says %q, model %q", h, e.Key, e.Value, m[modelKey(e.Key)])
						}
						if modelKey(e.Key) == modelKey(absent) && (e.Other == nil || e.Other.ValueHash != types.ValueHash(m[modelKey(b)])) {
							t.Fatalf("version %d: absence of %s not proved by b's leaf with its value then: %+v", h, absent, e.Other)
						}
					}
					n := 0
					err = v.Leaves(ctx, func(_ types.Hash, k types.StateKey, val []byte) error {
						n++
						if !bytes.Equal(val, m[modelKey(k)]) {
							return fmt.Errorf("leaf %s = %q, model %q", k, val, m[modelKey(k)])
						}
						return nil
					})
					if err != nil || n != len(m) {
						t.Fatalf("version %d: %d leaves, model %d: %v", h, n, len(m), err)
					}
					v.Close()
				}
				auditClean(t, s)
			}
			check(s)
			cold, err := Open(ctx, s.d, Options{AtomicBatches: true})
			if err != nil {
				t.Fatal(err)
			}
			cold.pdb = s.pdb
			check(cold)
		})
	}
}

// TestHistoryPrunedWithVersion: Prune deletes the history records of every
// version up to the new minimum and no others; the retained versions still
// read their values from the rest, and the audit is clean.
func TestHistoryPrunedWithVersion(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{KeepVersions: 3, PruneChunk: 1}) {
		t.Run(name, func(t *testing.T) {
			models := historyWorkload(t, s)
			st, err := s.Prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			latest, _ := s.Latest()
			if st.Min != latest-2 {
				t.Fatalf("min %d, want %d", st.Min, latest-2)
			}
			hist, err := s.keysWithPrefix(ctx, nsHist)
			if err != nil {
				t.Fatal(err)
			}
			kept := map[uint64]bool{}
			for _, k := range hist {
				_, d, err := parseHistKey(k[len(nsHist):])
				if err != nil {
					t.Fatal(err)
				}
				if d <= st.Min {
					t.Fatalf("history of version %d left after pruning to %d", d, st.Min)
				}
				kept[d] = true
			}
			// Every retained version above the minimum replaced a.
			for d := st.Min + 1; d <= latest; d++ {
				if !kept[d] {
					t.Fatalf("history of version %d (retained versions read it) is gone", d)
				}
			}
			for h := st.Min; h <= latest; h++ {
				v, err := s.View(ctx, h)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := v.Get(ctx, key("a")); err != nil || !bytes.Equal(got, models[h][modelKey(key("a"))]) {
					t.Fatalf("version %d: a = %q, %v", h, got, err)
				}
				v.Close()
			}
			auditClean(t, s)
		})
	}
}

// TestHistoryMissingOrCorrupt: a lost history record, or one holding
// another value, makes the reads of the version that needs it fail with
// ErrCorrupt naming the leaf, and the audit report the leaf missing; a
// history record the pruner would not delete is reported leaked.
func TestHistoryMissingOrCorrupt(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			historyWorkload(t, s)
			// Version 4 holds a=C, which version 5 replaced and no version
			// held again (A and B are held again later: their leaves
			// have records of several versions, or the flat index).
			leaf := leafSlot(types.KeyPath(key("a")), types.ValueHash([]byte("C")), key("a"))
			k := histKey(types.KeyPath(key("a")), 5)
			good, err := s.d.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range [][]byte{nil, []byte("B")} {
				if bad == nil {
					err = s.d.Delete(ctx, k)
				} else {
					err = s.d.Put(ctx, k, bad)
				}
				if err != nil {
					t.Fatal(err)
				}
				v, err := s.View(ctx, 4)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := v.Get(ctx, key("a")); !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(leaf.h.String())) {
					t.Fatalf("history record %q: Get = %v, want ErrCorrupt naming the leaf", bad, err)
				}
				if _, err := v.Prove(ctx, key("a")); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("history record %q: Prove = %v, want ErrCorrupt", bad, err)
				}
				v.Close()
				rep, err := s.Audit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Missing) != 1 || rep.Missing[0] != leaf.h {
					t.Fatalf("history record %q: audit %+v, want leaf %s missing", bad, rep, leaf.h)
				}
			}
			if err := s.d.Put(ctx, k, good); err != nil {
				t.Fatal(err)
			}
			auditClean(t, s)
			// Records the pruner would never delete: of a version already
			// pruned (version 0 here: pruneDone is 0, and no commit writes
			// it), of a retained version whose stale list does not name
			// the path, and of a version above the latest.
			latest, _ := s.Latest()
			for _, d := range []uint64{0, 3, latest + 1} {
				k := histKey(types.Hash{9}, d)
				if err := s.d.Put(ctx, k, []byte("x")); err != nil {
					t.Fatal(err)
				}
				rep, err := s.Audit(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Leaked) != 1 || rep.Leaked[0] != (types.Hash{9}) || len(rep.Missing) != 0 {
					t.Fatalf("history record of version %d nobody prunes: audit %+v, want it leaked", d, rep)
				}
				if err := s.d.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			auditClean(t, s)
		})
	}
}

// TestExportBelowLatestWhileCommitting exports a version below the latest
// while other versions are committed, replacing a third of its leaves: the
// chunks must equal those of the same export before those commits, on
// pebble (windowed reads, history by iterator) and in memory (per-leaf
// reads, history by point probes).
func TestExportBelowLatestWhileCommitting(t *testing.T) {
	ctx := context.Background()
	old := exportWindowLeaves
	exportWindowLeaves = 50
	defer func() { exportWindowLeaves = old }()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			snapWorkload(t, s, 21, 6, 150)
			latest, _ := s.Latest()
			h := latest - 2
			wantM, want := export(t, s, h, 20)
			v, err := s.View(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			var wg sync.WaitGroup
			wg.Go(func() {
				for b := uint64(1); b <= 4; b++ {
					var ws []Write
					for i := 0; i < 64*64; i += 3 {
						k := types.StateKey{Module: types.Address{byte(i % 4)}, Key: []byte{byte(i / 64), byte(i % 64)}}
						ws = append(ws, Write{Key: k, Value: fmt.Appendf(nil, "v%d-%d", latest+b, i)})
					}
					if _, err := s.Commit(ctx, latest+b, ws); err != nil {
						t.Error(err)
						return
					}
				}
			})
			var chunks [][]byte
			m, err := v.ExportSnapshot(ctx, 20, func(_ int, c []byte) error {
				chunks = append(chunks, bytes.Clone(c))
				return nil
			})
			wg.Wait()
			if err != nil {
				t.Fatalf("export while committing: %v", err)
			}
			if !bytes.Equal(types.MustEncode(m), types.MustEncode(wantM)) || len(chunks) != len(want) {
				t.Fatalf("export while committing: manifest differs")
			}
			for i := range chunks {
				if !bytes.Equal(chunks[i], want[i]) {
					t.Fatalf("export while committing: chunk %d differs", i)
				}
			}
			if latest, _ := s.Latest(); latest != h+6 {
				t.Fatalf("latest %d after the commits, want %d", latest, h+6)
			}
		})
	}
}

// TestHistoryPipelined commits versions with CommitAsync, every version
// rewriting the keys the one below wrote: the old values come from the
// version below's writes. Every other version is left in flight when the
// next one starts (its batch may not be applied yet); the others are waited
// for and their write buffers overwritten before the next one, as an
// executor reusing its buffers does, so the version below's writes must be
// kept as copies. Every version reads back its own values afterwards.
func TestHistoryPipelined(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			const versions, keys = 8, 300
			var waits []func() error
			for h := uint64(1); h <= versions; h++ {
				buf := make([]byte, 0, keys*8)
				ws := make([]Write, keys)
				for i := range ws {
					at := len(buf)
					buf = fmt.Appendf(buf, "%d-%d", h, i)
					ws[i] = Write{Key: key(fmt.Sprintf("k%d", i)), Value: buf[at:]}
				}
				if h%3 == 0 {
					ws[0].Value = nil // a deletion now and then
				}
				_, wait, err := s.CommitAsync(ctx, h, ws)
				if err != nil {
					t.Fatal(err)
				}
				waits = append(waits, wait)
				if h%2 == 1 {
					if err := wait(); err != nil {
						t.Fatal(err)
					}
					clear(buf[:cap(buf)]) // the caller reuses its buffer
				}
			}
			for _, wait := range waits {
				if err := wait(); err != nil {
					t.Fatal(err)
				}
			}
			for h := uint64(1); h <= versions; h++ {
				v, err := s.View(ctx, h)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < keys; i += 37 {
					want := fmt.Appendf(nil, "%d-%d", h, i)
					if i == 0 && h%3 == 0 {
						want = nil
					}
					if got, err := v.Get(ctx, key(fmt.Sprintf("k%d", i))); err != nil || !bytes.Equal(got, want) {
						t.Fatalf("version %d, key %d: %q, %v; want %q", h, i, got, err, want)
					}
				}
				v.Close()
			}
			auditClean(t, s)
		})
	}
}

// farWorkload commits versions 1..n: at version 1 a hot key, a cold key, a
// late key, a key that cycles A → B → A with deletions, and fillers; then
// every version changes the hot key, every 7th the cycling one (deleting
// it every 5th change and creating it again at the next), two fillers each
// version, and version n the late key, so that a read far below the latest
// needs a record written n-1 versions above it. With prune set it prunes
// after every commit. It returns the model of every version (index =
// height).
func farWorkload(t *testing.T, s *Store, n int, prune bool) []map[string][]byte {
	t.Helper()
	ctx := context.Background()
	models := []map[string][]byte{{}}
	cycle := [][]byte{[]byte("A"), []byte("B")}
	changes := 0
	for h := uint64(1); h <= uint64(n); h++ {
		var ws []Write
		if h == 1 {
			ws = append(ws, Write{Key: key("cold"), Value: []byte("cold")}, Write{Key: key("late"), Value: []byte("late-1")},
				Write{Key: key("mid"), Value: cycle[0]})
			for i := range 30 {
				ws = append(ws, Write{Key: key(fmt.Sprintf("f%d", i)), Value: fmt.Appendf(nil, "f%d-1", i)})
			}
		} else {
			fillers := []uint64{h % 30, h * 7 % 30}
			if fillers[0] == fillers[1] {
				fillers = fillers[:1]
			}
			for _, i := range fillers {
				ws = append(ws, Write{Key: key(fmt.Sprintf("f%d", i)), Value: fmt.Appendf(nil, "f%d-%d", i, h)})
			}
			if h%7 == 0 {
				changes++
				var v []byte
				if changes%5 != 0 {
					v = cycle[changes%2]
				}
				ws = append(ws, Write{Key: key("mid"), Value: v})
			}
			if h == uint64(n) {
				ws = append(ws, Write{Key: key("late"), Value: []byte("late-n")})
			}
		}
		ws = append(ws, Write{Key: key("hot"), Value: fmt.Appendf(nil, "hot-%d", h)})
		m := maps.Clone(models[h-1])
		for _, w := range ws {
			if len(w.Value) == 0 {
				delete(m, modelKey(w.Key))
			} else {
				m[modelKey(w.Key)] = w.Value
			}
		}
		models = append(models, m)
		if root := mustCommit(t, s, h, ws); root != refRoot(m) {
			t.Fatalf("height %d: root %s, reference %s", h, root, refRoot(m))
		}
		if prune {
			if _, err := s.Prune(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	return models
}

// checkVersions reads every key of the models at every retained version of
// s through Get, and every 50th version's leaves (and the lowest one's)
// through Leaves and an export, against the models.
func checkVersions(t *testing.T, s *Store, models []map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	latest, _ := s.Latest()
	keys := map[string]types.StateKey{}
	for _, m := range models {
		for mk := range m {
			keys[mk] = splitKey(mk)
		}
	}
	for h := s.MinVersion(); h <= latest; h++ {
		m := models[h]
		v, err := s.View(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		for mk, k := range keys {
			if got, err := v.Get(ctx, k); err != nil || !bytes.Equal(got, m[mk]) {
				t.Fatalf("version %d of %d: %s = %q, %v; model %q", h, latest, k, got, err, m[mk])
			}
		}
		if h%50 == 0 || h == s.MinVersion() {
			got := map[string][]byte{}
			err := v.Leaves(ctx, func(_ types.Hash, k types.StateKey, val []byte) error {
				got[modelKey(k)] = val
				return nil
			})
			if err != nil || !maps.EqualFunc(got, m, bytes.Equal) {
				t.Fatalf("version %d: leaves differ from the model (%d against %d): %v", h, len(got), len(m), err)
			}
			man, chunks := export(t, s, h, 7)
			got = map[string][]byte{}
			for _, b := range chunks {
				c, err := VerifyChunk(man, b)
				if err != nil {
					t.Fatalf("version %d: %v", h, err)
				}
				for _, l := range c.Leaves {
					got[modelKey(l.Key)] = l.Value
				}
			}
			if !maps.EqualFunc(got, m, bytes.Equal) {
				t.Fatalf("version %d: export differs from the model", h)
			}
		}
		v.Close()
	}
}

// TestFarOldVersionReads reads every key at every version of a store that
// keeps them all (400 versions): a hot key changed at every version, a key
// changed at many (A → B → A, deleted and created again), a cold key never
// changed and a key changed only by the latest version, on memory and
// pebble, warm and after a reopen (empty cache).
func TestFarOldVersionReads(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			models := farWorkload(t, s, 400, false)
			checkVersions(t, s, models)
			auditClean(t, s)
			if s.pdb != nil {
				// The late key's value at version 1 is in the record of
				// version 400: one seek finds it, past the 399 versions
				// that wrote history for the hot key.
				kp := types.KeyPath(key("late"))
				leaf := leafSlot(kp, types.ValueHash([]byte("late-1")), key("late"))
				it, err := s.historyIter(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := historySeek(it, 1, kp, &leaf)
				seeks := it.Stats().ForwardSeekCount[pebble.InterfaceCall]
				it.Close()
				if err != nil || string(got) != "late-1" || seeks != 1 {
					t.Fatalf("history read of late at version 1: %q, %v, %d seeks; want late-1 in one", got, err, seeks)
				}
			}
			cold, err := Open(ctx, s.d, Options{AtomicBatches: true})
			if err != nil {
				t.Fatal(err)
			}
			cold.pdb = s.pdb
			checkVersions(t, cold, models)
		})
	}
}

// wantHistory returns the history records a store should hold after
// pruning to min: (key path, d) for each version d in (min, latest] and
// each key d replaced or deleted.
func wantHistory(models []map[string][]byte, min uint64) map[string]bool {
	want := map[string]bool{}
	for d := min + 1; d < uint64(len(models)); d++ {
		for mk, old := range models[d-1] {
			if !bytes.Equal(models[d][mk], old) {
				want[histKey(types.KeyPath(splitKey(mk)), d).String()] = true
			}
		}
	}
	return want
}

// TestFarOldVersionsPruned prunes such a store, after every commit and
// once at the end (the first prune of a store that kept 400 versions, in
// chunks of 3): it must hold exactly the history records the retained
// versions read, every retained version must read as the model, and the
// audit must be clean.
func TestFarOldVersionsPruned(t *testing.T) {
	ctx := context.Background()
	for _, every := range []bool{true, false} {
		for name, s := range historyStores(t, Options{KeepVersions: 60, PruneChunk: 3}) {
			t.Run(fmt.Sprintf("%s/every=%v", name, every), func(t *testing.T) {
				models := farWorkload(t, s, 400, every)
				st, err := s.Prune(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Min != 341 {
					t.Fatalf("min %d after pruning, want 341", st.Min)
				}
				hist, err := s.keysWithPrefix(ctx, nsHist)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]bool{}
				for _, k := range hist {
					got[k] = true
				}
				if want := wantHistory(models, st.Min); !maps.Equal(got, want) {
					t.Fatalf("%d history records after pruning to %d, want %d", len(got), st.Min, len(want))
				}
				checkVersions(t, s, models)
				auditClean(t, s)
			})
		}
	}
}

// TestHistoryOtherPathNotReturned: with the record a read needs missing,
// a record of the next key path in key order (holding the very value the
// read wants) and one of the same path at the read version itself must not
// be taken for it: Get, Leaves and an export fail with ErrCorrupt.
func TestHistoryOtherPathNotReturned(t *testing.T) {
	ctx := context.Background()
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			a := key("a")
			mustCommit(t, s, 1, []Write{{Key: a, Value: []byte("A")}, {Key: key("b"), Value: []byte("b")}})
			mustCommit(t, s, 2, []Write{{Key: a, Value: []byte("B")}})
			mustCommit(t, s, 3, []Write{{Key: key("b"), Value: []byte("c")}})
			kp := types.KeyPath(a)
			if err := s.d.Delete(ctx, histKey(kp, 2)); err != nil {
				t.Fatal(err)
			}
			next := kp
			for i := len(next) - 1; i >= 0; i-- {
				if next[i]++; next[i] != 0 {
					break
				}
			}
			for _, k := range []ds.Key{histKey(next, 2), histKey(kp, 1)} {
				if err := s.d.Put(ctx, k, []byte("A")); err != nil {
					t.Fatal(err)
				}
			}
			v, err := s.View(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if got, err := v.Get(ctx, a); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get = %q, %v; want ErrCorrupt", got, err)
			}
			if err := v.Leaves(ctx, func(types.Hash, types.StateKey, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Leaves = %v; want ErrCorrupt", err)
			}
			if _, err := v.ExportSnapshot(ctx, 1, func(int, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("export = %v; want ErrCorrupt", err)
			}
		})
	}
}
