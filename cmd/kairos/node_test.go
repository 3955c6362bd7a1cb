package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/node/config"
)

func TestInitThenNodeConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	out, err := runKairos(t, "init", "--dir", dir, "--validators", "4")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if got := strings.Count(out, "kairos node --home "); got != 4 {
		t.Fatalf("init printed %d node commands:\n%s", got, out)
	}
	if _, err := config.Load(filepath.Join(dir, "3")); err != nil {
		t.Fatalf("home 3 does not load: %v", err)
	}
	if _, err := runKairos(t, "node", "--home", filepath.Join(dir, "missing")); !errors.Is(err, config.ErrConfig) {
		t.Fatalf("node with a missing home: %v, want %v", err, config.ErrConfig)
	}
}
