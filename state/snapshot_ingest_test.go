package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// openIngestStore is OpenOnFSStore for a store whose installs ingest
// sstables, as OpenPebble's do: it records where the database is on fs.
func openIngestStore(t testing.TB, fs vfs.FS, opts Options) *Store {
	t.Helper()
	s := OpenOnFSStore(t, fs, opts)
	s.pebbleFS, s.pebbleDir = fs, crashDir
	return s
}

// openSnapStore opens a store on fs that installs by ingestion or (ingest
// false) by batches.
func openSnapStore(t testing.TB, fs vfs.FS, ingest bool) *Store {
	t.Helper()
	if ingest {
		return openIngestStore(t, fs, Options{})
	}
	return OpenOnFSStore(t, fs, Options{})
}

// installModes names the two ways an install writes its records on pebble.
var installModes = []struct {
	name   string
	ingest bool
}{{"batches", false}, {"ingest", true}}

// TestIngestPlace checks where installs ingest: a store OpenPebble opened
// does, in a directory inside its pebble directory; a pebble store whose
// directory is not recorded (the crash tests' in-memory one, unless opened
// by openIngestStore) and a store on another backend write batches.
func TestIngestPlace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s, err := OpenPebble(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if pl := ingestPlaceOf(s, 1); pl == nil || pl.dir != filepath.Join(dir, ingestDirName) {
		t.Fatalf("OpenPebble store: place %+v, want the directory %s", pl, filepath.Join(dir, ingestDirName))
	}
	if pl := ingestPlaceOf(OpenOnFSStore(t, vfs.NewMem(), Options{}), 1); pl != nil {
		t.Fatalf("store whose directory is not recorded: place %+v, want none", pl)
	}
	if pl := ingestPlaceOf(openIngestStore(t, vfs.NewMem(), Options{}), 1); pl == nil || pl.dir != "/db/"+ingestDirName {
		t.Fatalf("in-memory filesystem store: place %+v", pl)
	}
	m, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pl := ingestPlaceOf(m, 1); pl != nil {
		t.Fatalf("in-memory datastore: place %+v, want none", pl)
	}
}

// TestSnapshotInstallIngests imports a snapshot into a store on disk in
// many batches: the records must reach pebble by ingestion (tables added to
// the last level, none flushed or compacted, the log far smaller than the
// records), the scratch directory must be empty afterwards, and the store
// must read, prove and audit like the source. A second import of the same
// snapshot into a store that installs by batches must give the same
// records.
func TestSnapshotInstallIngests(t *testing.T) {
	smallInstallBatches(t, 8<<10)
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := snapWorkload(t, src, 21, 6, 200)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 30)

	dir := filepath.Join(t.TempDir(), "db")
	dst, err := OpenPebble(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFrom(ctx, dst, func(_ context.Context, i int) ([]byte, error) { return chunks[i], nil }); err != nil {
		t.Fatal(err)
	}
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	met := dst.pdb.Metrics()
	last := met.Levels[len(met.Levels)-1]
	var flushed, compacted uint64
	for _, l := range met.Levels {
		flushed += l.TableBytesFlushed
		compacted += l.TableBytesCompacted
	}
	if last.TablesIngested == 0 || flushed != 0 || compacted != 0 {
		t.Fatalf("last level ingested %d tables; %d bytes flushed, %d compacted: want ingestion only", last.TablesIngested, flushed, compacted)
	}
	records := recordBytes(t, dst)
	if met.WAL.BytesIn >= uint64(records)/4 {
		t.Fatalf("the log took %d bytes for %d bytes of records", met.WAL.BytesIn, records)
	}
	if names, err := vfs.Default.List(filepath.Join(dir, ingestDirName)); err != nil || len(names) != 0 {
		t.Fatalf("scratch directory after the install: %v, %v", names, err)
	}
	sameReads(t, src, dst, h, model)
	if rep, err := dst.Audit(ctx); err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v, %v", rep, err)
	}

	batched := OpenOnFSStore(t, vfs.NewMem(), Options{})
	im, err = NewImporter(ctx, batched.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFrom(ctx, batched, func(_ context.Context, i int) ([]byte, error) { return chunks[i], nil }); err != nil {
		t.Fatal(err)
	}
	a, b := dump(t, dst.Datastore(), "/kairos"), dump(t, batched.Datastore(), "/kairos")
	if len(a) != len(b) {
		t.Fatalf("ingested store holds %d records, batched %d", len(a), len(b))
	}
	for k, v := range b {
		if !bytes.Equal(a[k], v) {
			t.Fatalf("record %q differs between the ingested and the batched install", k)
		}
	}
}

// recordBytes is the size of the keys and values of the store's node and
// flat index records.
func recordBytes(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	for _, ns := range []string{nsNode, nsKV} {
		for k, v := range dump(t, s.Datastore(), ns) {
			n += len(k) + len(v)
		}
	}
	return n
}

// TestIngestRuns checks the run files and their merge against a sorted map:
// runs with overlapping keys (the later run's value wins), an empty run,
// and every namespace boundary cutting a table.
func TestIngestRuns(t *testing.T) {
	s := openIngestStore(t, vfs.NewMem(), Options{})
	pl := ingestPlaceOf(s, 1)
	if _, err := pl.prepare(0); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	var runs []*opBuffers
	for r := 0; r < 4; r++ {
		ob := &opBuffers{}
		w := &recordWriter{manual: true}
		for i := 0; i < 50*r; i++ {
			// Flat index keys and node keys of version 1 whose hashes
			// fall in both halves: every section has records.
			x := (i*7 + r*13) % 90
			k := fmt.Sprintf("%s%03d", nsKV, x)
			if i%2 == 1 {
				k = nodeKey(1, types.Hash{byte(x * 2)}).String()
			}
			v := fmt.Sprintf("run %d op %d", r, i)
			if err := w.add(k, []byte(v), false); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
		*ob = w.b
		runs = append(runs, ob)
	}
	for i, ob := range runs {
		if err := pl.writeRun(i, ob, ob.sortParts()); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.ingestRuns(context.Background(), len(runs)); err != nil {
		t.Fatal(err)
	}
	met := s.pdb.Metrics()
	for i, l := range met.Levels {
		want := uint64(0)
		if i == len(met.Levels)-1 {
			want = ingestSections // one table per section
		}
		if l.TablesIngested != want {
			t.Fatalf("level %d: %d tables ingested, want %d", i, l.TablesIngested, want)
		}
	}
	got := dump(t, s.Datastore(), nsKV, nsNode)
	if len(got) != len(want) {
		t.Fatalf("%d records after the merge, want %d", len(got), len(want))
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Fatalf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestIngestRunCorrupt damages a run file in every way a disk can and
// expects ErrCorrupt from the merge, and nothing ingested.
func TestIngestRunCorrupt(t *testing.T) {
	damages := []struct {
		name string
		f    func(b []byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[5] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return append(b[:len(b)/2:len(b)/2], b[len(b)-runTrailerLen:]...) }},
		{"extra record", func(b []byte) []byte {
			return append(append(b[:len(b)-runTrailerLen:len(b)-runTrailerLen], 1, 1, 'x', 'y'), b[len(b)-runTrailerLen:]...)
		}},
		{"no trailer", func(b []byte) []byte { return b[:len(b)-runTrailerLen] }},
		{"short", func(b []byte) []byte { return b[:3] }},
		{"huge length", func(b []byte) []byte {
			return append([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, b...)
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openIngestStore(t, fs, Options{})
			pl := ingestPlaceOf(s, 1)
			if _, err := pl.prepare(0); err != nil {
				t.Fatal(err)
			}
			w := &recordWriter{manual: true}
			for i := 0; i < 20; i++ {
				if err := w.add(fmt.Sprintf("%s%03d", nsNode, i), []byte("value"), false); err != nil {
					t.Fatal(err)
				}
			}
			if err := pl.writeRun(0, &w.b, w.b.sortParts()); err != nil {
				t.Fatal(err)
			}
			// The keys sort after every split of version 1: the last
			// section holds them.
			name := fs.PathJoin(pl.dir, runName(0, ingestSections-1))
			b := readFile(t, fs, name)
			writeFile(t, fs, name, d.f(b))
			if err := pl.ingestRuns(context.Background(), 1); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("merge of a damaged run: %v, want ErrCorrupt", err)
			}
			if got := dump(t, s.Datastore(), nsNode); len(got) != 0 {
				t.Fatalf("%d records ingested from a damaged run", len(got))
			}
		})
	}
}

func readFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotInstallCorruptRun damages a run file that an interrupted
// install left durable: the resumed install must fail with ErrCorrupt
// without switching, discard what it wrote, and a new import of the same
// snapshot must then succeed from the start.
func TestSnapshotInstallCorruptRun(t *testing.T) {
	smallInstallBatches(t, 4<<10)
	ctx := context.Background()
	src, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := snapWorkload(t, src, 31, 6, 150)
	h, root := src.Latest()
	m, chunks := export(t, src, h, 20)
	fs := vfs.NewMem()
	dst := openIngestStore(t, fs, Options{})
	errStop := errors.New("test: source stops")
	read := func(limit int) ChunkSource {
		return func(_ context.Context, i int) ([]byte, error) {
			if i >= limit {
				return nil, errStop
			}
			return chunks[i], nil
		}
	}
	im, err := NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFrom(ctx, dst, read(len(chunks)-2)); !errors.Is(err, errStop) {
		t.Fatalf("interrupted install: %v", err)
	}
	// The section of the node records with the largest hashes: every run
	// has some.
	run := fs.PathJoin(ingestPlaceOf(dst, h).dir, runName(0, ingestSections-1))
	b := readFile(t, fs, run)
	b[len(b)/2] ^= 0x40
	writeFile(t, fs, run, b)
	im, err = NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFrom(ctx, dst, read(len(chunks))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("install over a damaged run: %v, want ErrCorrupt", err)
	}
	if im.Skipped() == 0 {
		t.Fatal("the install did not resume from the interrupted one's runs")
	}
	if gh, gr := dst.Latest(); gh != 0 || gr != types.EmptyRoot {
		t.Fatalf("a failed install moved the store to (%d, %s)", gh, gr)
	}
	im, err = NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.InstallFrom(ctx, dst, read(len(chunks))); err != nil {
		t.Fatal(err)
	}
	if im.Skipped() != 0 {
		t.Fatalf("the install after the damaged one skipped %d chunks", im.Skipped())
	}
	if gh, gr := dst.Latest(); gh != h || gr != root {
		t.Fatalf("imported (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	sameReads(t, src, dst, h, model)
	if rep, err := dst.Audit(ctx); err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

// TestIngestPrepareMissingSection removes one section file of a durable
// run: a resumed install must not keep the run (prepare reports false and
// deletes the rest), while with every section there it keeps them all.
func TestIngestPrepareMissingSection(t *testing.T) {
	for sec := range ingestSections {
		fs := vfs.NewMem()
		s := openIngestStore(t, fs, Options{})
		pl := ingestPlaceOf(s, 1)
		if _, err := pl.prepare(0); err != nil {
			t.Fatal(err)
		}
		w := &recordWriter{manual: true}
		for i := 0; i < 10; i++ {
			if err := w.add(nodeKey(1, types.Hash{byte(i * 25)}).String(), []byte("v"), false); err != nil {
				t.Fatal(err)
			}
		}
		if err := pl.writeRun(0, &w.b, w.b.sortParts()); err != nil {
			t.Fatal(err)
		}
		if ok, err := pl.prepare(1); err != nil || !ok {
			t.Fatalf("every section there: prepare = %v, %v", ok, err)
		}
		if err := fs.Remove(fs.PathJoin(pl.dir, runName(0, sec))); err != nil {
			t.Fatal(err)
		}
		if ok, err := pl.prepare(1); err != nil || ok {
			t.Fatalf("section %d missing: prepare = %v, %v, want false", sec, ok, err)
		}
		if names, err := fs.List(pl.dir); err != nil || len(names) != 0 {
			t.Fatalf("section %d missing: %v left in the scratch directory (%v)", sec, names, err)
		}
	}
}
