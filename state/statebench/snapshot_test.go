package statebench

import (
	"bytes"
	"context"
	"io"
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
	st, err := measureSnapshot(ctx, s, filepath.Join(t.TempDir(), "import"))
	if err != nil {
		t.Fatal(err)
	}
	if st.chunks == 0 || st.bytes == 0 || st.stream == 0 {
		t.Fatalf("snapshot stats %+v", st)
	}
}
