package state

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// replaceKey is key i of module m%3.
func replaceKey(i int) types.StateKey {
	return types.StateKey{Module: types.Address{byte(i % 3)}, Key: []byte(fmt.Sprintf("k%03d", i))}
}

// replaceWrites is version h of a run: keys h*10..h*10+39 get values of h,
// and every third of the keys written two versions ago is deleted, so a
// version both overwrites and deletes what the one before held.
func replaceWrites(run string, h uint64) []Write {
	var ws []Write
	seen := map[int]bool{}
	for i := int(h) * 10; i < int(h)*10+40; i++ {
		ws = append(ws, Write{Key: replaceKey(i), Value: []byte(fmt.Sprintf("%s-%d-%d", run, h, i))})
		seen[i] = true
	}
	if h > 2 {
		for i := int(h-2) * 10; i < int(h-2)*10+10; i += 3 {
			if !seen[i] {
				ws = append(ws, Write{Key: replaceKey(i)})
			}
		}
	}
	return ws
}

// commitRun commits versions 1..to of run into s and returns the root of to.
func commitRun(t *testing.T, s *Store, run string, from, to uint64) types.Root {
	t.Helper()
	var root types.Root
	for h := from; h <= to; h++ {
		var err error
		if root, err = s.Commit(context.Background(), h, replaceWrites(run, h)); err != nil {
			t.Fatalf("%s: commit %d: %v", run, h, err)
		}
	}
	return root
}

// exportAt returns the manifest and chunks of version h of s.
func exportAt(t *testing.T, s *Store, h uint64) (*Manifest, [][]byte) {
	t.Helper()
	var chunks [][]byte
	m, err := s.ExportSnapshot(context.Background(), h, 16, func(_ int, c []byte) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, chunks
}

// stageAll stages every chunk of m in s's datastore.
func stageAll(t *testing.T, s *Store, m *Manifest, chunks [][]byte) *Importer {
	t.Helper()
	im, err := NewImporter(context.Background(), s.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks {
		if _, err := im.Add(context.Background(), c); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	return im
}

// sameLatest fails unless s's latest state holds exactly the values of
// ref's latest state (both flat indexes and reads through the tree).
func sameLatest(t *testing.T, s, ref *Store) {
	t.Helper()
	ctx := context.Background()
	want := map[string][]byte{}
	if err := ref.iterateIndex(ctx, func(k types.StateKey, v []byte) error {
		want[modelKey(k)] = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := 0
	if err := s.iterateIndex(ctx, func(k types.StateKey, v []byte) error {
		got++
		if w, ok := want[modelKey(k)]; !ok || string(w) != string(v) {
			return fmt.Errorf("key %s: %q, reference %q (held %v)", k, v, w, ok)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Fatalf("%d keys, reference %d", got, len(want))
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("audit: leaked=%d missing=%d index mismatches=%d", len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
	}
}

// TestReplace: a store at version 3 of one run is replaced by the snapshot
// of version 9 of another (overlapping keys, other values, keys only the
// old state holds): it then holds exactly the snapshot's state under its
// root, audits clean, refuses the versions below, prunes what they used,
// and the next commit gives the reference's root.
func TestReplace(t *testing.T) {
	ctx := context.Background()
	ref := OpenOnFSStore(t, vfs.NewMem(), Options{})
	want := commitRun(t, ref, "ref", 1, 9)
	m, chunks := exportAt(t, ref, 9)

	s := OpenOnFSStore(t, vfs.NewMem(), Options{KeepVersions: 2})
	commitRun(t, s, "old", 1, 3)
	im, err := NewImporter(ctx, s.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Replace(ctx, s); !errors.Is(err, ErrSnapshotIncomplete) {
		t.Fatalf("replace with no chunk staged: %v", err)
	}
	im = stageAll(t, s, m, chunks)
	v, err := s.View(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Replace(ctx, s); !errors.Is(err, ErrReplaceBusy) {
		t.Fatalf("replace with a view of version 2 open: %v", err)
	}
	v.Close()
	root, err := im.Replace(ctx, s)
	if err != nil || root != want {
		t.Fatalf("replace: root %s err %v, want %s", root, err, want)
	}
	if h, r := s.Latest(); h != 9 || r != want {
		t.Fatalf("latest %d %s after the replace", h, r)
	}
	sameLatest(t, s, ref)
	if _, err := s.View(ctx, 3); !errors.Is(err, ErrPruned) {
		t.Fatalf("view of the old latest version: %v", err)
	}
	// Again (a crash before the staging area was cleared): nothing to do.
	if _, err := stageAll(t, s, m, chunks).Replace(ctx, s); err != nil {
		t.Fatalf("second replace of the same snapshot: %v", err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	sameLatest(t, s, ref)
	for _, st := range []*Store{ref, s} {
		commitRun(t, st, "next", 10, 11)
	}
	_, a := s.Latest()
	if _, b := ref.Latest(); a != b {
		t.Fatal("the replaced store and the reference differ after two more commits")
	}
	sameLatest(t, s, ref)
}

// TestReplaceErrors: a snapshot at or below the latest version and a store
// without atomic batches are refused, and nothing changes.
func TestReplaceErrors(t *testing.T) {
	ctx := context.Background()
	ref := OpenOnFSStore(t, vfs.NewMem(), Options{})
	commitRun(t, ref, "ref", 1, 3)
	m, chunks := exportAt(t, ref, 3)

	s := OpenOnFSStore(t, vfs.NewMem(), Options{})
	root := commitRun(t, s, "old", 1, 4)
	if _, err := stageAll(t, s, m, chunks).Replace(ctx, s); !errors.Is(err, ErrHeight) {
		t.Fatalf("snapshot of 3 into a store at 4: %v", err)
	}
	if h, r := s.Latest(); h != 4 || r != root {
		t.Fatalf("refused replace changed the store: %d %s", h, r)
	}

	// A staged chunk corrupted after its check makes the replaced root
	// differ: nothing is written and the staging area is cleared.
	s2 := OpenOnFSStore(t, vfs.NewMem(), Options{})
	root2 := commitRun(t, s2, "old", 1, 1)
	m5, chunks5 := exportAt(t, ref, 3)
	im := stageAll(t, s2, m5, chunks5)
	var ch Chunk
	if err := types.Decode(chunks5[0], &ch); err != nil {
		t.Fatal(err)
	}
	ch.Leaves[0].Value = []byte("flipped")
	if err := s2.Datastore().Put(ctx, snapStageChunkKey(0), types.MustEncode(&ch)); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Replace(ctx, s2); !errors.Is(err, ErrSnapshotRoot) {
		t.Fatalf("replace over a corrupted flat index: %v", err)
	}
	if h, r := s2.Latest(); h != 1 || r != root2 {
		t.Fatalf("failed replace changed the store: %d %s", h, r)
	}
	if im, err := NewImporter(ctx, s2.Datastore(), m5); err != nil || len(im.Missing()) != len(chunks5) {
		t.Fatalf("staging area after a failed replace: %v", err)
	}

	mem, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	commitRun(t, mem, "old", 1, 1)
	if _, err := stageAll(t, mem, m, chunks).Replace(ctx, mem); !errors.Is(err, ErrReplaceBackend) {
		t.Fatalf("replace on a store without atomic batches: %v", err)
	}
}

// TestReplaceCrash simulates a power loss at points spread over a replace
// (staging, the switch, clearing the staging area): the reopened store is
// at the old version with its root or at the snapshot's with the
// manifest's root, audits clean, and a new importer of the same manifest
// finishes the replace.
func TestReplaceCrash(t *testing.T) {
	ctx := context.Background()
	ref := OpenOnFSStore(t, vfs.NewMem(), Options{})
	want := commitRun(t, ref, "ref", 1, 9)
	m, chunks := exportAt(t, ref, 9)

	var before int64
	var oldRoot types.Root
	run := func(fs vfs.FS) {
		s := OpenOnFSStore(t, fs, Options{})
		oldRoot = commitRun(t, s, "old", 1, 3)
		if c, ok := fs.(*CrashPointFS); ok && before == 0 {
			before = c.Ops()
		}
		if _, err := stageAll(t, s, m, chunks).Replace(ctx, s); err != nil {
			t.Fatalf("replace: %v", err)
		}
	}
	dry := NewCrashPointFS(vfs.NewCrashableMem(), 0, vfs.CrashCloneCfg{})
	run(dry)
	total := dry.Ops()
	points := 12
	if RaceEnabled {
		points = 4
	}
	switched, hit := 0, 0
	for p := 0; p < points; p++ {
		target := before + 1 + int64(p)*(total-before)/int64(points)
		fs := NewCrashPointFS(vfs.NewCrashableMem(), target, vfs.CrashCloneCfg{})
		run(fs)
		clone := fs.Clone()
		if clone == nil {
			continue
		}
		hit++
		s := OpenOnFSStore(t, clone, Options{})
		h, root := s.Latest()
		switch {
		case h == 3 && root == oldRoot:
		case h == 9 && root == want:
			switched++
		default:
			t.Fatalf("point %d (op %d of %d): reopened at %d %s", p, target, total, h, root)
		}
		if got, err := stageAll(t, s, m, chunks).Replace(ctx, s); err != nil || got != want {
			t.Fatalf("point %d: replace after the crash: %s %v", p, got, err)
		}
		sameLatest(t, s, ref)
	}
	if hit == 0 {
		t.Fatal("no crash point was reached: the test covers nothing")
	}
	t.Logf("%d crash points over ops %d..%d: %d reopened after the switch", hit, before, total, switched)
}
