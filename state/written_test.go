package state

import (
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestWrittenFiltersAgainstModel checks the filters against a plain map of
// which version wrote which id: notRewritten may only say yes when no
// version from since to the newest wrote the id (no false negatives), a gap
// in the registered versions disables the shortcut, and most unwritten ids
// are recognised (the filter is useful).
func TestWrittenFiltersAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	randID := func() types.Hash {
		var h types.Hash
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		return h
	}
	pool := make([]types.Hash, 400)
	for i := range pool {
		pool[i] = randID()
	}
	var w writtenFilters
	wrote := map[types.Hash]map[uint64]bool{}
	const first, last = 5, 40 // versions below first were written before "Open"
	for h := uint64(first); h <= last; h++ {
		var o out
		for range r.IntN(60) {
			id := pool[r.IntN(len(pool))]
			o.records = append(o.records, record{id: id})
			if wrote[id] == nil {
				wrote[id] = map[uint64]bool{}
			}
			wrote[id][h] = true
		}
		w.add(h, &o)
	}
	shortcuts, chances := 0, 0
	for since := uint64(1); since <= last; since++ {
		fs := w.covering(since, last)
		if (fs == nil) != (since < first) {
			t.Fatalf("since %d: covering %d filters", since, len(fs))
		}
		for _, id := range pool {
			rewritten := false
			for v := range wrote[id] {
				rewritten = rewritten || v >= since
			}
			got := notRewritten(fs, &id)
			if got && rewritten {
				t.Fatalf("since %d: id %x rewritten but filters say no", since, id)
			}
			if fs != nil && !rewritten {
				chances++
				if got {
					shortcuts++
				}
			}
		}
	}
	if chances == 0 || shortcuts < chances*9/10 {
		t.Fatalf("filters recognised %d of %d unwritten ids", shortcuts, chances)
	}
	w.dropBelow(last)
	if w.covering(last-1, last) != nil || w.covering(last, last) == nil {
		t.Fatal("dropBelow kept or lost the wrong filters")
	}
	w.dropBelow(last + 1)
	if w.size != 0 || len(w.byHeight) != 0 {
		t.Fatalf("after dropping all: %d bytes, %d filters", w.size, len(w.byHeight))
	}
}

// TestWrittenFiltersBounded checks that the filters' memory stays under
// its limit by dropping the oldest, which then fall back.
func TestWrittenFiltersBounded(t *testing.T) {
	w := writtenFilters{maxBytes: 10 << 10}
	o := out{records: make([]record, 1000)} // 16000 bits: a 2 KiB filter
	for h := uint64(1); h <= 20; h++ {
		w.add(h, &o)
		if w.size > w.maxBytes {
			t.Fatalf("height %d: %d bytes", h, w.size)
		}
	}
	if w.covering(20, 20) == nil || w.covering(1, 20) != nil {
		t.Fatal("expected the newest filter kept and the oldest dropped")
	}
}
