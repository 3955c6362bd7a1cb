package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/vm"
)

// A module with one exported function "f" () -> (), written out by hand.
var tinyModule = []byte{
	0, 'a', 's', 'm', 1, 0, 0, 0,
	1, 4, 1, 0x60, 0, 0, // type () -> ()
	3, 2, 1, 0, // one function of type 0
	7, 5, 1, 1, 'f', 0, 0, // export "f" = func 0
	10, 4, 1, 2, 0, 0x0B, // body: no locals, end
}

func runKairos(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestModuleCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.wasm")
	if err := os.WriteFile(good, tinyModule, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runKairos(t, "module", "check", good)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"code cid", "bafkrei", "31 bytes", "  f ", "functions", "1 / 20000", "instrumenter version", "\nOK\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// An import that is not allowed, then allowed with --allow.
	withImport := append([]byte{}, tinyModule[:8]...)
	withImport = append(withImport,
		1, 4, 1, 0x60, 0, 0,
		2, 12, 1, 6, 'k', 'a', 'i', 'r', 'o', 's', 1, 'x', 0, 0)
	withImport = append(withImport, tinyModule[14:]...)
	withImport[bytes.Index(withImport, []byte{'f', 0, 0})+2] = 1 // export the defined function, now index 1
	bad := filepath.Join(dir, "import.wasm")
	if err := os.WriteFile(bad, withImport, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runKairos(t, "module", "check", bad)
	if !errors.Is(err, validate.ErrImportNotAllowed) || !strings.Contains(out, "REJECTED: validate: import not allowed") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
	if out, err = runKairos(t, "module", "check", "--allow", "kairos.x()", bad); err != nil {
		t.Fatalf("with --allow: %v\n%s", err, out)
	}
	if _, err = runKairos(t, "module", "check", "--allow", "kairos.x(i128)", bad); err == nil {
		t.Fatal("a bad --allow was accepted")
	}

	// Structurally valid but ill-typed (the body returns nothing for an
	// i32 result): only the engine's compile can tell.
	illTyped := []byte{
		0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 5, 1, 0x60, 0, 1, 0x7F, // type () -> (i32)
		3, 2, 1, 0,
		7, 5, 1, 1, 'f', 0, 0,
		10, 4, 1, 2, 0, 0x0B, // the body leaves nothing on the stack
	}
	ill := filepath.Join(dir, "ill.wasm")
	if err := os.WriteFile(ill, illTyped, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runKairos(t, "module", "check", ill)
	if !errors.Is(err, vm.ErrCompile) || !strings.Contains(out, "REJECTED: vm: compile failed") {
		t.Fatalf("ill-typed module: %v\n%s", err, out)
	}
}

// TestModuleCheckDeployable: check accepts the modules a deploy accepts,
// with no --allow: the WAT counter (kairos imports) and a Go contract
// built as `make contracts` does (kairos and WASI imports).
func TestModuleCheckDeployable(t *testing.T) {
	gobin := filepath.Join(t.TempDir(), "counter.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", gobin, "./contracts/counter")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building contracts/counter: %v\n%s", err, msg)
	}
	for _, c := range []struct {
		file    string
		imports []string
	}{
		{"../../contracts/counter_wat/counter.wasm", []string{"  kairos."}},
		{gobin, []string{"  kairos.", "  wasi_snapshot_preview1."}},
	} {
		out, err := runKairos(t, "module", "check", c.file)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.file, err, out)
		}
		for _, want := range append(c.imports, "ok (wazero compiler engine", "\nOK\n") {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", c.file, want, out)
			}
		}
	}
}
