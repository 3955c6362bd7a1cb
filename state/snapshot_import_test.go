package state

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSnapshotStagingSurvivesCrash stages half the chunks, loses power,
// and checks that a restarted importer keeps exactly the staged half, skips
// them when they arrive again, and completes in a different order.
func TestSnapshotStagingSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	leaves := randomLeaves(21, 300)
	m, chunks := build(t, leaves, 16)
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(chunks))

	fs := vfs.NewCrashableMem()
	d := OpenOnFS(t, fs, true)
	im, err := NewImporter(ctx, d, m)
	if err != nil {
		t.Fatal(err)
	}
	half := order[:len(order)/2]
	for _, i := range half {
		if ok, err := im.Add(ctx, chunks[i]); err != nil || !ok {
			t.Fatalf("chunk %d: staged=%v err=%v", i, ok, err)
		}
	}
	if _, err := stagedLeaves(ctx, im); !errors.Is(err, ErrSnapshotIncomplete) {
		t.Fatalf("reading an incomplete import: got %v", err)
	}

	fs = Crash(fs)
	d = OpenOnFS(t, fs, true)
	defer d.Close()
	im, err = NewImporter(ctx, d, m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(im.Missing()), len(chunks)-len(half); got != want {
		t.Fatalf("after the crash %d chunks missing, want %d", got, want)
	}
	for _, i := range half {
		if ok, err := im.Add(ctx, chunks[i]); err != nil || ok {
			t.Fatalf("re-sent chunk %d: staged=%v err=%v, want skipped", i, ok, err)
		}
	}
	for j := len(order) - 1; j >= len(half); j-- {
		if ok, err := im.Add(ctx, chunks[order[j]]); err != nil || !ok {
			t.Fatalf("chunk %d: staged=%v err=%v", order[j], ok, err)
		}
	}
	if !im.Done() {
		t.Fatalf("missing %v", im.Missing())
	}
	got, err := stagedLeaves(ctx, im)
	if err != nil {
		t.Fatal(err)
	}
	if refRoot(leafMap(got)) != m.Root || len(got) != len(leaves) {
		t.Fatalf("staged leaves (%d) do not rebuild the manifest root", len(got))
	}
}

// stagedLeaves reads every staged leaf back, in key-path order.
func stagedLeaves(ctx context.Context, im *Importer) ([]SnapshotLeaf, error) {
	var out []SnapshotLeaf
	for i := range im.m.Chunks {
		ls, err := im.prepare(ctx, i)
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			out = append(out, SnapshotLeaf{Key: l.key, Value: l.value})
		}
	}
	return out, nil
}

// TestSnapshotStagingOtherManifest checks that staging of another snapshot
// is discarded rather than mixed in.
func TestSnapshotStagingOtherManifest(t *testing.T) {
	ctx := context.Background()
	m1, c1 := build(t, randomLeaves(1, 50), 10)
	m2, _ := build(t, randomLeaves(2, 50), 10)
	d := OpenOnFS(t, vfs.NewMem(), true)
	defer d.Close()
	im, err := NewImporter(ctx, d, m1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Add(ctx, c1[0]); err != nil {
		t.Fatal(err)
	}
	im, err = NewImporter(ctx, d, m2)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Missing()) != len(m2.Chunks) {
		t.Fatalf("a new manifest started with %d of %d chunks missing", len(im.Missing()), len(m2.Chunks))
	}
	if _, err := im.Add(ctx, c1[0]); !errors.Is(err, ErrChunkProof) && !errors.Is(err, ErrChunkBounds) && !errors.Is(err, ErrSnapshotLeafCount) {
		t.Fatalf("a chunk of another snapshot: got %v", err)
	}
}

// TestSnapshotConcurrentAdd adds every chunk twice from several goroutines
// at once: each chunk must be reported staged exactly once, and the import
// must complete to the manifest root.
func TestSnapshotConcurrentAdd(t *testing.T) {
	ctx := context.Background()
	leaves := randomLeaves(31, 400)
	m, chunks := build(t, leaves, 16)
	s := OpenOnFSStore(t, vfs.NewMem(), Options{})
	im, err := NewImporter(ctx, s.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 4
	counts := make([]atomic.Int32, len(chunks))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range rand.New(rand.NewPCG(uint64(w), 7)).Perm(len(chunks)) {
				staged, err := im.Add(ctx, chunks[i])
				if err != nil {
					errs <- err
					return
				}
				if staged {
					counts[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range counts {
		if n := counts[i].Load(); n != 1 {
			t.Fatalf("chunk %d reported staged %d times", i, n)
		}
	}
	if !im.Done() {
		t.Fatalf("missing %v", im.Missing())
	}
	if err := im.Install(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, r := s.Latest(); r != m.Root {
		t.Fatalf("installed root %s, manifest %s", r, m.Root)
	}
}
