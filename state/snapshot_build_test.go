package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// smallInstallBatches cuts installs into batches of about n bytes for the
// rest of the test.
func smallInstallBatches(t testing.TB, n int) {
	old := installBatchBytes
	installBatchBytes = n
	t.Cleanup(func() { installBatchBytes = old })
}

// dump returns every entry of d under the given prefixes.
func dump(t testing.TB, d ds.Datastore, prefixes ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range prefixes {
		res, err := d.Query(context.Background(), query.Query{Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		es, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			out[e.Key] = e.Value
		}
	}
	return out
}

func seed(t testing.TB, s *Store, height uint64, leaves []SnapshotLeaf) (types.Root, error) {
	t.Helper()
	// Uneven pieces, so that leaves are split across add calls and across
	// the hashing goroutines at every possible boundary.
	return s.Seed(context.Background(), height, func(add func([]SnapshotLeaf) error) error {
		for lo, n := 0, 1; lo < len(leaves); lo, n = lo+n, n*3 {
			if err := add(leaves[lo:min(lo+n, len(leaves))]); err != nil {
				return err
			}
		}
		return nil
	})
}

// inlineModules rewrites the node records and flat index keys of d, a
// dump of s, with every module inline instead of its id in s's table.
func inlineModules(t testing.TB, s *Store, d map[string][]byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for k, v := range d {
		out[k] = v
		if strings.HasPrefix(k, nsKV) {
			sk, err := s.modules.parseKVKey(k)
			if err != nil {
				t.Fatal(err)
			}
			delete(out, k)
			out[mustKVKey(t, nil, sk).String()] = v
			continue
		}
		if !strings.HasPrefix(k, nsNode) {
			continue
		}
		r, err := parseNodeKey(strings.TrimPrefix(k, nsNode))
		if err != nil {
			t.Fatal(err)
		}
		n, err := decodeNode(v, r, s.modules)
		if err != nil {
			t.Fatalf("record %q: %v", k, err)
		}
		out[k] = appendNode(nil, n, nil)
	}
	return out
}

// prefixLeaves returns n leaves whose key paths crowd into a few long
// shared prefixes, so that the tree has chains of one-child nodes and deep
// splits, which random key paths almost never give.
func prefixLeaves(seed uint64, n int) []SnapshotLeaf {
	r := rand.New(rand.NewPCG(seed, 3))
	var out []SnapshotLeaf
	seen := map[types.Hash]bool{}
	for len(out) < n {
		k := types.StateKey{Key: []byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}}
		kp := types.KeyPath(k)
		// Keep only key paths whose first 12 bits are 0: with 3-byte keys
		// that leaves enough keys, all below one chain of nodes.
		if kp[0] != 0 || kp[1]>>4 != 0 || seen[kp] {
			continue
		}
		seen[kp] = true
		out = append(out, SnapshotLeaf{Key: k, Value: []byte{byte(len(out)), 1}})
	}
	sortLeaves(out)
	return out
}

// TestTreeBuilderMatchesCommit is the builder's property test: seeding a
// store from sorted leaves must write exactly the records, flat index and
// root record that one Commit of the same leaves writes into an empty
// store, and the root must be the reference root.
func TestTreeBuilderMatchesCommit(t *testing.T) {
	smallInstallBatches(t, 1<<10)
	ctx := context.Background()
	cases := map[string][]SnapshotLeaf{}
	for _, n := range []int{0, 1, 2, 3, 16, 17, 300, 2000} {
		cases["random/"+strconv.Itoa(n)] = randomLeaves(uint64(n)+40, n)
	}
	for _, n := range []int{2, 5, 200} {
		cases["prefix/"+strconv.Itoa(n)] = prefixLeaves(uint64(n), n)
	}
	for name, leaves := range cases {
		a, err := OpenMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		ws := make([]Write, len(leaves))
		for i, l := range leaves {
			ws[len(ws)-1-i] = Write{Key: l.Key, Value: l.Value} // any order
		}
		ra, err := a.Commit(ctx, 1, ws)
		if err != nil {
			t.Fatal(err)
		}
		b, err := OpenMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		rb, err := seed(t, b, 1, leaves)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := refRoot(leafMap(leaves)); ra != want || rb != want {
			t.Fatalf("%s: commit root %s, seeded root %s, reference %s", name, ra, rb, want)
		}
		// Module ids are store-local: the seed assigns them per add call,
		// the commit for the whole block, so records compare with their
		// modules inline.
		da := inlineModules(t, a, dump(t, a.Datastore(), nsNode, nsKV, nsRoot))
		db := inlineModules(t, b, dump(t, b.Datastore(), nsNode, nsKV, nsRoot))
		if len(da) != len(db) {
			t.Fatalf("%s: commit wrote %d entries, seed %d", name, len(da), len(db))
		}
		for k, v := range da {
			if !bytes.Equal(db[k], v) {
				t.Fatalf("%s: entry %q differs: commit %x, seed %x", name, k, v, db[k])
			}
		}
		if rep, err := b.Audit(ctx); err != nil || !rep.Clean() {
			t.Fatalf("%s: audit of the seeded store: %+v, %v", name, rep, err)
		}
	}
}

func TestSeedRejects(t *testing.T) {
	ctx := context.Background()
	leaves := randomLeaves(5, 20)
	swapped := append([]SnapshotLeaf{}, leaves...)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	dup := append(append([]SnapshotLeaf{}, leaves[:5]...), leaves[4:]...)
	empty := append([]SnapshotLeaf{}, leaves...)
	empty[7].Value = nil
	for _, tc := range []struct {
		name   string
		leaves []SnapshotLeaf
		want   error
	}{
		{"unsorted", swapped, ErrChunkUnsorted},
		{"duplicate", dup, ErrChunkUnsorted},
		{"empty value", empty, ErrEmptyValue},
	} {
		s, err := OpenMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seed(t, s, 3, tc.leaves); !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if h, r := s.Latest(); h != 0 || r != types.EmptyRoot {
			t.Fatalf("%s: a failed seed moved the store to (%d, %s)", tc.name, h, r)
		}
	}
	s, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed(t, s, 1, leaves); err != nil {
		t.Fatal(err)
	}
	if _, err := seed(t, s, 2, leaves); !errors.Is(err, ErrSnapshotTarget) {
		t.Fatalf("seed over a version: got %v", err)
	}
	if _, err := s.Commit(ctx, 2, []Write{{Key: leaves[0].Key}}); err != nil {
		t.Fatalf("commit after a seed: %v", err)
	}
}

// TestTreeBuilderResume hands the builder's state over to a fresh builder
// after every leaf, as an install resumed after each batch would: the
// records written and the root must be those of one uninterrupted build.
func TestTreeBuilderResume(t *testing.T) {
	ctx := context.Background()
	for name, leaves := range map[string][]SnapshotLeaf{
		"random": randomLeaves(77, 300),
		"prefix": prefixLeaves(78, 60),
		"one":    randomLeaves(79, 1),
	} {
		build := func(resume bool) (slot, map[string][]byte) {
			d := dssync.MutexWrap(ds.NewMapDatastore())
			w := newRecordWriter(ctx, d)
			b := newTreeBuilder(4, w)
			for _, l := range leaves {
				bl := hashLeaf(l)
				if err := b.add(&bl); err != nil {
					t.Fatal(err)
				}
				if resume {
					state := b.encodeState()
					b = newTreeBuilder(4, w)
					if err := b.restoreState(state); err != nil {
						t.Fatalf("%s: restore: %v", name, err)
					}
				}
			}
			root, err := b.root()
			if err != nil {
				t.Fatal(err)
			}
			if err := w.flush(); err != nil {
				t.Fatal(err)
			}
			return root, dump(t, d, nsNode, nsKV)
		}
		ra, da := build(false)
		rb, db := build(true)
		if ra != rb || types.Root(ra.h) != refRoot(leafMap(leaves)) {
			t.Fatalf("%s: roots %x and %x", name, ra.h, rb.h)
		}
		if len(da) != len(db) {
			t.Fatalf("%s: %d records, resumed %d", name, len(da), len(db))
		}
		for k, v := range da {
			if !bytes.Equal(db[k], v) {
				t.Fatalf("%s: record %q differs after resuming", name, k)
			}
		}
	}
	var b treeBuilder
	for _, bad := range [][]byte{nil, {1}, {1, 0, 0}, {0, 0, 1, 0, 1}} {
		if b.restoreState(bad) == nil {
			t.Fatalf("restored from %x", bad)
		}
	}
}

// orderBatching records the order in which batches receive operations.
type orderBatching struct {
	ds.Batching
	ops *[]string
}

type orderBatch struct {
	ds.Batch
	ops *[]string
}

func (o orderBatching) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := o.Batching.Batch(ctx)
	return orderBatch{b, o.ops}, err
}

func (o orderBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	*o.ops = append(*o.ops, "put "+k.String()+"="+string(v))
	return o.Batch.Put(ctx, k, v)
}

func (o orderBatch) Delete(ctx context.Context, k ds.Key) error {
	*o.ops = append(*o.ops, "del "+k.String())
	return o.Batch.Delete(ctx, k)
}

// TestRecordWriterSortsByKey checks that a batch reaches the datastore in
// key order (bytes, not the order of the puts), with operations on one key
// in the order they were made, and that the last one wins.
func TestRecordWriterSortsByKey(t *testing.T) {
	ctx := context.Background()
	var ops []string
	d := orderBatching{dssync.MutexWrap(ds.NewMapDatastore()), &ops}
	w := newRecordWriter(ctx, d)
	w.manual = true
	steps := []struct {
		del  bool
		k, v string
	}{
		{k: "/kairos/n/b", v: "1"},
		{k: "/kairos/kv/zz", v: "2"},
		{k: "/kairos/n/a", v: "3"},
		{del: true, k: "/kairos/n/b"},
		{k: "/kairos/n/b", v: "4"},
		{k: "/kairos/n/aaaaaaaab", v: "5"}, // equal to the next in the first 8 bytes after /kairos/
		{k: "/kairos/n/aaaaaaaaa", v: "6"},
		{del: true, k: "/kairos/n/c"},
		{k: "/kairos/n/c", v: "7"},
		{del: true, k: "/kairos/n/c"},
	}
	for _, s := range steps {
		var err error
		if s.del {
			err = w.delete(ds.RawKey(s.k))
		} else {
			err = w.put(ds.RawKey(s.k), []byte(s.v))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"put /kairos/kv/zz=2",
		"put /kairos/n/a=3",
		"put /kairos/n/aaaaaaaaa=6",
		"put /kairos/n/aaaaaaaab=5",
		"put /kairos/n/b=1", "del /kairos/n/b", "put /kairos/n/b=4",
		"del /kairos/n/c", "put /kairos/n/c=7", "del /kairos/n/c",
	}
	if !slices.Equal(ops, want) {
		t.Fatalf("batch got\n%q\nwant\n%q", ops, want)
	}
	for k, v := range map[string]string{"/kairos/n/b": "4", "/kairos/n/c": ""} {
		got, err := d.Get(ctx, ds.RawKey(k))
		if v == "" {
			if !errors.Is(err, ds.ErrNotFound) {
				t.Errorf("%s: %q, %v; want deleted", k, got, err)
			}
		} else if string(got) != v || err != nil {
			t.Errorf("%s = %q, %v; want %q", k, got, err, v)
		}
	}
}

// TestRecordOpOrder: the record writer's comparison of operations is the
// byte order of their keys, for node keys of one or several borns, flat
// index keys and short keys.
func TestRecordOpOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	randKey := func() string {
		switch r.IntN(4) {
		case 0:
			return nodeKey(7, types.Hash(randKeyBytes(r, types.HashLen))).String()
		case 1:
			return nodeKey(randBorn(r), types.Hash(randKeyBytes(r, types.HashLen))).String()
		case 2:
			var m types.Address
			copy(m[:], randKeyBytes(r, types.AddressLen))
			k, _ := (*moduleTable)(nil).kvKey(types.StateKey{Module: m, Key: randKeyBytes(r, r.IntN(4))})
			return k.String()
		}
		return "/kairos/" + string(randKeyBytes(r, r.IntN(20)))
	}
	for range 5000 {
		a, b := randKey(), randKey()
		w := newRecordWriter(context.Background(), nil)
		w.manual = true
		if err := errors.Join(w.add(a, nil, false), w.add(b, []byte("v"), false)); err != nil {
			t.Fatal(err)
		}
		w.b.ops[1].seq = w.b.ops[0].seq // the same place: only the keys decide
		if got, want := w.b.compare(w.b.ops[0], w.b.ops[1]), strings.Compare(a, b); got != want {
			t.Fatalf("compare(%q, %q) = %d, want %d", a, b, got, want)
		}
	}
}

// TestRecordWriterBatches writes random puts and deletes through a record
// writer cut into batches of a few hundred bytes, on pebble directly and on
// a map datastore, with batches written while the next fills and their
// buffers reused: the result must be the map of the last operation on each
// key, and a then callback must run after its batch and before the next.
func TestRecordWriterBatches(t *testing.T) {
	ctx := context.Background()
	for _, onPebble := range []bool{false, true} {
		var d ds.Batching = dssync.MutexWrap(ds.NewMapDatastore())
		w := newRecordWriter(ctx, d)
		if onPebble {
			pd := OpenOnFS(t, vfs.NewMem(), true)
			defer pd.Close()
			d = pd
			w = newRecordWriter(ctx, d)
			w.pdb = pd.DB
		}
		w.max = 300
		r := rand.New(rand.NewPCG(5, 6))
		model := map[string]string{}
		thens := 0
		for i := range 3000 {
			k := "/kairos/t/" + strconv.Itoa(r.IntN(200))
			var err error
			if r.IntN(4) == 0 {
				delete(model, k)
				err = w.delete(ds.RawKey(k))
			} else {
				v := strconv.Itoa(i)
				model[k] = v
				err = w.put(ds.RawKey(k), []byte(v))
			}
			if err != nil {
				t.Fatal(err)
			}
			if i%500 == 499 {
				// As an install does: a callback after the batch.
				want := maps.Clone(model)
				w.manual = true
				err = w.flushThen(func() error {
					thens++
					res, err := d.Query(ctx, query.Query{Prefix: "/kairos/t/", KeysOnly: true})
					if err != nil {
						return err
					}
					got, err := res.Rest()
					if err == nil && len(got) != len(want) {
						err = fmt.Errorf("after batch %d: %d keys, want %d", i, len(got), len(want))
					}
					return err
				})
				w.manual = false
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		got := dump(t, d, "/kairos/t/")
		if len(got) != len(model) || thens != 6 {
			t.Fatalf("pebble=%v: %d keys, want %d; %d callbacks, want 6", onPebble, len(got), len(model), thens)
		}
		for k, v := range model {
			if string(got[k]) != v {
				t.Fatalf("pebble=%v: %s = %q, want %q", onPebble, k, got[k], v)
			}
		}
	}
}

// TestRecordWriterSortedParts: the operations of a batch sorted in parts on
// several cores and merged come out in the order of one sort by key bytes
// then place in the batch (the reference here: strings.Compare), whatever
// the number of parts, with many operations on one key.
func TestRecordWriterSortedParts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w := newRecordWriter(context.Background(), nil)
	w.manual = true
	type op struct {
		key string
		seq int
	}
	var ref []op
	for i := range 5*sortPartMin + 17 {
		k := nodeKey(uint64(r.IntN(3)), types.Hash(randKeyBytes(r, types.HashLen))).String()
		if r.IntN(3) == 0 {
			k = "/kairos/kv/" + strconv.Itoa(r.IntN(500)) // repeated keys
		}
		if err := w.add(k, []byte(strconv.Itoa(i)), r.IntN(5) == 0); err != nil {
			t.Fatal(err)
		}
		ref = append(ref, op{k, i})
	}
	slices.SortFunc(ref, func(a, b op) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs := 1; procs <= sortPartsMax+1; procs++ {
		runtime.GOMAXPROCS(procs)
		b := w.b
		b.ops = slices.Clone(w.b.ops) // sortParts sorts in place
		var got []op
		err := b.merge(b.sortParts(), func(o *recordOp) error {
			got = append(got, op{string(b.key(o)), int(o.seq)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ref) {
			t.Fatalf("GOMAXPROCS %d: merged order differs from one sort", procs)
		}
	}
}

// failFirstBatch fails the first batch's commit.
type failFirstBatch struct {
	ds.Batching
	failed *bool
}

type failFirstCommit struct {
	ds.Batch
	fail bool
}

var errTestBatch = errors.New("test: batch commit failed")

func (f failFirstBatch) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := f.Batching.Batch(ctx)
	fail := !*f.failed
	*f.failed = true
	return failFirstCommit{b, fail}, err
}

func (b failFirstCommit) Commit(ctx context.Context) error {
	if b.fail {
		return errTestBatch
	}
	return b.Batch.Commit(ctx)
}

// TestRecordWriterFailedBatchStopsLater: with batches in flight, a batch
// whose write fails stops every later one: their callbacks (an install's
// progress records) never run and their records are not written, and the
// error is the failed write's.
func TestRecordWriterFailedBatchStopsLater(t *testing.T) {
	ctx := context.Background()
	failed := false
	d := failFirstBatch{dssync.MutexWrap(ds.NewMapDatastore()), &failed}
	w := newRecordWriter(ctx, d)
	w.manual = true
	var thens []int
	var mu sync.Mutex
	seen := false
	for i := range snapWriteDepth + 1 {
		if err := w.put(ds.RawKey("/kairos/t/"+strconv.Itoa(i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
		err := w.flushThen(func() error {
			mu.Lock()
			thens = append(thens, i)
			mu.Unlock()
			return nil
		})
		if err != nil && !errors.Is(err, errTestBatch) {
			t.Fatal(err)
		}
		seen = seen || err != nil
	}
	if err := w.wait(); err != nil && !errors.Is(err, errTestBatch) {
		t.Fatal(err)
	} else if seen = seen || err != nil; !seen {
		t.Fatal("the failed write was not reported")
	}
	if len(thens) != 0 {
		t.Fatalf("callbacks of batches %v ran after the first batch failed", thens)
	}
	if got := dump(t, d, "/kairos/t/"); len(got) != 0 {
		t.Fatalf("%d records written after the first batch failed", len(got))
	}
}

// TestRecordWriterFlatIndexOrder: flat index entries put by putKV (ordered
// by module rank and the bytes after the module) and node records merge
// into the order of one sort of the key strings, for modules and keys
// holding the escaped bytes, repeated keys and every GOMAXPROCS up to
// sortPartsMax+1; putKV writes kvKey's bytes; and a batch refuses to mix
// flat index entries with other keys than node records.
func TestRecordWriterFlatIndexOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	mods := []types.Address{{}, {'.'}, {'/'}, {'.', '/'}, {'-'}, {'0'}, {0xff}, {1, '.', 2}}
	w := newRecordWriter(context.Background(), nil)
	// Ids of two-byte uvarints for five of the modules, whose order is not
	// their addresses', then the table is full and the others are inline.
	w.mods = newModuleTable(300)
	for i := range 295 {
		w.mods.assign([]types.Address{kvTestModule(i)})
	}
	w.mods.assign([]types.Address{mods[6]})
	w.mods.assign(mods[:4])
	w.manual = true
	type op struct {
		key string
		seq int
	}
	var ref []op
	for i := range 3*sortPartMin + 5 {
		if r.IntN(3) == 0 {
			k := nodeKey(7, types.Hash(randKeyBytes(r, types.HashLen))).String()
			if err := w.put(ds.RawKey(k), []byte{1}); err != nil {
				t.Fatal(err)
			}
			ref = append(ref, op{k, i})
			continue
		}
		sk := types.StateKey{Module: mods[r.IntN(len(mods))], Key: []byte(strconv.Itoa(r.IntN(300)))}
		if r.IntN(2) == 0 {
			sk.Key = append([]byte("shared/prefix.of-more-than-16-bytes/"), sk.Key...)
		}
		if err := w.putKV(sk, []byte{2}, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := string(w.b.key(&w.b.ops[len(w.b.ops)-1])), mustKVKey(t, w.mods, sk).String(); got != want {
			t.Fatalf("putKV wrote %q, kvKey is %q", got, want)
		}
		ref = append(ref, op{mustKVKey(t, w.mods, sk).String(), i})
	}
	slices.SortFunc(ref, func(a, b op) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs := 1; procs <= sortPartsMax+1; procs++ {
		runtime.GOMAXPROCS(procs)
		b := w.b
		b.ops = slices.Clone(w.b.ops) // sortParts sorts in place and ranks groups
		var got []op
		err := b.merge(b.sortParts(), func(o *recordOp) error {
			got = append(got, op{string(b.key(o)), int(o.seq)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ref) {
			t.Fatalf("GOMAXPROCS %d: merged order differs from one sort of the keys", procs)
		}
	}
	if err := w.put(keyLatest, []byte{1}); !errors.Is(err, errRecordMix) {
		t.Fatalf("a root key after flat index entries: %v, want errRecordMix", err)
	}
	other := newRecordWriter(context.Background(), nil)
	other.manual = true
	if err := other.put(keyLatest, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := other.putKV(types.StateKey{Key: []byte("k")}, []byte{1}, nil); !errors.Is(err, errRecordMix) {
		t.Fatalf("a flat index entry after a root key: %v, want errRecordMix", err)
	}
}

// TestRadixSortMatchesCompare: radixSort puts operations in compare's
// order, for operations that share long runs of group and pre bytes,
// differ in single bytes anywhere in them, tie on all of them with other
// key bytes, and repeat keys (ordered by place).
func TestRadixSortMatchesCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, radixSortMin - 1, radixSortMin, 1000, 20_000} {
		var b opBuffers
		for i := 0; i < n; i++ {
			var op recordOp
			// Few values per field, and a byte anywhere: deep buckets,
			// and many operations equal in all of group and pre.
			op.group = uint32(r.IntN(3)) << (8 * r.IntN(4))
			op.pre[0] = uint64(r.IntN(4)) << (8 * r.IntN(8))
			op.pre[1] = uint64(r.IntN(3)) << (8 * r.IntN(8))
			if r.IntN(4) == 0 {
				op.pre[1] = r.Uint64()
			}
			key := fmt.Appendf(nil, "k%d", r.IntN(50))
			op.koff, op.klen, op.seq = uint32(len(b.keys)), uint32(len(key)), uint32(i)
			b.keys = append(b.keys, key...)
			b.ops = append(b.ops, op)
		}
		want := slices.Clone(b.ops)
		slices.SortFunc(want, b.compare)
		b.radixSort(b.ops, 0)
		if !slices.Equal(b.ops, want) {
			t.Fatalf("%d operations: radixSort's order differs from compare's", n)
		}
	}
}

// BenchmarkOpSort sorts a batch shaped like an install's (a tenth of a
// 1M-key install: 100k flat index entries of 16 modules, 75k node
// records of one born) by compare alone and by radixSort.
func BenchmarkOpSort(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	w := newRecordWriter(context.Background(), nil)
	w.manual = true
	for i := range 100_000 {
		k := types.StateKey{Module: types.Address{byte(i % 16)}, Key: binary.BigEndian.AppendUint64([]byte("acct/"), r.Uint64N(1_000_000))}
		if err := w.putKV(k, make([]byte, 100), nil); err != nil {
			b.Fatal(err)
		}
	}
	for range 75_000 {
		if err := w.add(nodeKey(7, types.Hash(randKeyBytes(r, types.HashLen))).String(), make([]byte, 200), false); err != nil {
			b.Fatal(err)
		}
	}
	w.b.rankGroups()
	for _, radix := range []bool{false, true} {
		b.Run(fmt.Sprintf("radix=%v", radix), func(b *testing.B) {
			ops := slices.Clone(w.b.ops)
			for i := 0; i < b.N; i++ {
				copy(ops, w.b.ops)
				if radix {
					w.b.radixSort(ops, 0)
				} else {
					slices.SortFunc(ops, w.b.compare)
				}
			}
		})
	}
}
