package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
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

// TestSnapshotInstallFrom installs with every third chunk staged and the
// others read from a source: the staged ones must not be read, the others
// read once each, and the store must end at the snapshot with the source's
// reads and proofs. Before that, sources that fail, serve a chunk that does
// not verify, or serve another chunk than the one asked for must stop the
// install with the sentinel of the failed check and leave the store at
// version 0, from where the good source finishes the import.
func TestSnapshotInstallFrom(t *testing.T) {
	for _, mode := range installModes {
		t.Run(mode.name, func(t *testing.T) { testSnapshotInstallFrom(t, mode.ingest) })
	}
}

func testSnapshotInstallFrom(t *testing.T, ingest bool) {
	smallInstallBatches(t, 4<<10) // bad chunks arrive after durable batches
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := snapWorkload(t, src, 11, 6, 150)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 20)
	bad := len(chunks) - 2
	var c Chunk
	if err := types.Decode(chunks[bad], &c); err != nil {
		t.Fatal(err)
	}
	c.Leaves[0].Value = append([]byte{0}, c.Leaves[0].Value...)
	tampered := types.MustEncode(&c)
	errSource := errors.New("peer went away")
	sources := []struct {
		name string
		read func(i int) ([]byte, error)
		want error
	}{
		{"failing source", func(i int) ([]byte, error) {
			if i == bad {
				return nil, errSource
			}
			return chunks[i], nil
		}, errSource},
		{"tampered chunk", func(i int) ([]byte, error) {
			if i == bad {
				return tampered, nil
			}
			return chunks[i], nil
		}, ErrChunkProof},
		{"another chunk", func(i int) ([]byte, error) {
			if i == bad {
				return chunks[i+1], nil
			}
			return chunks[i], nil
		}, ErrChunkMalformed},
	}
	dst := openSnapStore(t, vfs.NewMem(), ingest)
	for _, sc := range sources {
		im, err := NewImporter(ctx, dst.Datastore(), m)
		if err != nil {
			t.Fatal(err)
		}
		err = im.InstallFrom(ctx, dst, func(_ context.Context, i int) ([]byte, error) { return sc.read(i) })
		if !errors.Is(err, sc.want) {
			t.Fatalf("%s: got %v, want %v", sc.name, err, sc.want)
		}
		if gh, gr := dst.Latest(); gh != 0 || gr != types.EmptyRoot {
			t.Fatalf("%s: a failed install moved the store to (%d, %s)", sc.name, gh, gr)
		}
	}
	if ok, err := dst.Datastore().Has(ctx, snapProgressKey); err != nil || !ok {
		t.Fatalf("no install progress after the failed installs (%v): the bad chunk came before the first batch", err)
	}

	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(chunks); i += 3 {
		if _, err := im.Add(ctx, chunks[i]); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	reads := make([]int, len(chunks))
	err = im.InstallFrom(ctx, dst, func(_ context.Context, i int) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		reads[i]++
		return chunks[i], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	skipped := im.Skipped()
	if skipped == 0 || skipped > bad {
		t.Fatalf("the install skipped %d chunks, want some before the bad chunk %d", skipped, bad)
	}
	for i, n := range reads {
		// The install resumes after the last durable batch of the failed
		// ones (Skipped), so chunks before it are not read again.
		if i%3 == 0 && n != 0 || n > 1 || i >= bad && i%3 != 0 && n != 1 ||
			i < skipped && n != 0 || i >= skipped && i%3 != 0 && n != 1 {
			t.Fatalf("chunk %d read %d times (staged: %v, %d skipped)", i, n, i%3 == 0, skipped)
		}
	}
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported store at (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	sameReads(t, src, dst, h, model)
	if rep, err := dst.Audit(ctx); err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
	if left := dump(t, dst.Datastore(), "/kairos/snapimport"); len(left) != 0 {
		t.Fatalf("the install left %d staging entries behind", len(left))
	}
}

// TestSnapshotInstallFromChecked installs from a source that checked each
// chunk's hash (as a node fetching from peers does), so the install hashes
// no chunk again. CheckChunk must refuse other bytes and indexes it does
// not list; the install must refuse a chunk checked as another index or
// against another manifest's listing (ErrChunkHash), and a chunk whose
// bytes match a forged listing must still fail its range proof against the
// root, with the store left at version 0. The good source then finishes
// the import.
func TestSnapshotInstallFromChecked(t *testing.T) {
	for _, mode := range installModes {
		t.Run(mode.name, func(t *testing.T) { testSnapshotInstallFromChecked(t, mode.ingest) })
	}
}

func testSnapshotInstallFromChecked(t *testing.T, ingest bool) {
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := snapWorkload(t, src, 17, 4, 120)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 20)
	bad := len(chunks) / 2

	flipped := bytes.Clone(chunks[bad])
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name string
		i    int
		b    []byte
		want error
	}{
		{"flipped byte", bad, flipped, ErrChunkHash},
		{"another chunk's bytes", bad, chunks[bad+1], ErrChunkHash},
		{"index past the listing", len(chunks), chunks[bad], ErrChunkUnknown},
		{"negative index", -1, chunks[bad], ErrChunkUnknown},
	} {
		if _, err := m.CheckChunk(tc.i, tc.b); !errors.Is(err, tc.want) {
			t.Fatalf("CheckChunk, %s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// A listing that names the hash of a tampered chunk: its bytes pass
	// CheckChunk, and only the range proof can refuse them.
	var c Chunk
	if err := types.Decode(chunks[bad], &c); err != nil {
		t.Fatal(err)
	}
	c.Leaves[0].Value = append([]byte{0}, c.Leaves[0].Value...)
	tampered := types.MustEncode(&c)
	forged := *m
	forged.Chunks = slices.Clone(m.Chunks)
	forged.Chunks[bad].Hash = sha256.Sum256(tampered)
	check := func(mf *Manifest, i int, b []byte) CheckedChunk {
		cc, err := mf.CheckChunk(i, b)
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	good := func(i int) CheckedChunk { return check(m, i, chunks[i]) }
	errNoPeer := errors.New("no peer has it")
	// A refused chunk fails with the refusal's sentinel alone: the install
	// is not merely incomplete, what the source delivered is wrong. Only a
	// source that delivers nothing makes it incomplete, with its reason.
	sources := []struct {
		name string
		read func(i int) (CheckedChunk, error)
		want []error
		not  error
	}{
		{"checked as another index", func(i int) (CheckedChunk, error) {
			if i == bad {
				return good(i + 1), nil
			}
			return good(i), nil
		}, []error{ErrChunkHash}, ErrSnapshotIncomplete},
		{"checked against another listing", func(i int) (CheckedChunk, error) {
			if i == bad {
				return check(&forged, i, tampered), nil
			}
			return good(i), nil
		}, []error{ErrChunkHash}, ErrSnapshotIncomplete},
		{"source fails", func(i int) (CheckedChunk, error) {
			if i == bad {
				return CheckedChunk{}, errNoPeer
			}
			return good(i), nil
		}, []error{ErrSnapshotIncomplete, errNoPeer}, ErrChunkHash},
	}
	dst := openSnapStore(t, vfs.NewMem(), ingest)
	for _, sc := range sources {
		im, err := NewImporter(ctx, dst.Datastore(), m)
		if err != nil {
			t.Fatal(err)
		}
		err = im.InstallFromChecked(ctx, dst, func(_ context.Context, i int) (CheckedChunk, error) { return sc.read(i) })
		for _, want := range sc.want {
			if !errors.Is(err, want) {
				t.Fatalf("%s: got %v, want %v", sc.name, err, want)
			}
		}
		if errors.Is(err, sc.not) {
			t.Fatalf("%s: got %v, which is also %v", sc.name, err, sc.not)
		}
		if gh, gr := dst.Latest(); gh != 0 || gr != types.EmptyRoot {
			t.Fatalf("%s: a failed install moved the store to (%d, %s)", sc.name, gh, gr)
		}
	}
	// The forged listing's own importer: the hash matches, the proof fails.
	fdst := openSnapStore(t, vfs.NewMem(), ingest)
	fim, err := NewImporter(ctx, fdst.Datastore(), &forged)
	if err != nil {
		t.Fatal(err)
	}
	err = fim.InstallFromChecked(ctx, fdst, func(_ context.Context, i int) (CheckedChunk, error) {
		if i == bad {
			return check(&forged, i, tampered), nil
		}
		return check(&forged, i, chunks[i]), nil
	})
	if !errors.Is(err, ErrChunkProof) {
		t.Fatalf("tampered chunk under a forged listing: %v, want ErrChunkProof", err)
	}
	if gh, gr := fdst.Latest(); gh != 0 || gr != types.EmptyRoot {
		t.Fatalf("a failed install moved the store to (%d, %s)", gh, gr)
	}

	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFromChecked(ctx, dst, func(_ context.Context, i int) (CheckedChunk, error) { return good(i), nil }); err != nil {
		t.Fatal(err)
	}
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported store at (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	sameReads(t, src, dst, h, model)
	if rep, err := dst.Audit(ctx); err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}
