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
// manifests and every chunk must be byte-identical. A value record deleted
// from under the export must fail both with ErrCorrupt.
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

	// A value record lost from under the version (a disk fault).
	v, err := s.View(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := v.leafHashes(ctx)
	v.Close()
	if err != nil {
		t.Fatal(err)
	}
	l := leaves[len(leaves)/2]
	if err := s.pdb.Delete(keyBytes(nodeKey(l.born, l.hash)), nil); err != nil {
		t.Fatal(err)
	}
	discard := func(int, []byte) error { return nil }
	if _, err := s.ExportSnapshot(ctx, h, 30, discard); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("windowed export without a value record: got %v, want ErrCorrupt", err)
	}
	s.pdb = nil
	_, err = s.ExportSnapshot(ctx, h, 30, discard)
	s.pdb = pdb
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("per-leaf export without a value record: got %v, want ErrCorrupt", err)
	}
}
