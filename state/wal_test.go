package state

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestPebbleDoesNotRecycleLogs: with the store's options pebble deletes
// the write-ahead log of a flushed memtable instead of keeping it to
// recycle (logDeleter), so after many flushes the directory holds the
// live log and at most one awaiting its deletion, where a recycling pebble
// keeps three more. It waits for pebble's asynchronous cleanup with a
// deadline; it does not time anything.
func TestPebbleDoesNotRecycleLogs(t *testing.T) {
	dir := t.TempDir()
	o := pebbleOptions()
	o.MemTableSize = 1 << 20
	db, err := pebble.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 4096)
	for f := range 8 {
		for i := range 64 {
			if err := db.Set(fmt.Appendf(nil, "%s%02d-%04d", nsNode, f, i), val, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if logs, err = filepath.Glob(filepath.Join(dir, "*.log")); err != nil {
			t.Fatal(err)
		}
		if len(logs) <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d write-ahead logs after 8 flushes, want at most 2 (recycled?): %v", len(logs), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "archive")); !os.IsNotExist(err) {
		t.Fatalf("pebble archived files instead of deleting them: %v", err)
	}
}
