package state

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// stageBackends are the backends a staging test runs on: pebble (Add's
// one synced write) and the in-memory map (Put and Sync).
var stageBackends = []struct {
	name string
	open func(t *testing.T) *Store
}{
	{"pebble", func(t *testing.T) *Store { return OpenOnFSStore(t, vfs.NewMem(), Options{}) }},
	{"memory", func(t *testing.T) *Store {
		s, err := OpenMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// stageSnapshot returns a small snapshot to import: its manifest, chunks,
// height and root.
func stageSnapshot(t *testing.T) (*Manifest, [][]byte, uint64, types.Root) {
	t.Helper()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	snapWorkload(t, src, 13, 4, 200)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 50)
	if len(chunks) < 4 {
		t.Fatalf("%d chunks, want several", len(chunks))
	}
	return m, chunks, h, root
}

// TestSnapshotInstallDamagedStaging alters a staged chunk through the
// datastore after Add staged it. A record that no longer decodes as its
// chunk fails the install with ErrCorrupt (and ErrSnapshotIncomplete): the
// record is removed and counted missing, the store stays at version 0, and
// adding the chunk again and installing again finishes the import. A
// record that still decodes, with a value changed, is caught by the root
// check (the leaves are hashed again): ErrSnapshotRoot, and the import
// starts over. InstallFrom reads a damaged staged chunk from its source.
func TestSnapshotInstallDamagedStaging(t *testing.T) {
	smallInstallBatches(t, 4<<10)
	ctx := context.Background()
	m, chunks, h, root := stageSnapshot(t)
	const bad = 2
	valueAt := func(rec []byte) int { // offset of the first leaf's value
		c, err := decodeChunk(chunks[bad])
		if err != nil {
			t.Fatal(err)
		}
		off := bytes.Index(rec, c.Leaves[0].Value)
		if off < 0 {
			t.Fatal("value not found in the record")
		}
		return off
	}
	damages := []struct {
		name   string
		damage func(rec []byte) []byte
		want   error
	}{
		{"truncated", func(rec []byte) []byte { return rec[:len(rec)-1] }, ErrCorrupt},
		{"first byte", func(rec []byte) []byte { rec[0] = 1; return rec }, ErrCorrupt},
		{"other chunk", func([]byte) []byte { return slices.Clone(chunks[bad+1]) }, ErrCorrupt},
		{"value", func(rec []byte) []byte { rec[valueAt(rec)] ^= 1; return rec }, ErrSnapshotRoot},
	}
	for _, be := range stageBackends {
		for _, d := range damages {
			t.Run(be.name+"/"+d.name, func(t *testing.T) {
				s := be.open(t)
				im := stageAll(t, s, m, chunks)
				rec, err := s.Datastore().Get(ctx, snapStageChunkKey(bad))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Datastore().Put(ctx, snapStageChunkKey(bad), d.damage(slices.Clone(rec))); err != nil {
					t.Fatal(err)
				}
				err = im.Install(ctx, s)
				if !errors.Is(err, d.want) {
					t.Fatalf("install over a damaged record: %v, want %v", err, d.want)
				}
				if gh, gr := s.Latest(); gh != 0 || gr != types.EmptyRoot {
					t.Fatalf("a failed install moved the store to (%d, %s)", gh, gr)
				}
				if d.want == ErrCorrupt {
					if !errors.Is(err, ErrSnapshotIncomplete) {
						t.Fatalf("%v does not say the import is incomplete", err)
					}
					if got := im.Missing(); !slices.Equal(got, []int{bad}) {
						t.Fatalf("missing after the damaged record: %v, want [%d]", got, bad)
					}
					if ok, err := s.Datastore().Has(ctx, snapStageChunkKey(bad)); err != nil || ok {
						t.Fatalf("the damaged record is still staged (%v)", err)
					}
					// A restarted importer agrees, and the import goes on.
					if im, err = NewImporter(ctx, s.Datastore(), m); err != nil {
						t.Fatal(err)
					}
					if got := im.Missing(); !slices.Equal(got, []int{bad}) {
						t.Fatalf("a new importer misses %v, want [%d]", got, bad)
					}
					if _, err := im.Add(ctx, chunks[bad]); err != nil {
						t.Fatal(err)
					}
				} else {
					// The install started over: nothing is left, and a
					// fresh import succeeds.
					if left := dump(t, s.Datastore(), nsNode, nsKV, "/kairos/snapimport"); len(left) != 0 {
						t.Fatalf("a refused install left %d entries behind", len(left))
					}
					im = stageAll(t, s, m, chunks)
				}
				if err := im.Install(ctx, s); err != nil {
					t.Fatal(err)
				}
				if gh, gr := s.Latest(); gh != h || gr != root {
					t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
				}
				if rep, err := s.Audit(ctx); err != nil || !rep.Clean() {
					t.Fatalf("audit: %+v, %v", rep, err)
				}
			})
		}
	}

	// InstallFrom reads a chunk whose staged record is damaged from its
	// source.
	s := OpenOnFSStore(t, vfs.NewMem(), Options{})
	im := stageAll(t, s, m, chunks)
	if err := s.Datastore().Put(ctx, snapStageChunkKey(bad), []byte{0x86, 0}); err != nil {
		t.Fatal(err)
	}
	var read []int
	err := im.InstallFrom(ctx, s, func(_ context.Context, i int) ([]byte, error) {
		read = append(read, i)
		return chunks[i], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(read, []int{bad}) {
		t.Fatalf("InstallFrom read %v from its source, want [%d]", read, bad)
	}
	if gh, gr := s.Latest(); gh != h || gr != root {
		t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
}
