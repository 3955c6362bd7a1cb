package state

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// moduleWrites returns writes of n keys spread over the modules ms, values
// drawn from r.
func moduleWrites(r *rand.Rand, ms []types.Address, n int) []Write {
	ws := make([]Write, n)
	for i := range ws {
		v := make([]byte, 1+r.IntN(20))
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		ws[i] = Write{Key: types.StateKey{Module: ms[i%len(ms)], Key: []byte{'k', byte(i), byte(i >> 8)}}, Value: v}
	}
	return ws
}

func addrs(tag byte, n int) []types.Address {
	ms := make([]types.Address, n)
	for i := range ms {
		ms[i] = types.Address{tag, byte(n - i)} // sorted order is not creation order
	}
	return ms
}

// tableOf reads the store's module table records: id → module.
func tableOf(t *testing.T, d ds.Datastore) map[uint64]types.Address {
	t.Helper()
	out := map[uint64]types.Address{}
	for k, v := range dump(t, d, nsModule) {
		id, err := parseHeightKey(k, nsModule)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = types.Address(v)
	}
	return out
}

// TestModuleTableAcrossReopen commits blocks that bring new modules to a
// pebble store on disk, reopening it in between: ids are assigned once, in
// sorted address order within a commit, persisted with the commit, found
// again by the reopened store (which reads every old version through
// them), and a store fed the same blocks with the writes in another order
// holds the same records, byte for byte.
func TestModuleTableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	first, second := addrs(1, 5), addrs(2, 7)
	blocks := [][]Write{
		moduleWrites(r, first, 40),
		moduleWrites(r, append(first[:2:2], second...), 50),
		moduleWrites(r, first, 30),
	}
	dir := t.TempDir()
	var roots []types.Root
	for h, ws := range blocks {
		s, err := OpenPebble(filepath.Join(dir, "a"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, mustCommit(t, s, uint64(h+1), ws))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := OpenPebble(filepath.Join(dir, "b"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for h, ws := range blocks {
		rev := slices.Clone(ws)
		slices.Reverse(rev)
		if root := mustCommit(t, b, uint64(h+1), rev); root != roots[h] {
			t.Fatalf("block %d: root %s, %s in the other order", h+1, root, roots[h])
		}
	}

	s, err := OpenPebble(filepath.Join(dir, "a"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	table := tableOf(t, s.Datastore())
	sorted := func(ms []types.Address) []types.Address {
		ms = slices.Clone(ms)
		slices.SortFunc(ms, func(a, b types.Address) int { return bytes.Compare(a[:], b[:]) })
		return ms
	}
	want := append(sorted(first), sorted(second)...)
	if len(table) != len(want) {
		t.Fatalf("%d module ids, want %d", len(table), len(want))
	}
	for i, m := range want {
		if table[uint64(i+1)] != m {
			t.Fatalf("id %d names %x, want %x", i+1, table[uint64(i+1)], m)
		}
	}
	da := dump(t, s.Datastore(), nsNode, nsModule, nsKV, nsHist)
	db := dump(t, b.Datastore(), nsNode, nsModule, nsKV, nsHist)
	if !maps.EqualFunc(da, db, bytes.Equal) {
		t.Fatal("the same blocks in another write order left other records")
	}

	// Every version reads back through the reopened table.
	for h, ws := range blocks {
		v, err := s.View(ctx, uint64(h+1))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			got, err := v.Get(ctx, w.Key)
			if err != nil || !bytes.Equal(got, w.Value) {
				v.Close()
				t.Fatalf("version %d, %s: %x, %v; want %x", h+1, w.Key, got, err, w.Value)
			}
		}
		v.Close()
	}
	auditClean(t, s)
}

// TestModuleIDsPastLimit gives a store with a limit of 3 module ids blocks
// of 8 modules: the 3 first in sorted order get ids, the others' leaves
// carry their address inline, no commit fails, the roots are those of a
// store without the limit, and everything reads back after a reopen.
func TestModuleIDsPastLimit(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	ms := addrs(3, 8)
	blocks := [][]Write{moduleWrites(r, ms[:4], 40), moduleWrites(r, ms, 60)}
	base := dssync.MutexWrap(ds.NewMapDatastore())
	limited, err := Open(ctx, base, Options{moduleIDsMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	free := openMem(t)
	for h, ws := range blocks {
		if a, b := mustCommit(t, limited, uint64(h+1), ws), mustCommit(t, free, uint64(h+1), ws); a != b {
			t.Fatalf("block %d: root %s with 3 module ids, %s without a limit", h+1, a, b)
		}
	}
	table := tableOf(t, base)
	if len(table) != 3 {
		t.Fatalf("%d module ids, want 3", len(table))
	}
	if _, ok := limited.modules.module(4); ok {
		t.Fatal("an id past the limit")
	}
	// The limited store's records are larger by the inline addresses.
	size := func(d ds.Datastore) (n int) {
		for _, v := range dump(t, d, nsNode) {
			n += len(v)
		}
		return n
	}
	if a, b := size(base), size(free.Datastore()); a <= b {
		t.Fatalf("node records of %d bytes with 3 ids, %d with one per module", a, b)
	}

	s, err := Open(ctx, base, Options{moduleIDsMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string][]byte{}
	for _, ws := range blocks {
		for _, w := range ws {
			latest[modelKey(w.Key)] = w.Value
		}
	}
	v, err := s.View(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for k, want := range latest {
		got, err := v.Get(ctx, splitKey(k))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%x: %x, %v; want %x", k, got, err, want)
		}
	}
	p, err := v.Prove(ctx, blocks[1][7].Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := types.Verify(v.Root(), p); err != nil {
		t.Fatal(err)
	}
	auditClean(t, s)
	// Past the limit a commit still brings new modules.
	mustCommit(t, s, 3, moduleWrites(r, addrs(4, 2), 10))
	auditClean(t, s)
}

// TestAuditUnknownModuleID rewrites a node record so that a leaf names a
// module id the store never assigned: loading it is ErrCorrupt, and Audit
// reports the node.
func TestAuditUnknownModuleID(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	s := openMem(t)
	mustCommit(t, s, 1, moduleWrites(r, addrs(5, 3), 200))
	for k, v := range dump(t, s.d, nsNode) {
		ref, err := parseNodeKey(strings.TrimPrefix(k, nsNode))
		if err != nil {
			t.Fatal(err)
		}
		n, err := decodeNode(v, ref, s.modules)
		if err != nil {
			t.Fatal(err)
		}
		leaf := n.at(0)
		if ref == s.root.ref() || leaf.kind != slotLeaf {
			continue
		}
		// A table in which the leaf's module has id 9, unknown to s.
		other := newModuleTable(ModuleIDsMax)
		other.assign(addrs(6, 8))
		other.assign([]types.Address{leaf.key().Module})
		if err := s.d.Put(ctx, ds.RawKey(k), appendNode(nil, n, other)); err != nil {
			t.Fatal(err)
		}
		s.cache = newNodeCache(s.opts.CacheBytes) // read it from the datastore
		if _, err := s.loadNode(ctx, ref); !errors.Is(err, ErrCorrupt) || !errors.Is(err, errModuleID) {
			t.Fatalf("load of a node naming an unknown module id: %v", err)
		}
		rep, err := s.Audit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Missing) != 1 || rep.Missing[0] != ref.id {
			t.Fatalf("audit: missing %v, want the node %s", rep.Missing, ref.id)
		}
		return
	}
	t.Fatal("no node below the root holds a leaf in its first slot")
}

// TestModuleTableRecords: Open refuses a table record it cannot read, and
// loads one with gaps (a torn commit's subset) keeping each id's module.
func TestModuleTableRecords(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		k    ds.Key
		v    []byte
		ok   bool
	}{
		{"gap", moduleKey(5), make([]byte, 32), true},
		{"id 0", moduleKey(0), make([]byte, 32), false},
		{"past the limit", moduleKey(ModuleIDsMax + 1), make([]byte, 32), false},
		{"short address", moduleKey(2), make([]byte, 31), false},
		{"bad key", ds.RawKey(nsModule + "x"), make([]byte, 32), false},
	} {
		d := dssync.MutexWrap(ds.NewMapDatastore())
		s, err := Open(ctx, d, Options{})
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, 1, []Write{{Key: types.StateKey{Module: types.Address{7}, Key: []byte("a")}, Value: []byte{1}}})
		if err := d.Put(ctx, tc.k, tc.v); err != nil {
			t.Fatal(err)
		}
		s, err = Open(ctx, d, Options{})
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: open: %v", tc.name, err)
		}
		if !tc.ok {
			continue
		}
		if m, ok := s.modules.module(1); !ok || m != (types.Address{7}) {
			t.Fatalf("%s: id 1 names %x", tc.name, m)
		}
		if _, ok := s.modules.module(3); ok {
			t.Fatalf("%s: id 3 in the gap", tc.name)
		}
		// The next module gets the id after the highest stored.
		mustCommit(t, s, 2, []Write{{Key: types.StateKey{Module: types.Address{8}, Key: []byte("a")}, Value: []byte{1}}})
		if m := tableOf(t, d)[6]; m != (types.Address{8}) {
			t.Fatalf("%s: id 6 names %x", tc.name, m)
		}
	}
}

// failModulesDS fails the first batch that writes a module table record.
type failModulesDS struct {
	ds.Batching
	failed bool
}

var errModuleBatch = errors.New("test: module batch failed")

func (f *failModulesDS) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := f.Batching.Batch(ctx)
	return &failModulesBatch{Batch: b, f: f}, err
}

type failModulesBatch struct {
	ds.Batch
	f       *failModulesDS
	modules bool
}

func (b *failModulesBatch) Put(ctx context.Context, k ds.Key, v []byte) error {
	b.modules = b.modules || strings.HasPrefix(k.String(), nsModule)
	return b.Batch.Put(ctx, k, v)
}

func (b *failModulesBatch) Commit(ctx context.Context) error {
	if b.modules && !b.f.failed {
		b.f.failed = true
		return errModuleBatch
	}
	return b.Batch.Commit(ctx)
}

// TestModuleIDsOfFailedSeed: a Seed whose module ids could not be stored
// fails, and the commit that follows on the same store persists those ids
// with its records (they stay assigned in memory), so that the store
// reopens and audits clean.
func TestModuleIDsOfFailedSeed(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	s, err := Open(ctx, &failModulesDS{Batching: base}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	leaves := randomLeaves(8, 30)
	if _, err := seed(t, s, 1, leaves); !errors.Is(err, errModuleBatch) {
		t.Fatalf("seed: %v, want the module batch's error", err)
	}
	if _, ok := s.modules.module(1); !ok {
		t.Fatal("the failed seed assigned no id")
	}
	ws := make([]Write, len(leaves))
	for i, l := range leaves {
		ws[i] = Write{Key: l.Key, Value: l.Value}
	}
	mustCommit(t, s, 1, ws)
	if n := len(tableOf(t, base)); n != 3 {
		t.Fatalf("%d module ids stored, want 3", n)
	}
	s2, err := Open(ctx, base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	auditClean(t, s2)
}

// TestModuleIDsOfFailedSeedRetried: a Seed whose module ids could not be
// stored, retried on the same store with the same leaves, stores those ids
// before its records although the retry brings no module without an id, so
// that the store reopens, reads and audits clean.
func TestModuleIDsOfFailedSeedRetried(t *testing.T) {
	ctx := context.Background()
	base := dssync.MutexWrap(ds.NewMapDatastore())
	s, err := Open(ctx, &failModulesDS{Batching: base}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// One module: the retry's chunks bring none without an id.
	leaves := randomLeaves(9, 30)
	for i := range leaves {
		leaves[i].Key.Module = types.Address{7}
	}
	slices.SortFunc(leaves, func(a, b SnapshotLeaf) int {
		ka, kb := types.KeyPath(a.Key), types.KeyPath(b.Key)
		return bytes.Compare(ka[:], kb[:])
	})
	if _, err := seed(t, s, 1, leaves); !errors.Is(err, errModuleBatch) {
		t.Fatalf("seed: %v, want the module batch's error", err)
	}
	root, err := seed(t, s, 1, leaves)
	if err != nil {
		t.Fatalf("retried seed: %v", err)
	}
	if n := len(tableOf(t, base)); n != 1 {
		t.Fatalf("%d module ids stored, want 1", n)
	}
	s2, err := Open(ctx, base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h, got := s2.Latest(); h != 1 || got != root {
		t.Fatalf("reopened at %d, %v; want 1, %v", h, got, root)
	}
	for _, l := range leaves {
		v, err := s2.Get(ctx, l.Key)
		if err != nil || !bytes.Equal(v, l.Value) {
			t.Fatalf("Get(%v) = %x, %v; want %x", l.Key, v, err, l.Value)
		}
	}
	auditClean(t, s2)
}

// TestFlatIndexAcrossModuleIDs writes keys of 310 modules into stores that
// assign 300 ids (uvarints of one and two bytes, ids 46 and 47 escaped;
// the last 10 modules inline) and reads them back against a model (a map):
// every module's Iterate returns its own keys and no other's, Get and
// GetMany find every value and nothing for a module never written, and
// the same after a reopen, which reads the table back; the stores audit
// clean.
func TestFlatIndexAcrossModuleIDs(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	const modules = 310
	model := map[types.Address]map[string][]byte{}
	var ws []Write
	for i := range modules {
		m := kvTestModule(i)
		model[m] = map[string][]byte{}
		for j := range 1 + i%3 {
			k := append([]byte{byte(j)}, randKeyBytes(r, r.IntN(3))...)
			v := []byte{byte(i), byte(j), 1}
			model[m][string(k)] = v
			ws = append(ws, Write{Key: types.StateKey{Module: m, Key: k}, Value: v})
		}
	}
	check := func(t *testing.T, s *Store) {
		t.Helper()
		var keys []types.StateKey
		var want [][]byte
		for m, kv := range model {
			var got []string
			err := s.Iterate(ctx, m, nil, func(k, v []byte) error {
				if !bytes.Equal(kv[string(k)], v) {
					t.Errorf("module %x: Iterate gives %x=%x, not the module's", m[:3], k, v)
				}
				got = append(got, string(k))
				return nil
			})
			if err != nil || !slices.Equal(got, slices.Sorted(maps.Keys(kv))) {
				t.Fatalf("module %x: Iterate %q, %v; want %q", m[:3], got, err, slices.Sorted(maps.Keys(kv)))
			}
			for k, v := range kv {
				keys = append(keys, types.StateKey{Module: m, Key: []byte(k)})
				want = append(want, v)
			}
		}
		absent := types.StateKey{Module: types.Address{0xbb}, Key: []byte{0}}
		keys, want = append(keys, absent), append(want, nil)
		got, err := s.GetMany(ctx, keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			v, err := s.Get(ctx, k)
			if err != nil || !bytes.Equal(v, want[i]) || !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: Get %x, %v, GetMany %x; want %x", k, v, err, got[i], want[i])
			}
		}
		auditClean(t, s)
	}
	opts := Options{moduleIDsMax: 300}
	t.Run("pebble", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		s, err := OpenPebble(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, 1, ws)
		check(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = OpenPebble(dir, opts); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if n := len(s.modules.view.Load().ids); n != 300 {
			t.Fatalf("%d module ids after reopening, want 300", n)
		}
		check(t, s)
	})
	t.Run("memory", func(t *testing.T) {
		s, err := Open(ctx, dssync.MutexWrap(ds.NewMapDatastore()), opts)
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, 1, ws)
		check(t, s)
	})
}

// A module without an id while the table has ids left has no flat index
// entries: reads of it find nothing without a datastore key, and its first
// write gives it an id and makes it readable.
func TestFlatIndexModuleWithoutID(t *testing.T) {
	ctx := context.Background()
	s := openPebble(t)
	m := types.Address{9}
	k := types.StateKey{Module: m, Key: []byte("a")}
	if v, err := s.Get(ctx, k); v != nil || err != nil {
		t.Fatalf("Get before any write: %x, %v", v, err)
	}
	if err := s.Iterate(ctx, m, nil, func(_, _ []byte) error { return errors.New("called") }); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, []Write{{Key: k, Value: []byte("1")}})
	if v, err := s.Get(ctx, k); string(v) != "1" || err != nil {
		t.Fatalf("Get after the write: %q, %v", v, err)
	}
	if _, ok := s.modules.id(string(m[:])); !ok {
		t.Fatal("the write did not assign an id")
	}
}

// A flat index entry naming a module id the table does not hold is
// corrupt: Audit fails with ErrCorrupt naming the rule.
func TestAuditFlatEntryUnknownModuleID(t *testing.T) {
	ctx := context.Background()
	s := openPebble(t)
	mustCommit(t, s, 1, moduleWrites(rand.New(rand.NewPCG(1, 1)), addrs(7, 3), 30))
	auditClean(t, s)
	if err := s.d.Put(ctx, ds.RawKey(nsKV+"\x09/ka"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Audit(ctx); !errors.Is(err, ErrCorrupt) || !errors.Is(err, errModuleID) {
		t.Fatalf("Audit with a flat entry of id 9 in a table of 3: %v", err)
	}
}

// TestNodesResolveModuleIDs: a node keeps its leaves' module ids, not
// their addresses (entry.mod), and every read of a leaf must put the right
// address back. The ids go against address order (the later, lower
// address has the higher id), a third module is past the limit (inline),
// the three modules use the same key bytes (a wrong module is another live
// key, with another value) and share nodes. Every version reads back
// through the tree, walks its leaves, proves present and absent keys
// (absence by another leaf included) and exports a snapshot that imports
// to the same root, on the store that made the nodes and after a reopen
// (decoded nodes); and every cached node's leaves hash from the keys they
// give back.
func TestNodesResolveModuleIDs(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	hi, lo, past := types.Address{9, 9}, types.Address{1, 1}, types.Address{5, 5}
	blocks := [][]Write{
		moduleWrites(r, []types.Address{hi}, 200),
		moduleWrites(r, []types.Address{lo, past, hi}, 600),
		moduleWrites(r, []types.Address{past, lo}, 100),
	}
	models := make([]map[string][]byte, len(blocks))
	latest := map[string][]byte{}
	for h, ws := range blocks {
		for _, w := range ws {
			latest[modelKey(w.Key)] = w.Value
		}
		models[h] = maps.Clone(latest)
	}
	dir := t.TempDir()
	opts := Options{moduleIDsMax: 2}
	s, err := OpenPebble(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for h, ws := range blocks {
		mustCommit(t, s, uint64(h+1), ws)
	}
	if id, _ := s.modules.id(string(hi[:])); id != 1 {
		t.Fatalf("module %x has id %d, want 1", hi, id)
	}
	if id, _ := s.modules.id(string(lo[:])); id != 2 {
		t.Fatalf("module %x has id %d, want 2", lo, id)
	}
	if _, ok := s.modules.id(string(past[:])); ok {
		t.Fatal("a module past the limit has an id")
	}
	check := func(s *Store, what string) {
		t.Helper()
		var absentByLeaf int
		for h, model := range models {
			v, err := s.View(ctx, uint64(h+1))
			if err != nil {
				t.Fatal(err)
			}
			for mk, want := range model {
				k := splitKey(mk)
				if got, err := v.Get(ctx, k); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: version %d, %s: %x, %v; want %x", what, h+1, k, got, err, want)
				}
			}
			walked := 0
			err = v.Leaves(ctx, func(kp types.Hash, k types.StateKey, value []byte) error {
				walked++
				if want, ok := model[modelKey(k)]; !ok || !bytes.Equal(value, want) || kp != types.KeyPath(k) {
					t.Fatalf("%s: version %d walks leaf %s = %x; want %x", what, h+1, k, value, want)
				}
				return nil
			})
			if err != nil || walked != len(model) {
				t.Fatalf("%s: version %d walks %d leaves, %v; want %d", what, h+1, walked, err, len(model))
			}
			// Every key of every module at this version, present or not:
			// the absent ones meet other modules' leaves on their paths.
			for _, m := range []types.Address{hi, lo, past} {
				var keys []types.StateKey
				for i := range 900 {
					keys = append(keys, types.StateKey{Module: m, Key: []byte{'k', byte(i), byte(i >> 8)}})
				}
				p, err := v.Prove(ctx, keys...)
				if err != nil {
					t.Fatal(err)
				}
				if err := types.Verify(v.Root(), p); err != nil {
					t.Fatalf("%s: version %d: %v", what, h+1, err)
				}
				if len(p.Entries) != len(keys) {
					t.Fatalf("%s: version %d: %d proof entries for %d keys", what, h+1, len(p.Entries), len(keys))
				}
				for _, e := range p.Entries {
					if want := model[modelKey(e.Key)]; !bytes.Equal(e.Value, want) {
						t.Fatalf("%s: version %d proves %s = %x; want %x", what, h+1, e.Key, e.Value, want)
					}
					if e.Other != nil {
						absentByLeaf++
					}
				}
			}
			v.Close()
		}
		if absentByLeaf == 0 {
			t.Fatalf("%s: no proof of absence by another leaf", what)
		}
		h, root := s.Latest()
		m, chunks := export(t, s, h, 100)
		dst := OpenOnFSStore(t, vfs.NewMem(), Options{moduleIDsMax: 2})
		importAll(t, dst, m, chunks)
		if _, got := dst.Latest(); got != root {
			t.Fatalf("%s: snapshot imports to root %s, want %s", what, got, root)
		}
		// The cached nodes: decoded ones after a reopen, the commits'
		// own before. Both kinds of leaf must be there.
		var byID, inline int
		s.cache.mu.Lock()
		defer s.cache.mu.Unlock()
		for _, gen := range []map[uint64]*node{s.cache.cur, s.cache.prev} {
			for _, n := range gen {
				for j, e := range n.entries() {
					if e.kind != slotLeaf {
						continue
					}
					if e.mod != 0 {
						byID++
					} else {
						inline++
					}
					sl := n.at(j)
					if types.LeafHash(types.KeyPath(sl.key()), sl.vh()) != sl.h {
						t.Fatalf("%s: a cached leaf of module id %d does not hash from its key %s", what, e.mod, sl.key())
					}
				}
			}
		}
		if byID == 0 || inline == 0 {
			t.Fatalf("%s: cached leaves: %d by module id, %d inline; want both", what, byID, inline)
		}
	}
	check(s, "committed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenPebble(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s, "reopened")
	auditClean(t, s)
}

// TestCommitCollapsesToLeafOfModuleID: a commit works on a node's leaves
// as the node keeps them (module ids, patchSlots), and a node that a delete
// leaves with one leaf collapses into it: when that leaf becomes the root,
// the version's root (in memory and in its root record) must hold the
// leaf's whole data, address included.
func TestCommitCollapsesToLeafOfModuleID(t *testing.T) {
	ctx := context.Background()
	m := types.Address{3, 1}
	k1, k2 := types.StateKey{Module: m, Key: []byte("a")}, types.StateKey{Module: m, Key: []byte("b")}
	dir := t.TempDir()
	s, err := OpenPebble(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, 1, []Write{{Key: k1, Value: []byte{1}}, {Key: k2, Value: []byte{2}}})
	if id, ok := s.modules.id(string(m[:])); !ok || id != 1 {
		t.Fatalf("module id %d, %v", id, ok)
	}
	if s.root.kind != slotChild {
		t.Fatal("two keys without a node")
	}
	mustCommit(t, s, 2, []Write{{Key: k1}})
	check := func(what string) {
		t.Helper()
		v, err := s.View(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if got, err := v.Get(ctx, k2); err != nil || !bytes.Equal(got, []byte{2}) {
			t.Fatalf("%s: %s = %x, %v", what, k2, got, err)
		}
		p, err := v.Prove(ctx, k1, k2)
		if err != nil {
			t.Fatal(err)
		}
		if err := types.Verify(v.Root(), p); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, e := range p.Entries {
			var want []byte
			if modelKey(e.Key) == modelKey(k2) {
				want = []byte{2}
			}
			if !bytes.Equal(e.Value, want) {
				t.Fatalf("%s: proves %s = %x, want %x", what, e.Key, e.Value, want)
			}
		}
	}
	check("committed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenPebble(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("reopened")
	auditClean(t, s)
}
