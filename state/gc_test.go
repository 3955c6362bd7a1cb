package state

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestYoungGCKeepsRetainedVersions commits and prunes on pebble long
// enough for several GC steps: every retained version reads as the model
// says after each Prune, the audit is clean (a dead record born at or
// below the watermark would be a leak), and the young records were not
// point-deleted.
func TestYoungGCKeepsRetainedVersions(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	s, err := OpenPebble(dir, Options{KeepVersions: 3, PruneChunk: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(11, 1))
	m := newModel()
	steps, young, deleted := 0, 0, 0
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
		if st.GC.To > 0 {
			steps++
		}
		for v := st.Min; v <= h; v++ {
			view, err := s.View(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			checkView(t, r, view, m.versions[v], m.roots[v])
			view.Close()
		}
	}
	if steps < 3 {
		t.Fatalf("%d GC steps, want several", steps)
	}
	t.Logf("%d GC steps, %d stale entries left to them, %d point-deleted, watermark %d", steps, young, deleted, s.gcDone)
	if young == 0 {
		t.Fatal("no stale entry was left to the GC")
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("audit: %d leaked, %d missing, %d index mismatches", len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
	}
	t.Logf("GC pending %d", rep.GCPending)
}
