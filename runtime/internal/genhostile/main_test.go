package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCorpusIsCommitted: the committed fixtures are exactly what the
// generator writes (regenerate with `go run ./runtime/internal/genhostile`
// from the repository root).
func TestCorpusIsCommitted(t *testing.T) {
	dir := "../../testdata/hostile"
	c := corpus()
	files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(c) {
		t.Errorf("%d fixtures in %s, the generator writes %d", len(files), dir, len(c))
	}
	for _, name := range names(c) {
		b, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil || !bytes.Equal(b, c[name]) {
			t.Errorf("%s.wasm is stale or missing (%v): regenerate", name, err)
		}
	}
}
