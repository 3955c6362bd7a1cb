package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/types"
)

// watchedPebble opens a store on pebble in dir as OpenPebble does, and
// counts the single deletes pebble reports as misused (a SingleDelete that
// met a key Set twice, which may bring the older Set back).
func watchedPebble(t *testing.T, dir string, opts Options) (*Store, *atomic.Int64) {
	t.Helper()
	var misused atomic.Int64
	po := pebbleOptions()
	po.EventListener = &pebble.EventListener{PossibleAPIMisuse: func(i pebble.PossibleAPIMisuseInfo) {
		if i.Kind == pebble.NondeterministicSingleDelete {
			misused.Add(1)
		}
	}}
	d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleWriteOptions(pebble.Sync), pebbleds.WithPebbleOpts(po))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openOwned(d, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.pdb = d.DB
	return s, &misused
}

// compactAll flushes the memtable and compacts the whole key space, so
// that every delete meets the records it deletes.
func compactAll(t *testing.T, s *Store) {
	t.Helper()
	if err := s.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.pdb.Compact(context.Background(), []byte("/"), []byte("/\xff"), false); err != nil {
		t.Fatal(err)
	}
}

func hasRecord(t *testing.T, s *Store, born uint64, id types.Hash) bool {
	t.Helper()
	_, c, err := s.pdb.Get(keyBytes(nodeKey(born, id)))
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return true
}

// TestPruneSingleDeleteNodeComesBack is TestPruneNodeComesBack on pebble,
// where the pruner single-deletes: a=A at version 2, B at 3, A again at 4
// writes the value record of a=A under born 2 and again under born 4. The
// pruner single-deletes the born-2 record (and the rest of the versions'
// stale records); after a full compaction the born-4 record, and the
// version, must be intact, pebble must have seen no single delete meet a
// key Set twice, and the audit must be clean.
func TestPruneSingleDeleteNodeComesBack(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	s, misused := watchedPebble(t, dir, Options{KeepVersions: 1})
	var fill []Write
	for i := range 40 {
		fill = append(fill, Write{key(fmt.Sprint("f", i)), []byte("F")})
	}
	// Version 1's records stay live: the lowest born, which the pruner
	// deletes with plain deletes, is 1.
	mustCommit(t, s, 1, fill)
	r2 := mustCommit(t, s, 2, []Write{{key("a"), []byte("A")}, {key("b"), []byte("X")}})
	mustCommit(t, s, 3, []Write{{key("a"), []byte("B")}})
	r4 := mustCommit(t, s, 4, []Write{{key("a"), []byte("A")}})
	if r2 != r4 {
		t.Fatal("A→B→A gave a different root")
	}
	leafA := types.LeafHash(types.KeyPath(key("a")), types.ValueHash([]byte("A")))
	if !hasRecord(t, s, 2, leafA) || !hasRecord(t, s, 4, leafA) {
		t.Fatal("a=A has no value records under borns 2 and 4: the test would show nothing")
	}
	st, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Version 1's replaced nodes go by plain deletes, the rest singly.
	if st.Min != 4 || st.Single == 0 || st.Single == st.Deleted {
		t.Fatalf("prune stats %+v: want min 4, single and plain deletes", st)
	}
	compactAll(t, s)
	if hasRecord(t, s, 2, leafA) {
		t.Fatal("the pruned value record of a=A (born 2) is still there after a full compaction")
	}
	if !hasRecord(t, s, 4, leafA) {
		t.Fatal("the live value record of a=A (born 4) is gone")
	}
	if n := misused.Load(); n != 0 {
		t.Fatalf("pebble reported %d single deletes of keys set twice", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = watchedPebble(t, dir, Options{KeepVersions: 1})
	defer s.Close()
	v, err := s.View(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got, err := v.Get(ctx, key("a")); err != nil || string(got) != "A" {
		t.Fatalf("a = %q, %v", got, err)
	}
	auditClean(t, s)
}

// TestPruneSingleDeleteRewrittenInstall: an install may write its records
// twice (a resumed install rewrites them; a crash between ingest and the
// progress record ingests again). Seed a store, reopen it, Set every
// record again in a second table as a resumed install would, then replace
// every seeded leaf and prune them all: the pruner must delete the
// install's records with plain deletes, or a compaction brings the older
// copy back (pebble's contract for SingleDelete), which the audit reports
// as leaked. The records of the commits after it go by SingleDelete.
func TestPruneSingleDeleteRewrittenInstall(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	s, _ := watchedPebble(t, dir, Options{KeepVersions: 1})
	var leaves []SnapshotLeaf
	for i := range 300 {
		leaves = append(leaves, SnapshotLeaf{Key: key(fmt.Sprint("k", i)), Value: []byte("seeded")})
	}
	sort.Slice(leaves, func(i, j int) bool {
		a, b := types.KeyPath(leaves[i].Key), types.KeyPath(leaves[j].Key)
		return bytes.Compare(a[:], b[:]) < 0
	})
	const height = 5
	if _, err := seed(t, s, height, leaves); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, misused := watchedPebble(t, dir, Options{KeepVersions: 1})
	defer s.Close()
	if err := s.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	it, err := s.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte(nsNode), UpperBound: []byte(nsNodeEnd)})
	if err != nil {
		t.Fatal(err)
	}
	b := s.pdb.NewBatch()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if err := b.Set(it.Key(), it.Value(), nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := errors.Join(it.Close(), b.Commit(pebble.Sync), s.pdb.Flush()); err != nil {
		t.Fatal(err)
	}
	if n < len(leaves) {
		t.Fatalf("rewrote %d records, want at least the %d value records", n, len(leaves))
	}
	ws := make([]Write, len(leaves))
	for i, l := range leaves {
		ws[i] = Write{l.Key, []byte("updated")}
	}
	mustCommit(t, s, height+1, ws)
	for i := range 50 {
		ws[i].Value = []byte("again")
	}
	mustCommit(t, s, height+2, ws[:50])
	st, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Version height+1 made every seeded record stale (plain deletes),
	// height+2 some of height+1's (single deletes).
	if st.Min != height+2 || st.Single == 0 || st.Deleted-st.Single < n {
		t.Fatalf("prune stats %+v: want min %d, the %d seeded records deleted plainly, some single deletes", st, height+2, n)
	}
	compactAll(t, s)
	if got := misused.Load(); got != 0 {
		t.Fatalf("pebble reported %d single deletes of keys set twice", got)
	}
	auditClean(t, s)
}
