package state

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/kairos-network/kairos/types"
)

// TestVersionBatchInKeyOrder builds each version's pebble batch
// (pebbleVersionBatch: id ranges encoded in parts) and checks it against the
// generic batch of the same version that a store without pebble writes
// (versionBatch through go-datastore, one Put per record): the same keys
// and values, and every key after the one before it, so that pebble's sort
// of a large batch finds it in order. Blocks below and above parallelMin,
// with updates, deletes of present and absent keys and inserts.
func TestVersionBatchInKeyOrder(t *testing.T) {
	ctx := context.Background()
	s, err := OpenPebble(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(8, 8))
	key := func(i int) types.StateKey {
		var k types.StateKey
		k.Module[0] = byte(i % 3)
		k.Module[1] = '.' // escaped in the datastore key
		k.Key = fmt.Appendf(nil, "k/%d", i)
		return k
	}
	for h, n := range []int{1, 700, 5, 300, 2000, 40} {
		height := uint64(h + 1)
		seen := map[int]bool{}
		var ws []Write
		for len(ws) < n {
			i := rng.IntN(3000)
			if seen[i] {
				continue
			}
			seen[i] = true
			var v []byte
			if rng.IntN(8) != 0 {
				v = fmt.Appendf(nil, "v%d.%d", i, h)
			}
			ws = append(ws, Write{Key: key(i), Value: v})
		}
		items, err := prepare(ws)
		if err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		old := s.root
		s.mu.Unlock()
		s.modules.assignWrites(items) // as Commit does
		c := &committer{s: s, ctx: ctx, height: height}
		o := &out{modules: s.modules.take()}
		root, err := c.update(o, old, 0, items)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.readOld(o); err != nil {
			t.Fatal(err)
		}
		got, deleted := batchEntries(t, s, height, root, o)

		// The same version through the generic path.
		m := ds.NewMapDatastore()
		generic := &Store{d: m, modules: s.modules}
		b, err := generic.commitBatch(ctx, height, root, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := m.Query(ctx, query.Query{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != len(got) {
			t.Fatalf("version %d: %d sets in the pebble batch, %d records in the generic one", height, len(got), len(want))
		}
		for _, e := range want {
			if v, ok := got[e.Key]; !ok || !bytes.Equal(v, e.Value) {
				t.Fatalf("version %d: key %q: pebble batch has %x (present %v), generic %x", height, e.Key, v, ok, e.Value)
			}
		}
		wantDeleted := 0
		for _, ch := range o.changes {
			if ch.New == nil {
				wantDeleted++
				if !deleted[mustKVKey(t, s.modules, ch.Key).String()] {
					t.Fatalf("version %d: no delete of %s", height, ch.Key)
				}
			}
		}
		if wantDeleted != len(deleted) {
			t.Fatalf("version %d: %d deletes, want %d", height, len(deleted), wantDeleted)
		}
		if _, err := s.Commit(ctx, height, ws); err != nil {
			t.Fatal(err)
		}
	}
}

// batchEntries builds version height's pebble batch and returns its sets
// and deletes by key, failing unless each key is greater than the one
// before.
func batchEntries(t *testing.T, s *Store, height uint64, root slot, o *out) (map[string][]byte, map[string]bool) {
	t.Helper()
	b, err := s.pebbleVersionBatch(height, root, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sets, deletes := map[string][]byte{}, map[string]bool{}
	var last []byte
	for r := b.Reader(); ; {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if last != nil && bytes.Compare(last, k) >= 0 {
			t.Fatalf("version %d: key %q after %q", height, k, last)
		}
		last = append(last[:0], k...)
		switch kind {
		case pebble.InternalKeyKindSet:
			sets[string(k)] = append([]byte{}, v...)
		case pebble.InternalKeyKindDelete:
			deletes[string(k)] = true
		default:
			t.Fatalf("version %d: entry of kind %v", height, kind)
		}
	}
	if int(b.Count()) != len(sets)+len(deletes) {
		t.Fatalf("version %d: batch counts %d entries, read %d", height, b.Count(), len(sets)+len(deletes))
	}
	return sets, deletes
}
