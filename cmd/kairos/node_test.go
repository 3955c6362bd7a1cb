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

// TestDevnetDemoExits runs `kairos devnet --exit` on free 127.0.0.1 ports:
// the demo deploys the WAT counter, calls it, verifies a proof against a
// checkpoint certificate and exits cleanly. (The Go token's workload is
// tested in node/devnet; --contracts points where no token is built.)
func TestDevnetDemoExits(t *testing.T) {
	dir := t.TempDir()
	out, err := runKairos(t, "devnet", "--exit", "--dir", filepath.Join(dir, "net"), "--api", "127.0.0.1:0",
		"--contracts", dir, "--counter", "../../contracts/counter_wat/counter.wasm", "--timeout", "60s")
	if err != nil {
		t.Fatalf("devnet: %v\n%s", err, out)
	}
	for _, want := range []string{"peers: each of the 4 validators", "deployed counter (WAT)", "proof verified", "validator 3 stops at height"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
