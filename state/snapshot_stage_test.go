package state

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
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
// height and root, and the store it was exported from.
func stageSnapshot(t *testing.T) (*Manifest, [][]byte, uint64, types.Root, *Store) {
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
	return m, chunks, h, root, src
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
	m, chunks, h, root, _ := stageSnapshot(t)
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

// TestSnapshotInstallAsAdded starts the install before any chunk is
// staged and adds the chunks from several goroutines in a shuffled order,
// one of them twice: the install builds each chunk once it and those
// before it are staged and ends with the snapshot's root, the same records
// as Install after staging, and the staging area cleared. An install
// whose context ends while a chunk is still missing fails with
// ErrSnapshotIncomplete, leaves the store at version 0, and Install goes
// on once the chunk is added.
func TestSnapshotInstallAsAdded(t *testing.T) {
	smallInstallBatches(t, 4<<10)
	ctx := context.Background()
	m, chunks, h, root, _ := stageSnapshot(t)
	for _, mode := range installModes {
		t.Run(mode.name, func(t *testing.T) {
			ref := openSnapStore(t, vfs.NewMem(), mode.ingest)
			if err := stageAll(t, ref, m, chunks).Install(ctx, ref); err != nil {
				t.Fatal(err)
			}
			s := openSnapStore(t, vfs.NewMem(), mode.ingest)
			im, err := NewImporter(ctx, s.Datastore(), m)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- im.InstallAsAdded(ctx, s) }()
			order := rand.New(rand.NewPCG(1, 2)).Perm(len(chunks))
			order = append(order, order[0])
			var wg sync.WaitGroup
			next := make(chan int)
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						if _, err := im.Add(ctx, chunks[i]); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			for _, i := range order {
				next <- i
			}
			close(next)
			wg.Wait()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if gh, gr := s.Latest(); gh != h || gr != root {
				t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
			}
			want, got := dump(t, ref.Datastore(), nsNode, nsKV), dump(t, s.Datastore(), nsNode, nsKV)
			if len(got) != len(want) {
				t.Fatalf("%d records, Install after staging wrote %d", len(got), len(want))
			}
			for k, v := range want {
				if !slices.Equal(got[k], v) {
					t.Fatalf("record %s differs from Install's", k)
				}
			}
			if left := dump(t, s.Datastore(), "/kairos/snapimport"); len(left) != 0 {
				t.Fatalf("the staging area kept %d entries", len(left))
			}
		})
	}

	// A chunk that never arrives: the install waits until its context ends.
	s := OpenOnFSStore(t, vfs.NewMem(), Options{})
	im, err := NewImporter(ctx, s.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- im.InstallAsAdded(cctx, s) }()
	last := len(chunks) - 1
	for _, c := range chunks[:last] {
		if _, err := im.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrSnapshotIncomplete) || !errors.Is(err, context.Canceled) {
		t.Fatalf("install without its last chunk: %v", err)
	}
	if gh, gr := s.Latest(); gh != 0 || gr != types.EmptyRoot {
		t.Fatalf("an unfinished install moved the store to (%d, %s)", gh, gr)
	}
	if _, err := im.Add(ctx, chunks[last]); err != nil {
		t.Fatal(err)
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
}
