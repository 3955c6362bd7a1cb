package state

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// spanClass is the namespace a test key was made in, named independently
// of nsBounds: one of the namespaces, or "between" for the single records
// (latest, min…) and "after" for keys past the last namespace (other
// packages' records in the same database).
func spanClass(k []byte) string {
	for _, ns := range []string{nsChanges, nsHist, nsKV, nsNode, nsPin, nsRoot, nsStale} {
		if bytes.HasPrefix(k, []byte(ns)) {
			return ns
		}
	}
	if bytes.Compare(k, []byte(nsStale)) > 0 {
		return "after"
	}
	return "between"
}

// spanTestKeys returns keys of every namespace and of the records between
// and after them, made by the store's own key functions, sorted.
func spanTestKeys(r *rand.Rand) [][]byte {
	var keys [][]byte
	add := func(s string) { keys = append(keys, []byte(s)) }
	ids := kvTestTable()
	for i := 0; i < 200; i++ {
		var id types.Hash
		for j := range id {
			id[j] = byte(r.IntN(256))
		}
		h := r.Uint64N(1 << 20)
		add(nodeKey(h, id).String())
		add(histKey(id, h).String())
		inline, _ := (*moduleTable)(nil).kvKey(randStateKey(r))
		add(inline.String())
		byID, _ := ids.kvKey(types.StateKey{Module: kvTestModule(r.IntN(300)), Key: randKeyBytes(r, 3)})
		add(byID.String())
		add(moduleKey(h).String())
		add(rootKey(h).String())
		add(staleKey(h).String())
		add(changesKey(h).String())
		add(pinKey(h).String())
	}
	for _, k := range []string{keyLatest.String(), keyMin.String(), keyPruneDone.String(), keyFormat.String(),
		snapStageChunkPrefix + "x", "/node/log/1", "/node/block/2", "/kairos", "/kairos/"} {
		add(k)
	}
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal)
}

// A span that namespaceSpans returns for a key covers the rest of that
// key's namespace and ends at or before the first key of another one, so a
// table never holds two namespaces and need not be split within one.
func TestNamespaceSpans(t *testing.T) {
	if !slices.IsSortedFunc(nsBounds, bytes.Compare) {
		t.Fatal("nsBounds not sorted")
	}
	keys := spanTestKeys(rand.New(rand.NewPCG(1, 2)))
	for i, k := range keys {
		_, end, err := namespaceSpans(k)
		if err != nil {
			t.Fatal(err)
		}
		if end != nil && bytes.Compare(end, k) <= 0 {
			t.Fatalf("span of %q ends at %q, not after it", k, end)
		}
		for _, j := range keys[i+1:] {
			inSpan := end == nil || bytes.Compare(j, end) < 0
			same := spanClass(j) == spanClass(k)
			if !same && inSpan {
				t.Fatalf("span of %q (%s) holds %q (%s)", k, spanClass(k), j, spanClass(j))
			}
			if same && spanClass(k) != "between" && !inSpan {
				t.Fatalf("span of %q ends at %q inside its namespace, before %q", k, end, j)
			}
		}
	}
}

// Pebble with the store's options writes no table, by a flush or a
// compaction, that holds keys of two namespaces.
func TestTablesStayInNamespace(t *testing.T) {
	var mu sync.Mutex
	var tables []pebble.TableInfo
	o := pebbleOptions()
	o.FS = vfs.NewMem()
	o.AddEventListener(pebble.EventListener{
		FlushEnd: func(fi pebble.FlushInfo) {
			mu.Lock()
			defer mu.Unlock()
			tables = append(tables, fi.Output...)
		},
		CompactionEnd: func(ci pebble.CompactionInfo) {
			mu.Lock()
			defer mu.Unlock()
			tables = append(tables, ci.Output.Tables...)
		},
	})
	db, err := pebble.Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := spanTestKeys(rand.New(rand.NewPCG(3, 4)))
	for _, k := range keys {
		if err := db.Set(k, []byte("v"), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(t.Context(), []byte("/"), []byte("/\xff"), false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	classes := map[string]bool{}
	for _, ti := range tables {
		lo, hi := spanClass(ti.Smallest.UserKey), spanClass(ti.Largest.UserKey)
		if lo != hi {
			t.Errorf("table %s holds %q (%s) to %q (%s)", ti.FileNum, ti.Smallest.UserKey, lo, ti.Largest.UserKey, hi)
		}
		classes[lo] = true
	}
	if len(classes) != 9 {
		t.Fatalf("tables covered %d of the 9 classes of keys: %v", len(classes), classes)
	}
}
