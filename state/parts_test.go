package state

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestPartBatchesReused: with two cores or more a large version's batch is
// built in parts, and the parts' batches are kept for the next version
// instead of being allocated again; the versions written through reused
// parts must read back whole (a part not emptied would carry the last
// version's records into the next, which TestVersionBatchInKeyOrder
// checks entry by entry).
func TestPartBatchesReused(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one core: a version's batch is one part")
	}
	ctx := context.Background()
	s, err := OpenPebble(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := func(i int) types.StateKey { return types.StateKey{Key: fmt.Appendf(nil, "k%d", i)} }
	// Enough keys for parallelMin node records in every version (format 3
	// writes no value records).
	const keys = 3000
	var kept []any
	for h := 1; h <= 4; h++ {
		ws := make([]Write, keys)
		for i := range ws {
			ws[i] = Write{Key: key(i), Value: fmt.Appendf(nil, "v%d.%d", i, h)}
		}
		mustCommit(t, s, uint64(h), ws)
		s.parts.mu.Lock()
		if len(s.parts.free) == 0 {
			s.parts.mu.Unlock()
			t.Fatalf("version %d kept no part batch", h)
		}
		kept = append(kept, s.parts.free[0])
		s.parts.mu.Unlock()
	}
	if kept[1] != kept[2] || kept[2] != kept[3] {
		t.Fatal("each version allocated its part batch anew")
	}
	for i := range keys {
		if v, err := s.Get(ctx, key(i)); err != nil || string(v) != fmt.Sprintf("v%d.4", i) {
			t.Fatalf("key %d: %q, %v", i, v, err)
		}
	}
}
