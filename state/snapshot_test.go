package state

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// snapWorkload commits blocks of random writes (inserts, updates, deletes)
// and returns the model of the last version.
func snapWorkload(t testing.TB, s *Store, seed uint64, blocks, perBlock int) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 5))
	model := map[string][]byte{}
	latest, _ := s.Latest()
	for b := 1; b <= blocks; b++ {
		seen := map[string]bool{}
		var ws []Write
		for len(ws) < perBlock {
			k := types.StateKey{Module: types.Address{byte(r.IntN(4))}, Key: []byte{byte(r.IntN(64)), byte(r.IntN(64))}}
			mk := modelKey(k)
			if seen[mk] {
				continue
			}
			seen[mk] = true
			var v []byte
			if r.IntN(6) != 0 {
				v = make([]byte, 1+r.IntN(60))
				for i := range v {
					v[i] = byte(r.Uint32())
				}
				model[mk] = v
			} else {
				delete(model, mk)
			}
			ws = append(ws, Write{Key: k, Value: v})
		}
		if _, err := s.Commit(ctx, latest+uint64(b), ws); err != nil {
			t.Fatal(err)
		}
	}
	return model
}

// export returns the chunks of version h of s.
func export(t testing.TB, s *Store, h uint64, per int) (*Manifest, [][]byte) {
	t.Helper()
	var chunks [][]byte
	m, err := s.ExportSnapshot(context.Background(), h, per, func(i int, b []byte) error {
		chunks = append(chunks, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, chunks
}

// importAll imports the snapshot m, chunks into dst and installs it.
func importAll(t testing.TB, dst *Store, m *Manifest, chunks [][]byte) {
	t.Helper()
	ctx := context.Background()
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if _, err := im.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Install(ctx, dst); err != nil {
		t.Fatal(err)
	}
}

// sameReads checks that b answers every read of version h like a: Get of
// every model key and of absent keys, and byte-identical proofs that verify
// against the root alone.
func sameReads(t *testing.T, a, b *Store, h uint64, model map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	keys := []types.StateKey{{Key: []byte("absent")}, {Module: types.Address{9}, Key: []byte{1}}}
	for mk := range model {
		keys = append(keys, splitKey(mk))
	}
	_, root := b.Latest()
	for _, k := range keys {
		want := model[modelKey(k)]
		got, err := b.Get(ctx, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get %s = %x, %v; want %x", k, got, err, want)
		}
		pa, err := a.Prove(ctx, h, k)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := b.Prove(ctx, h, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(types.MustEncode(pa), types.MustEncode(pb)) {
			t.Fatalf("proofs of %s differ between the source and the imported store", k)
		}
		if err := types.Verify(root, pb); err != nil {
			t.Fatalf("proof of %s does not verify: %v", k, err)
		}
	}
}

func TestSnapshotExportImport(t *testing.T) {
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := snapWorkload(t, src, 1, 12, 150)
	h, root := src.Latest()
	pers := []int{1, 7, 100, SnapshotChunkLeavesDefault}
	if RaceEnabled {
		pers = []int{1, 100}
	}
	for _, per := range pers {
		m, chunks := export(t, src, h, per)
		if m.Root != root || m.Height != h || m.Leaves != uint64(len(model)) {
			t.Fatalf("manifest (%d, %s, %d leaves), store (%d, %s, %d keys)", m.Height, m.Root, m.Leaves, h, root, len(model))
		}
		dst := OpenOnFSStore(t, vfs.NewMem(), Options{})
		im, err := NewImporter(ctx, dst.Datastore(), m)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range rand.New(rand.NewPCG(uint64(per), 0)).Perm(len(chunks)) {
			if _, err := im.Add(ctx, chunks[i]); err != nil {
				t.Fatalf("per=%d chunk %d: %v", per, i, err)
			}
		}
		if err := im.Install(ctx, dst); err != nil {
			t.Fatal(err)
		}
		if gh, gr := dst.Latest(); gh != h || gr != root {
			t.Fatalf("imported store at (%d, %s), want (%d, %s)", gh, gr, h, root)
		}
		sameReads(t, src, dst, h, model)
		if _, err := dst.View(ctx, h-1); !errors.Is(err, ErrPruned) {
			t.Fatalf("version below the snapshot: got %v, want ErrPruned", err)
		}
		// The imported store carries on like any other.
		snapWorkload(t, dst, 2, 2, 50)
		if err := im.Install(ctx, dst); !errors.Is(err, ErrSnapshotTarget) {
			t.Fatalf("second install over newer versions: got %v", err)
		}
	}
}

func TestSnapshotEmptyState(t *testing.T) {
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Commit(ctx, 1, []Write{{Key: types.StateKey{Key: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	m, chunks := export(t, src, 1, 10)
	if len(chunks) != 1 || m.Leaves != 0 || m.Root != types.EmptyRoot {
		t.Fatalf("empty state exported as %d chunks, %d leaves, root %s", len(chunks), m.Leaves, m.Root)
	}
	dst, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Add(ctx, chunks[0]); err != nil {
		t.Fatal(err)
	}
	if err := im.Install(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if h, r := dst.Latest(); h != 1 || r != types.EmptyRoot {
		t.Fatalf("got (%d, %s)", h, r)
	}
}

func TestSnapshotInstallNeedsAllChunks(t *testing.T) {
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	snapWorkload(t, src, 3, 3, 40)
	h, _ := src.Latest()
	m, chunks := export(t, src, h, 10)
	dst, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Add(ctx, chunks[0]); err != nil {
		t.Fatal(err)
	}
	if err := im.Install(ctx, dst); !errors.Is(err, ErrSnapshotIncomplete) {
		t.Fatalf("got %v, want ErrSnapshotIncomplete", err)
	}
	if l, _ := dst.Latest(); l != 0 {
		t.Fatalf("a failed install moved the store to version %d", l)
	}
}

// TestSnapshotExportDuringPrune exports a version from one goroutine while
// this one commits and prunes past it (K=1). The export's View pins the
// version, so the pruner must never delete a node the export reads, the
// snapshot must import to the version's root, and once the View is closed
// the version goes.
func TestSnapshotExportDuringPrune(t *testing.T) {
	ctx := context.Background()
	src, err := OpenMemory(Options{KeepVersions: 1, PruneChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	perBlock := 400
	if RaceEnabled {
		perBlock = 100
	}
	snapWorkload(t, src, 4, 10, perBlock)
	if _, err := src.Prune(ctx); err != nil { // so that the prunes below are short
		t.Fatal(err)
	}
	h, root := src.Latest()
	v, err := src.View(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var m *Manifest
	var chunks [][]byte
	go func() {
		var err error
		m, err = v.ExportSnapshot(ctx, 16, func(i int, b []byte) error {
			chunks = append(chunks, b)
			return nil
		})
		// Closed before done: a deferred Close ran after the send, so the
		// check below that h is pruned raced with it.
		v.Close()
		done <- err
	}()
	blocks := 0
	for exported := false; !exported; blocks++ {
		snapWorkload(t, src, uint64(100+blocks), 1, 4)
		if _, err := src.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("export under pruning: %v", err)
			}
			exported = true
		default:
		}
	}
	t.Logf("%d blocks committed and pruned during the export", blocks)
	if _, err := src.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := src.View(ctx, h); !errors.Is(err, ErrPruned) {
		t.Fatalf("version %d should be pruned once the export ended: %v", h, err)
	}
	rep, err := src.Audit(ctx)
	if err != nil || !rep.Clean() {
		t.Fatalf("audit after export under pruning: %+v, %v", rep, err)
	}
	dst, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	importAll(t, dst, m, chunks)
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
}

// TestSnapshotImportCrashResume loses power at many points of an import
// (staging chunks, the install's record batches, the switch, clearing the
// staging area), then restarts on what survived. The reopened store must be
// at version 0 or at the snapshot, nothing in between. Every other restart
// resumes the same snapshot: it must skip the chunks staged before the crash
// and finish. The others import a snapshot of an older version instead,
// which must first discard whatever the crashed install wrote. Either way
// the store ends at the imported root with an audit that finds nothing
// leaked or missing and a flat index that matches the tree.
//
// Installs that ingest (see ingest.go) also crash at the points where they
// start merging their runs into tables, just before pebble links the tables
// in (written, not ingested), and before the first scratch file is removed
// after the ingest.
func TestSnapshotImportCrashResume(t *testing.T) {
	for _, mode := range installModes {
		for _, stream := range []bool{false, true} {
			name := map[bool]string{false: "staged", true: "streamed"}[stream]
			t.Run(mode.name+"/"+name, func(t *testing.T) { testSnapshotImportCrashResume(t, stream, mode.ingest) })
		}
	}
}

// spyFS calls on before each file creation, link and removal, with the
// operation and the file's name, one call at a time: an install's merge
// sections create their tables concurrently.
type spyFS struct {
	vfs.FS
	mu sync.Mutex
	on func(op, name string)
}

func (f *spyFS) spy(op, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on(op, name)
}

func (f *spyFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f.spy("create", name)
	return f.FS.Create(name, cat)
}

func (f *spyFS) Link(oldname, newname string) error {
	f.spy("link", oldname)
	return f.FS.Link(oldname, newname)
}

func (f *spyFS) RemoveAll(name string) error {
	f.spy("remove", name)
	return f.FS.RemoveAll(name)
}

// testSnapshotImportCrashResume is TestSnapshotImportCrashResume with every
// chunk staged by Add first, or (stream) none staged and every chunk read by
// InstallFrom; installing by batches or (ingest) by ingestion.
func testSnapshotImportCrashResume(t *testing.T, stream, ingest bool) {
	smallInstallBatches(t, 8<<10) // the install spans dozens of batches
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	snapWorkload(t, src, 6, 8, 200)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 40)
	oldH := h - 2
	oldM, oldChunks := export(t, src, oldH, 40)

	// importAll returns how many chunks it did not need: staged ones
	// Add skipped, or chunks InstallFrom did not read.
	importAll := func(s *Store, m *Manifest, chunks [][]byte) int {
		im, err := NewImporter(ctx, s.Datastore(), m)
		if err != nil {
			t.Fatal(err)
		}
		skipped := 0
		if stream {
			var read atomic.Int64
			err := im.InstallFrom(ctx, s, func(_ context.Context, i int) ([]byte, error) {
				read.Add(1)
				return chunks[i], nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return len(chunks) - int(read.Load())
		}
		for _, c := range chunks {
			staged, err := im.Add(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if !staged {
				skipped++
			}
		}
		if err := im.Install(ctx, s); err != nil {
			t.Fatal(err)
		}
		return skipped
	}
	dry := NewCrashPointFS(vfs.NewCrashableMem(), 0, vfs.CrashCloneCfg{})
	// The operation counts (1-based) at which an ingesting install starts
	// its first table, links its first table and removes its first
	// scratch file after the ingest.
	var named []int64
	seen := map[string]bool{}
	s := openSnapStore(t, &spyFS{FS: dry, on: func(op, name string) {
		scratch := strings.Contains(name, ingestDirName+"/")
		key := map[string]string{"create": "table-", "link": "link", "remove": "remove"}[op]
		if scratch && !seen[key] && (op != "create" || strings.Contains(name, "table-")) {
			seen[key] = true
			named = append(named, dry.Ops()+1)
		}
	}}, ingest)
	importAll(s, m, chunks)
	s.Close()
	total := dry.Ops()
	if ingest && len(named) != 3 {
		t.Fatalf("the dry run saw %d of the 3 ingest steps", len(named))
	}

	points := int64(24)
	if RaceEnabled {
		points = 6
	}
	targets := make([]int64, 0, points+3)
	for p := int64(0); p < points; p++ {
		targets = append(targets, 1+p*total/points)
	}
	if ingest {
		// Even points resume the same snapshot: the one before the link.
		targets = append(targets, named[1], named[0], named[2])
	}
	resumed, switched, progressed, afterIngest := 0, 0, 0, 0
	for p, target := range targets {
		fs := NewCrashPointFS(vfs.NewCrashableMem(), target, vfs.CrashCloneCfg{})
		s := openSnapStore(t, fs, ingest)
		importAll(s, m, chunks)
		s.Close()
		clone := fs.Clone()
		if clone == nil {
			continue
		}
		s = openSnapStore(t, clone, ingest)
		if ok, err := s.Datastore().Has(ctx, snapProgressKey); err != nil {
			t.Fatal(err)
		} else if ok && p%2 == 0 {
			progressed++ // the install below goes on from a durable batch
			if pr, err := (&Importer{m: m}).readProgress(ctx, s); err != nil {
				t.Fatal(err)
			} else if pr.ingested {
				afterIngest++ // it only switches
			}
		}
		switch gh, gr := s.Latest(); {
		case gh == h && gr == root:
			switched++
		case gh != 0 || gr != types.EmptyRoot:
			t.Fatalf("point %d: after the crash the store is at (%d, %s)", p, gh, gr)
		}
		wantH, wantRoot := h, root
		if p%2 == 0 {
			resumed += importAll(s, m, chunks)
		} else if gh, _ := s.Latest(); gh == 0 {
			importAll(s, oldM, oldChunks)
			wantH, wantRoot = oldH, oldM.Root
		}
		if gh, gr := s.Latest(); gh != wantH || gr != wantRoot {
			t.Fatalf("point %d: import after the crash at (%d, %s), want (%d, %s)", p, gh, gr, wantH, wantRoot)
		}
		rep, err := s.Audit(ctx)
		if err != nil || !rep.Clean() {
			t.Fatalf("point %d: audit after the import: %+v, %v", p, rep, err)
		}
		if p%6 == 0 {
			sameReads(t, src, s, h, snapModel(t, src, h))
		}
		if p%6 == 3 && wantH == oldH {
			sameReads(t, src, s, oldH, snapModel(t, src, oldH))
		}
	}
	if ingest && afterIngest == 0 {
		t.Fatal("no crash point fell between the ingest and the switch")
	}
	if resumed == 0 || progressed == 0 {
		t.Fatalf("%d chunks skipped, %d installs resumed mid-way: the crash points missed the staging or the install", resumed, progressed)
	}
	t.Logf("%d crash points over %d operations, %d chunks skipped on resume, %d installs resumed mid-way, %d crashes after the switch", len(targets), total, resumed, progressed, switched)
}

// snapModel returns the (key, value) pairs of version h of s.
func snapModel(t *testing.T, s *Store, h uint64) map[string][]byte {
	t.Helper()
	v, err := s.View(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	model := map[string][]byte{}
	err = v.Leaves(context.Background(), func(_ types.Hash, k types.StateKey, value []byte) error {
		model[modelKey(k)] = append([]byte{}, value...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return model
}

// TestSnapshotInstallCorruptStaging corrupts a staged chunk after it was
// verified (a disk fault): the rebuilt root no longer matches, so Install
// must refuse to switch, discard what it wrote and the staging area, and a
// fresh import must then succeed.
func TestSnapshotInstallCorruptStaging(t *testing.T) {
	smallInstallBatches(t, 4<<10)
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	snapWorkload(t, src, 8, 4, 200)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 50)
	dst := OpenOnFSStore(t, vfs.NewMem(), Options{})
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if _, err := im.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var c Chunk
	if err := types.Decode(chunks[1], &c); err != nil {
		t.Fatal(err)
	}
	c.Leaves[3].Value = append([]byte{}, c.Leaves[3].Value...)
	c.Leaves[3].Value[0] ^= 1
	if err := dst.Datastore().Put(ctx, snapStageChunkKey(1), types.MustEncode(&c)); err != nil {
		t.Fatal(err)
	}
	if err := im.Install(ctx, dst); !errors.Is(err, ErrSnapshotRoot) {
		t.Fatalf("install of a corrupted staging area: got %v, want ErrSnapshotRoot", err)
	}
	if gh, gr := dst.Latest(); gh != 0 || gr != types.EmptyRoot {
		t.Fatalf("a refused install moved the store to (%d, %s)", gh, gr)
	}
	if left := dump(t, dst.Datastore(), nsNode, nsKV, "/kairos/snapimport"); len(left) != 0 {
		t.Fatalf("a refused install left %d entries behind", len(left))
	}
	im, err = NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Missing()) != len(chunks) {
		t.Fatalf("after the refused install %d of %d chunks are still staged", len(chunks)-len(im.Missing()), len(chunks))
	}
	for _, c := range chunks {
		if _, err := im.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Install(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	if rep, err := dst.Audit(ctx); err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

// failingDS is a datastore whose writes start failing at the n-th one: the
// process "dies" there. Its batches apply each operation at once, like a
// backend without atomic batches, so a failure can tear any batch.
type failingDS struct {
	ds.Batching
	n, count int
}

var errInjected = errors.New("injected write failure")

func (f *failingDS) write(op func() error) error {
	f.count++
	if f.count >= f.n {
		return errInjected
	}
	return op()
}

func (f *failingDS) Put(ctx context.Context, k ds.Key, v []byte) error {
	return f.write(func() error { return f.Batching.Put(ctx, k, v) })
}

func (f *failingDS) Delete(ctx context.Context, k ds.Key) error {
	return f.write(func() error { return f.Batching.Delete(ctx, k) })
}

func (f *failingDS) Sync(ctx context.Context, k ds.Key) error {
	return f.write(func() error { return f.Batching.Sync(ctx, k) })
}

func (f *failingDS) Batch(context.Context) (ds.Batch, error) { return failingBatch{f}, nil }

type failingBatch struct{ f *failingDS }

func (b failingBatch) Put(ctx context.Context, k ds.Key, v []byte) error { return b.f.Put(ctx, k, v) }
func (b failingBatch) Delete(ctx context.Context, k ds.Key) error        { return b.f.Delete(ctx, k) }
func (b failingBatch) Commit(context.Context) error                      { return nil }

// TestSnapshotImportTornWrites stops an import at a write on a backend
// without atomic batches (the latest pointer is the switch there), then
// opens the store again on what was written and imports the same snapshot,
// or an older one, to the end: the store must be at version 0 or at the
// snapshot after the failure, and end at the imported root with a clean
// audit.
func TestSnapshotImportTornWrites(t *testing.T) {
	smallInstallBatches(t, 2<<10)
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	snapWorkload(t, src, 9, 4, 80)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 30)
	oldM, oldChunks := export(t, src, h-1, 30)
	importAll := func(d ds.Batching, m *Manifest, chunks [][]byte) (*Store, error) {
		s, err := Open(ctx, d, Options{})
		if err != nil {
			return nil, err
		}
		im, err := NewImporter(ctx, d, m)
		if err != nil {
			return s, err
		}
		for _, c := range chunks {
			if _, err := im.Add(ctx, c); err != nil {
				return s, err
			}
		}
		return s, im.Install(ctx, s)
	}
	counter := &failingDS{Batching: dssync.MutexWrap(ds.NewMapDatastore()), n: math.MaxInt}
	if _, err := importAll(counter, m, chunks); err != nil {
		t.Fatal(err)
	}
	total := counter.count
	// Every write of the switch and the cleanup at the end, a sample of
	// the rest.
	step, tail := max(1, total/60), 40
	if RaceEnabled {
		step = max(1, total/12)
	}
	for n := 1; n <= total; n = min(n+step, max(n+1, total-tail)) {
		base := dssync.MutexWrap(ds.NewMapDatastore())
		s, err := importAll(&failingDS{Batching: base, n: n}, m, chunks)
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d of %d: import ended with %v, want the injected failure", n, total, err)
		}
		s, err = Open(ctx, base, Options{})
		if err != nil {
			t.Fatalf("write %d: reopen: %v", n, err)
		}
		switch gh, gr := s.Latest(); {
		case gh == h && gr == root:
		case gh != 0 || gr != types.EmptyRoot:
			t.Fatalf("write %d: after the failure the store is at (%d, %s)", n, gh, gr)
		}
		wantM, wantChunks := m, chunks
		if n%2 == 1 {
			if gh, _ := s.Latest(); gh == 0 {
				wantM, wantChunks = oldM, oldChunks
			}
		}
		if s, err = importAll(base, wantM, wantChunks); err != nil {
			t.Fatalf("write %d: import after the failure: %v", n, err)
		}
		if gh, gr := s.Latest(); gh != wantM.Height || gr != wantM.Root {
			t.Fatalf("write %d: imported (%d, %s), want (%d, %s)", n, gh, gr, wantM.Height, wantM.Root)
		}
		if rep, err := s.Audit(ctx); err != nil || !rep.Clean() {
			t.Fatalf("write %d: audit: %+v, %v", n, rep, err)
		}
	}
}
