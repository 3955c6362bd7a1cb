package state

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestYoungGCKeepsRetainedVersions commits and prunes on pebble long
// enough for many GC steps: every retained version reads as the model says
// after each Prune, the audit finds every node of every retained version
// and no leak (a dead record born at or below the watermark would be one),
// and the dead records born above the watermark were left to the steps,
// not point-deleted. With a one-byte node cache the walk and the reads go
// to pebble; with the default one the walk re-encodes cached nodes.
func TestYoungGCKeepsRetainedVersions(t *testing.T) {
	for _, cache := range []int{1, 0} {
		ctx := context.Background()
		dir := filepath.Join(t.TempDir(), "db")
		opts := Options{KeepVersions: 3, PruneChunk: 7, CacheBytes: cache, gc: gcPolicy{every: 3, liveFrac: 0.25, maxLag: 4}}
		s, err := OpenPebble(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(11, 1))
		m := newModel()
		steps, young, deleted, kept := 0, 0, 0, 0
		maxLag := uint64(0)
		for h := uint64(1); h <= 80; h++ {
			ws := randWrites(r, 30, 60)
			m.apply(ws)
			m.roots = append(m.roots, mustCommit(t, s, h, ws))
			st, err := s.Prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			young += st.Young
			deleted += st.Deleted
			kept += st.GC.Kept
			if st.GC.To > 0 {
				steps++
			}
			// A step is considered every 3 versions and ends at most
			// 4 borns below min.
			if lag := s.GCLag(); lag > 4+3 {
				t.Fatalf("GC lag %d at min %d", lag, st.Min)
			} else {
				maxLag = max(maxLag, lag)
			}
			for v := st.Min; v <= h; v++ {
				view, err := s.View(ctx, v)
				if err != nil {
					t.Fatal(err)
				}
				checkView(t, r, view, m.versions[v], m.roots[v])
				view.Close()
			}
			if h%10 == 0 {
				auditClean(t, s)
			}
		}
		if steps < 10 || young == 0 || kept == 0 || maxLag == 0 {
			t.Fatalf("cache %d: %d GC steps, %d stale entries left to them, %d records kept: want all positive (10+ steps)", cache, steps, young, kept)
		}
		t.Logf("cache %d: %d GC steps, %d stale entries left to them, %d point-deleted, %d records kept, watermark %d",
			cache, steps, young, deleted, kept, s.gcDone.Load())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopened: the watermark is durable and the versions still read.
		s2, err := OpenPebble(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if s2.gcDone.Load() == 0 {
			t.Fatal("watermark lost on reopen")
		}
		for v := s2.MinVersion(); v <= 80; v++ {
			view, err := s2.View(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			checkView(t, r, view, m.versions[v], m.roots[v])
			view.Close()
		}
		auditClean(t, s2)
		s2.Close()
	}
}

// TestYoungGCOnlyOnPebble: an in-memory store point-deletes every dead
// record (no watermark, no step), and its audit stays exact.
func TestYoungGCOnlyOnPebble(t *testing.T) {
	ctx := context.Background()
	s, err := OpenMemory(Options{KeepVersions: 3, gc: gcPolicy{every: 1, liveFrac: 1, maxLag: 1}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(12, 1))
	for h := uint64(1); h <= 30; h++ {
		mustCommit(t, s, h, randWrites(r, 30, 60))
		st, err := s.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Young != 0 || st.GC != (GCStats{}) || s.GCLag() != 0 {
			t.Fatalf("in-memory store: %+v", st)
		}
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.GCPending != 0 {
		t.Fatalf("audit %+v", rep)
	}
}

// TestAuditYoungGCPending: dead records born above the watermark and below
// the minimum are pending, not leaked, until a GC step excises them; a
// record born above the latest version is still a leak, and one the step's
// range holds is gone after it.
func TestAuditYoungGCPending(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	s, err := OpenPebble(dir, Options{KeepVersions: 2, gc: gcPolicy{every: 1000, liveFrac: 0.25, maxLag: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(13, 1))
	for h := uint64(1); h <= 20; h++ {
		mustCommit(t, s, h, randWrites(r, 30, 60))
		if _, err := s.Prune(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A stray record in the young range (dead, like the pruner's) and one
	// above the latest version.
	stray := types.Hash{7}
	for _, born := range []uint64{5, 99} {
		if err := s.d.Put(ctx, nodeKey(born, stray), []byte{tagNode, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.GCPending == 0 || len(rep.Leaked) != 1 || rep.Leaked[0] != stray || len(rep.Missing) != 0 {
		t.Fatalf("before the step: %d pending, %d leaked, %d missing", rep.GCPending, len(rep.Leaked), len(rep.Missing))
	}
	if err := s.d.Delete(ctx, nodeKey(99, stray)); err != nil {
		t.Fatal(err)
	}
	pending := rep.GCPending
	s.opts.gc = gcPolicy{every: 1, liveFrac: 0.25, maxLag: 1}
	mustCommit(t, s, 21, randWrites(r, 30, 60))
	st, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.GC.From != 0 || st.GC.To < 10 {
		t.Fatalf("GC step %+v, want one from 0 to 10 or more", st.GC)
	}
	if _, err := s.d.Get(ctx, nodeKey(5, stray)); err == nil {
		t.Fatal("the stray record in the excised range is still there")
	}
	rep, err = s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.GCPending >= pending {
		t.Fatalf("after the step: %d pending (before %d), %d leaked, %d missing", rep.GCPending, pending, len(rep.Leaked), len(rep.Missing))
	}
}

// TestYoungGCConcurrentReaders commits, prunes and runs a GC step after
// nearly every block while readers open views at recent heights and read
// through a one-byte node cache, so from pebble while it excises and
// ingests: every read succeeds or View fails with ErrPruned, never a
// missing node. Run under -race.
func TestYoungGCConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	s, err := OpenPebble(dir, Options{KeepVersions: 2, CacheBytes: 1, PruneChunk: 3, gc: gcPolicy{every: 1, liveFrac: 0.5, maxLag: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const heights = 60
	done := make(chan struct{})
	var wg sync.WaitGroup
	reads := make([]int, 3)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 4))
			for {
				select {
				case <-done:
					return
				default:
				}
				latest, _ := s.Latest()
				h := latest - min(latest, uint64(r.IntN(3)))
				v, err := s.View(ctx, h)
				if errors.Is(err, ErrPruned) {
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
				v.Close()
				if err != nil {
					t.Errorf("view %d: %v", h, err)
					return
				}
				reads[g]++
			}
		}()
	}
	r := rand.New(rand.NewPCG(9, 9))
	steps := 0
	for h := uint64(1); h <= heights; h++ {
		mustCommit(t, s, h, randWrites(r, 20, 40))
		st, err := s.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.GC.To > 0 {
			steps++
		}
	}
	close(done)
	wg.Wait()
	if steps < heights/3 {
		t.Fatalf("%d GC steps", steps)
	}
	t.Logf("%d GC steps, reads %v", steps, reads)
	auditClean(t, s)
}
