package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

func testID(i uint64) types.Hash {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], i)
	return sha256.Sum256(b[:])
}

// TestExecutedIndexNoFalseNo checks the index against an exact set (the
// reference model): every id added is a "maybe" through generation
// rollovers, and ids never added are mostly "no".
func TestExecutedIndexNoFalseNo(t *testing.T) {
	x := newExecutedIndex()
	total := uint64(ExecutedGenIDs + ExecutedGenIDs/2) // two generations
	var batch []types.Hash
	for i := range total {
		batch = append(batch, testID(i))
		if len(batch) == 1000 || i == total-1 {
			x.add(i/1000+1, batch...)
			batch = batch[:0]
		}
	}
	if g := x.generations(); g != 2 {
		t.Fatalf("%d generations after %d ids, want 2", g, total)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		if i := rng.Uint64N(total); !x.mayHave(testID(i)) {
			t.Fatalf("id %d added but answered not executed", i)
		}
	}
	// A full generation holds under 1% false "maybe"s; two of them under 2%.
	const probes = 200_000
	maybe := 0
	for i := range uint64(probes) {
		if x.mayHave(testID(total + i)) {
			maybe++
		}
	}
	if rate := float64(maybe) / probes; rate > 0.02 || maybe == 0 {
		t.Fatalf("false maybe rate %.4f (%d of %d), want in (0, 0.02]", rate, maybe, probes)
	}
	t.Logf("false maybe rate over 1.5 generations: %.4f", float64(maybe)/probes)
}

// TestExecutedIndexDropsPruned: a full generation goes once its highest
// height is pruned, the open one never; ids deferred since open stay
// "maybe" until they settle.
func TestExecutedIndexDropsPruned(t *testing.T) {
	x := newExecutedIndex()
	deferred := testID(1 << 40)
	x.add(5, deferred)
	x.deferral([]types.Hash{deferred}, nil)
	ids := make([]types.Hash, ExecutedGenIDs)
	for i := range ids {
		ids[i] = testID(uint64(i))
	}
	x.add(10, ids[:ExecutedGenIDs-1]...) // fills the first generation
	x.add(20, testID(1<<41))             // opens the second
	var upTo uint64
	pruned := func(h uint64) bool { return h <= upTo }
	for _, c := range []struct {
		upTo uint64
		gens int
	}{{9, 2}, {10, 1}, {100, 1}} {
		upTo = c.upTo
		x.dropPruned(pruned)
		if g := x.generations(); g != c.gens {
			t.Fatalf("pruned to %d: %d generations, want %d", c.upTo, g, c.gens)
		}
	}
	if !x.mayHave(deferred) || !x.mayHave(testID(1<<41)) {
		t.Fatal("a deferred id or one of the open generation was forgotten")
	}
	x.deferral(nil, []types.Hash{deferred})
	if x.mayHave(deferred) {
		t.Fatal("a settled id of a dropped generation is still held as deferred")
	}
	// Deferred and settled at one height: not held as deferred.
	both := testID(1 << 42)
	x.deferral([]types.Hash{both}, []types.Hash{both})
	if _, ok := x.deferred[both]; ok {
		t.Fatal("an id deferred and settled at one height stays deferred")
	}
	if x.mayHave(ids[0]) && x.mayHave(ids[1]) && x.mayHave(ids[2]) {
		t.Fatal("the dropped generation's ids still answer maybe")
	}
}

// TestLoadExecuted: the ids of the records on disk are loaded; a key that
// is not a transaction id is ErrCorrupt.
func TestLoadExecuted(t *testing.T) {
	ctx := context.Background()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	var ids []types.Hash
	for i := range uint64(100) {
		ids = append(ids, testID(i))
		if err := d.Put(ctx, idKey(nsTx, testID(i)), []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	// Other namespaces are not read.
	if err := d.Put(ctx, idKey(nsRepeats, testID(1000)), []byte{1}); err != nil {
		t.Fatal(err)
	}
	x := newExecutedIndex()
	if err := loadExecuted(ctx, d, x, 7); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if !x.mayHave(id) {
			t.Fatalf("record %d not loaded", i)
		}
	}
	if err := d.Put(ctx, ds.NewKey(nsTx+"zz"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := loadExecuted(ctx, d, newExecutedIndex(), 7); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad record key: %v, want %v", err, ErrCorrupt)
	}
}

// indexCoversRecords fails the test if a transaction record on nd's disk
// is answered "not executed" by its index.
func indexCoversRecords(t *testing.T, i int, nd *Node) {
	t.Helper()
	res, err := nd.d.Query(context.Background(), query.Query{Prefix: nsTx, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	n := 0
	for r := range res.Next() {
		var id types.Hash
		if err := id.UnmarshalText([]byte(strings.TrimPrefix(r.Key, nsTx))); err != nil {
			t.Fatal(err)
		}
		if !nd.executed.mayHave(id) {
			t.Fatalf("node %d: record %s not in the executed index", i, id)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("node %d: no transaction records", i)
	}
}

// TestIDKeyIsClean: idKey skips NewKey's cleaning, so it must build the
// same key NewKey would, for every namespace it is used with.
func TestIDKeyIsClean(t *testing.T) {
	id := testID(7)
	if got, want := idKey(nsTx, id), ds.NewKey(nsTx+id.String()); got != want {
		t.Fatalf("idKey(%q) = %s, NewKey gives %s", nsTx, got, want)
	}
}
