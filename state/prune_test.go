package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

func key(s string) types.StateKey { return types.StateKey{Key: []byte(s)} }

func auditClean(t *testing.T, s *Store) {
	t.Helper()
	rep, err := s.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("audit: %d leaked, %d missing, %d index mismatches", len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
	}
}

// TestPruneNodeComesBack: value A → B → A recreates the same leaf and root
// node ids. The stale entry of version 2 names an id that is live again at
// version 3, as a record of its own under born 3; pruning deletes the born-1
// record and must leave that one. The history records of versions 2 (a=A)
// and 3 (a=B) go with their versions.
func TestPruneNodeComesBack(t *testing.T) {
	ctx := context.Background()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	s, err := Open(ctx, d, Options{KeepVersions: 1})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustCommit(t, s, 1, []Write{{Key: key("a"), Value: []byte("A")}, {Key: key("b"), Value: []byte("X")}})
	mustCommit(t, s, 2, []Write{{Key: key("a"), Value: []byte("B")}})
	r3 := mustCommit(t, s, 3, []Write{{Key: key("a"), Value: []byte("A")}})
	if r1 != r3 {
		t.Fatalf("A→B→A gave a different root")
	}
	st, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 made the root node of version 1 stale, version 3 that of
	// version 2; it wrote the id of version 1 again, under born 3.
	if st.Deleted != 2 || st.Min != 3 {
		t.Fatalf("prune stats %+v, want 2 deleted, min 3", st)
	}
	if hist, err := s.keysWithPrefix(ctx, nsHist); err != nil || len(hist) != 0 {
		t.Fatalf("history left after pruning to version 3: %q %v", hist, err)
	}
	// Read through a fresh store so that no cached node hides a deletion.
	s2, err := Open(ctx, d, Options{KeepVersions: 1})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s2.View(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got, err := v.Get(ctx, key("a")); err != nil || string(got) != "A" {
		t.Fatalf("a = %q, %v", got, err)
	}
	p, err := v.Prove(ctx, key("a"), key("b"))
	if err != nil || types.Verify(r3, p) != nil {
		t.Fatalf("prove after prune: %v", err)
	}
	auditClean(t, s2)
}

// TestKeepVersionsChange reopens one pebble database with K = 5, 2, 10.
func TestKeepVersionsChange(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	r := rand.New(rand.NewPCG(1, 1))
	m := newModel()
	h := uint64(0)
	commitN := func(s *Store, n int) {
		for i := 0; i < n; i++ {
			h++
			ws := randWrites(r, 30, 50)
			m.apply(ws)
			m.roots = append(m.roots, mustCommit(t, s, h, ws))
		}
	}
	step := func(k uint64, n int, wantMin uint64) {
		s, err := OpenPebble(dir, Options{KeepVersions: k})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		commitN(s, n)
		if _, err := s.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if got := s.MinVersion(); got != wantMin {
			t.Fatalf("K=%d: min %d, want %d", k, got, wantMin)
		}
		if _, err := s.View(ctx, wantMin-1); !errors.Is(err, ErrPruned) {
			t.Fatalf("K=%d: view below min: %v", k, err)
		}
		for v := wantMin; v <= h; v++ {
			view, err := s.View(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			checkView(t, r, view, m.versions[v], m.roots[v])
			view.Close()
		}
		if lag := s.PrunerLag(); lag != 0 {
			t.Fatalf("lag %d after prune", lag)
		}
		auditClean(t, s)
	}
	step(5, 20, 16)
	step(2, 0, 19)  // smaller K prunes more on the next Prune
	step(10, 0, 19) // larger K cannot bring versions back
	step(10, 10, 21)
}

// TestPruneConcurrentReaders commits and prunes while readers open views
// at recent heights: every read succeeds or View fails with ErrPruned,
// never a missing node. Run under -race.
func TestPruneConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	s, err := OpenMemory(Options{KeepVersions: 2, CacheBytes: 1, PruneChunk: 3})
	if err != nil {
		t.Fatal(err)
	}
	const heights = 60
	done := make(chan struct{})
	var wg sync.WaitGroup
	var pruned, read sync.Map
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for {
				select {
				case <-done:
					return
				default:
				}
				latest, _ := s.Latest()
				h := latest - min(latest, uint64(r.IntN(4)))
				v, err := s.View(ctx, h)
				if errors.Is(err, ErrPruned) {
					pruned.Store(h, true)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				keys := []types.StateKey{randKey(r, 40), randKey(r, 40)}
				if modelKey(keys[0]) == modelKey(keys[1]) {
					keys = keys[:1]
				}
				p, err := v.Prove(ctx, keys...)
				if err == nil {
					err = types.Verify(v.Root(), p)
				}
				if err == nil {
					var got []byte
					got, err = v.Get(ctx, keys[0])
					if err == nil && !bytes.Equal(got, p.Entries[indexOf(p, keys[0])].Value) {
						t.Errorf("view %d: Get and Prove disagree", h)
					}
				}
				v.Close()
				if err != nil {
					t.Errorf("view %d: %v", h, err)
					return
				}
				read.Store(h, true)
			}
		}()
	}
	r := rand.New(rand.NewPCG(9, 9))
	for h := uint64(1); h <= heights; h++ {
		mustCommit(t, s, h, randWrites(r, 20, 40))
		if _, err := s.Prune(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	auditClean(t, s)
}

func indexOf(p *types.Proof, k types.StateKey) int {
	for i, e := range p.Entries {
		if modelKey(e.Key) == modelKey(k) {
			return i
		}
	}
	return -1
}

// TestAuditDetects proves the audit can fail: an injected unreachable node
// is reported leaked, a deleted reachable node missing, a wrong flat index
// entry a mismatch.
func TestAuditDetects(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	r := rand.New(rand.NewPCG(2, 2))
	mustCommit(t, s, 1, randWrites(r, 100, 100))
	auditClean(t, s)

	var junk types.Hash
	junk[0] = 0xee
	if err := s.d.Put(ctx, nodeKey(1, junk), []byte{tagNode, 1}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Audit(ctx)
	if err != nil || len(rep.Leaked) != 1 || rep.Leaked[0] != junk || len(rep.Missing) != 0 {
		t.Fatalf("injected leak: %+v %v", rep, err)
	}
	if err := s.d.Delete(ctx, nodeKey(1, junk)); err != nil {
		t.Fatal(err)
	}

	_, root := s.Latest()
	if err := s.d.Delete(ctx, nodeKey(1, types.Hash(root))); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Audit(ctx)
	if err != nil || len(rep.Missing) != 1 || rep.Missing[0] != types.Hash(root) {
		t.Fatalf("injected missing node: %+v %v", rep, err)
	}

	s2 := openMem(t)
	mustCommit(t, s2, 1, []Write{{Key: key("a"), Value: []byte("1")}, {Key: key("b"), Value: []byte("2")}})
	if err := s2.d.Put(ctx, mustKVKey(t, s2.modules, key("a")), []byte("9")); err != nil {
		t.Fatal(err)
	}
	if rep, err := s2.Audit(ctx); err != nil || rep.IndexMismatch != 1 {
		t.Fatalf("injected index mismatch: %+v %v", rep, err)
	}
}

// TestAuditDetectsWrongLeafKey corrupts the key of a leaf in a stored
// node. The key path and leaf hash are derived from the stored key and value
// hash, so the node no longer hashes to its id, and the audit must report
// it missing.
func TestAuditDetectsWrongLeafKey(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	r := rand.New(rand.NewPCG(3, 3))
	mustCommit(t, s, 1, randWrites(r, 100, 100))
	auditClean(t, s)
	queue := []nodeRef{s.root.ref()}
	for len(queue) > 0 {
		n, err := s.loadNode(ctx, queue[0])
		if err != nil {
			t.Fatal(err)
		}
		queue = queue[1:]
		a := n.all()
		for i, e := range a {
			if e.kind == slotChild {
				queue = append(queue, e.ref())
				continue
			}
			if e.kind != slotLeaf {
				continue
			}
			k := e.key()
			k.Key = append([]byte{}, k.Key...)
			k.Key[0] ^= 1
			a[i] = leafSlot(types.KeyPath(k), e.vh(), k)
			bad := makeNode(n.born, &a, s.modules)
			if err := s.d.Put(ctx, nodeKey(n.born, n.id), appendNode(nil, bad, s.modules)); err != nil {
				t.Fatal(err)
			}
			rep, err := s.Audit(ctx)
			if err != nil || len(rep.Missing) != 1 || rep.Missing[0] != n.id {
				t.Fatalf("wrong key of leaf %x: %+v %v", e.h, rep, err)
			}
			return
		}
	}
	t.Fatal("no leaf slot in the tree")
}

func TestPinHoldsVersion(t *testing.T) {
	ctx := context.Background()
	s, err := OpenMemory(Options{KeepVersions: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	for h := uint64(1); h <= 3; h++ {
		mustCommit(t, s, h, randWrites(r, 20, 30))
	}
	if err := s.Pin(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for h := uint64(4); h <= 6; h++ {
		mustCommit(t, s, h, randWrites(r, 20, 30))
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if s.MinVersion() != 2 || s.PrunerLag() != 4 {
		t.Fatalf("pinned: min %d lag %d, want 2 and 4", s.MinVersion(), s.PrunerLag())
	}
	auditClean(t, s)
	if err := s.Unpin(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if s.MinVersion() != 6 || s.PrunerLag() != 0 {
		t.Fatalf("unpinned: min %d lag %d", s.MinVersion(), s.PrunerLag())
	}
	if err := s.Pin(ctx, 1); !errors.Is(err, ErrPruned) {
		t.Fatalf("pin below min: %v", err)
	}
	auditClean(t, s)
}

// TestPruneIdempotentAfterCrash replays a prune whose progress mark was
// lost (as after a crash between the deletes and the mark): the second run
// meets already-deleted nodes, counts them as missing, does not stop, and
// leaves a clean store.
func TestPruneIdempotentAfterCrash(t *testing.T) {
	ctx := context.Background()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	s, err := Open(ctx, d, Options{KeepVersions: 2, PruneChunk: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(6, 6))
	for h := uint64(1); h <= 8; h++ {
		mustCommit(t, s, h, randWrites(r, 30, 40))
	}
	saved := map[ds.Key][]byte{}
	for v := uint64(1); v <= 8; v++ {
		for _, k := range []ds.Key{staleKey(v), rootKey(v - 1), changesKey(v - 1)} {
			if raw, err := d.Get(ctx, k); err == nil {
				saved[k] = raw
			}
		}
	}
	first, err := s.Prune(ctx)
	if err != nil || first.Deleted == 0 {
		t.Fatalf("first prune: %+v %v", first, err)
	}
	// Undo the progress: the stale lists and the mark come back, the
	// deleted nodes stay deleted.
	for k, v := range saved {
		if err := d.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Put(ctx, keyPruneDone, binary.AppendUvarint(nil, 0)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, d, Options{KeepVersions: 2, PruneChunk: 5})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s2.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Deleted != first.Deleted {
		t.Fatalf("replayed prune: %+v, first %+v", again, first)
	}
	auditClean(t, s2)
}

// TestAuditDetectsLostHistoryOfReturningLeaf: a = A, B, A, C at versions
// 1–4. Leaf A is held by two ranges of versions (1 and 3), whose values are
// in two history records (of versions 2 and 4); losing the first must show
// in the audit although the second is there.
func TestAuditDetectsLostHistoryOfReturningLeaf(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	others := []Write{{Key: key("b"), Value: []byte("b")}, {Key: key("c"), Value: []byte("c")}, {Key: key("d"), Value: []byte("d")}}
	for h, v := range []string{"A", "B", "A", "C"} {
		mustCommit(t, s, uint64(h+1), append([]Write{{Key: key("a"), Value: []byte(v)}}, others...))
	}
	auditClean(t, s)
	if err := s.d.Delete(ctx, histKey(types.KeyPath(key("a")), 2)); err != nil {
		t.Fatal(err)
	}
	v1, err := s.View(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Get(ctx, key("a")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get at 1 without its history: %v, want ErrCorrupt", err)
	}
	rep, err := s.Audit(ctx)
	if err != nil || len(rep.Missing) != 1 {
		t.Fatalf("lost history of version 2: %+v %v, want one missing leaf", rep, err)
	}
}
