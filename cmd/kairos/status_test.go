package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/sdk"
)

// TestClientCommands drives a real in-process devnet with the client
// commands only: keys new/show, deploy the WAT counter, call it, query the
// count with and without --prove, status; and checks their bad input.
func TestClientCommands(t *testing.T) {
	dir := t.TempDir()
	d, err := devnet.Start(devnet.Config{Dir: filepath.Join(dir, "net")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	api := strings.TrimPrefix(d.APIs[2], "http://")
	run := func(args ...string) string {
		t.Helper()
		out, err := runKairos(t, append(args, "--api", api)...)
		if err != nil {
			t.Fatalf("kairos %v: %v\n%s", args, err, out)
		}
		return out
	}
	keyFile := filepath.Join(dir, "me.key")
	out, err := runKairos(t, "keys", "new", keyFile)
	if err != nil {
		t.Fatal(err, out)
	}
	k, err := sdk.LoadKey(keyFile)
	if err != nil || strings.TrimSpace(out) != k.Address().String() {
		t.Fatalf("keys new printed %q, file holds %v (%v)", out, k, err)
	}
	if out, err := runKairos(t, "keys", "new", keyFile); err == nil {
		t.Fatalf("keys new overwrote a key: %s", out)
	}
	if out, err := runKairos(t, "keys", "show", keyFile); err != nil || !strings.Contains(out, k.Address().String()) {
		t.Fatalf("keys show: %v\n%s", err, out)
	}

	out = run("deploy", "../../contracts/counter_wat/counter.wasm", "--key", keyFile)
	m := regexp.MustCompile(`module +(\S+)`).FindStringSubmatch(out)
	if m == nil || m[1] != sdk.InstanceAddress(k.Address(), 1).String() {
		t.Fatalf("deploy output:\n%s", out)
	}
	mod := m[1]
	for _, want := range []string{"return   0000000000000001", "return   0000000000000002"} {
		if out = run("call", mod, "increment", "--key", keyFile); !strings.Contains(out, want) || !strings.Contains(out, "event") {
			t.Fatalf("call: want %q in\n%s", want, out)
		}
	}
	if out = run("query", mod, "05636f756e74"); !strings.Contains(out, "value    0000000000000002") {
		t.Fatalf("query:\n%s", out)
	}
	// --prove needs a checkpoint at or above the calls: retry until then.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err = runKairos(t, "query", mod, "05636f756e74", "--prove", "--api", api)
		if err == nil && strings.Contains(out, "value    0000000000000002") {
			break
		}
		if err != nil && !strings.Contains(err.Error(), "not_found") {
			t.Fatalf("query --prove: %v\n%s", err, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers the calls:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if out = run("status"); !strings.Contains(out, "validator   2") {
		t.Fatalf("status:\n%s", out)
	}

	for _, bad := range [][]string{
		{"call", "nope", "increment", "--key", keyFile},
		{"call", mod, "increment", "zz", "--key", keyFile},
		{"call", mod, "increment"},
		{"call", mod, "no_such_method", "--key", keyFile},
		{"query", mod, "zz"},
		{"query", mod, "00", "--prove", "--validators", "0"},
		{"query", mod, "00", "--prove", "--genesis", filepath.Join(dir, "missing.toml")},
		{"deploy", filepath.Join(dir, "missing.wasm"), "--key", keyFile},
		{"keys", "show", filepath.Join(dir, "missing.key")},
	} {
		if out, err := runKairos(t, append(bad, "--api", api)...); err == nil {
			t.Errorf("kairos %v succeeded:\n%s", bad, out)
		}
	}
}
