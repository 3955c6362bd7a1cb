package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestBenchStateCommand runs `kairos bench state` at a tiny size through the
// real command tree: the sub-command is registered, its flags reach the
// benchmark, and the table comes out on stdout.
func TestBenchStateCommand(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"bench", "state", "--keys", "300", "--block", "30", "--blocks", "4",
		"--keep", "2", "--samples", "2", "--dir", t.TempDir()})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"workload: 300 keys, 30-key blocks", "then 4 update blocks; K=2", "pebble floor"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	root.SetArgs([]string{"bench", "state", "--keys", "10", "--block", "20", "--dir", t.TempDir()})
	if err := root.Execute(); err == nil {
		t.Fatal("a block larger than the key count was accepted")
	}
}
