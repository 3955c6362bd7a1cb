package statebench

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

func TestKeysByPathIsAPermutationInKeyPathOrder(t *testing.T) {
	w := small()
	order := keysByPath(w)
	seen := make([]bool, w.Keys)
	var prev types.Hash
	for j, i := range order {
		if seen[i] {
			t.Fatalf("key %d appears twice", i)
		}
		seen[i] = true
		kp := types.KeyPath(w.Key(int(i)))
		if j > 0 && bytes.Compare(prev[:], kp[:]) >= 0 {
			t.Fatalf("keys %d and %d out of key-path order", j-1, j)
		}
		prev = kp
	}
	if len(order) != w.Keys {
		t.Fatalf("%d keys, want %d", len(order), w.Keys)
	}
}

// TestBigProofsOnSeededTree checks that the seeded proof tree answers like a
// committed one: bigProofs verifies every proof it measures, so it fails if
// a key of the workload is missing from the seeded tree or an absent key is
// present.
func TestBigProofsOnSeededTree(t *testing.T) {
	cfg := Config{Workload: small(), ProofKeys: 3000, ProofSamples: 50, Dir: t.TempDir(), Progress: io.Discard}
	p, note, err := bigProofs(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.presentBytes == 0 || p.absentBytes == 0 || note == "" {
		t.Fatalf("proof stats %+v, note %q", p, note)
	}
}

func TestMeasureSnapshotImportsTheRoot(t *testing.T) {
	ctx := context.Background()
	w := small()
	s, err := state.OpenPebble(filepath.Join(t.TempDir(), "src"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for h := uint64(1); h <= w.FillBlocks()+2; h++ {
		if _, err := s.Commit(ctx, h, w.Writes(h)); err != nil {
			t.Fatal(err)
		}
	}
	var st snapshotStats
	e, err := exportSnapshot(ctx, s, filepath.Join(t.TempDir(), "import"), &st)
	if err != nil {
		t.Fatal(err)
	}
	// As Run does: the source closed before the imports.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.imports(ctx, &st); err != nil {
		t.Fatal(err)
	}
	if st.chunks == 0 || st.bytes == 0 || st.stage.wall == 0 || st.install.wall == 0 || st.stream.wall == 0 || st.stream.rss == 0 {
		t.Fatalf("snapshot stats %+v", st)
	}
	// The stores the imports wrote are gone, the chunks are left to the
	// caller.
	for _, name := range []string{"staged", "streamed"} {
		if _, err := os.Stat(filepath.Join(e.dir, name)); !os.IsNotExist(err) {
			t.Fatalf("store %s left behind: %v", name, err)
		}
	}
}
