package state

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// TestSnapshotExportWindows exports versions of a pebble store through the
// windowed value reads, with windows of a few chunks so that an export spans
// many, and through one read per leaf (the path of other backends): the
// manifests and every chunk must be byte-identical. A history record deleted
// from under the export of an older version must fail both with
// ErrCorrupt.
func TestSnapshotExportWindows(t *testing.T) {
	ctx := context.Background()
	s := OpenOnFSStore(t, vfs.NewMem(), Options{})
	defer s.Close()
	snapWorkload(t, s, 12, 6, 200)
	h, _ := s.Latest()
	pdb := s.pdb
	perLeaf := func(per int, height uint64) (*Manifest, [][]byte) {
		s.pdb = nil
		defer func() { s.pdb = pdb }()
		return export(t, s, height, per)
	}
	for _, window := range []int{1, 50, 1 << 20} {
		old := exportWindowLeaves
		exportWindowLeaves = window
		for _, per := range []int{7, 30} {
			for _, height := range []uint64{h, h - 3} {
				m, chunks := export(t, s, height, per)
				wantM, want := perLeaf(per, height)
				if !bytes.Equal(types.MustEncode(m), types.MustEncode(wantM)) || len(chunks) != len(want) {
					t.Fatalf("window %d, %d per chunk, height %d: manifests differ", window, per, height)
				}
				for i := range chunks {
					if !bytes.Equal(chunks[i], want[i]) {
						t.Fatalf("window %d, %d per chunk, height %d: chunk %d differs", window, per, height, i)
					}
				}
			}
		}
		exportWindowLeaves = old
	}

	// A history record lost from under version h-3 (a disk fault).
	h -= 3
	v, err := s.View(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := v.leafHashes(ctx)
	v.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !deleteSomeHistory(t, s, h, leaves) {
		t.Fatal("no leaf of the version was replaced since")
	}
	discard := func(int, []byte) error { return nil }
	if _, err := s.ExportSnapshot(ctx, h, 30, discard); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("windowed export without a history record: got %v, want ErrCorrupt", err)
	}
	s.pdb = nil
	_, err = s.ExportSnapshot(ctx, h, 30, discard)
	s.pdb = pdb
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("per-leaf export without a history record: got %v, want ErrCorrupt", err)
	}
}

// deleteSomeHistory deletes the history record of a leaf of version h
// (leaves) that a later version replaced, and reports whether it found one.
func deleteSomeHistory(t *testing.T, s *Store, h uint64, leaves []snapLeaf) bool {
	t.Helper()
	ctx := context.Background()
	latest, _ := s.Latest()
	for _, l := range leaves[len(leaves)/2:] {
		for d := h + 1; d <= latest; d++ {
			k := histKey(l.path, d)
			if ok, err := s.d.Has(ctx, k); err != nil {
				t.Fatal(err)
			} else if ok {
				if err := s.d.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
				return true
			}
		}
	}
	return false
}
