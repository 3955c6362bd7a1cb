package contracts

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kairos-network/kairos/contracts/internal/wasmfile"
	"github.com/kairos-network/kairos/sdk/guest"
)

// goModules lists every Go example module and the methods it must export.
var goModules = map[string][]string{
	"counter":  {"get", "increment"},
	"token":    {"allowance", "approve", "balance", "init", "mint", "total_supply", "transfer", "transfer_from"},
	"registry": {"init", "lookup", "register", "renew", "transfer"},
	"caller":   {"bump", "init", "try_call"},
}

// runtimeWASI are the WASI functions the Go runtime imports by itself
// (docs/abi.md section 8: "a module importing only sdk/guest imports the
// first 10"). The example modules must stay within them.
var runtimeWASI = []string{
	"args_get", "args_sizes_get", "clock_time_get", "environ_get", "environ_sizes_get",
	"fd_write", "poll_oneoff", "proc_exit", "random_get", "sched_yield",
}

// abiDoc is what the normative tables of docs/abi.md say.
type abiDoc struct {
	imports map[string]string // "kairos.state_get" → "(i32, i32, i32, i32) -> i32"
	limits  map[string]int64  // "KeyLenMax" → 1024
}

var (
	importRow = regexp.MustCompile("^\\| `((?:kairos|wasi_snapshot_preview1)\\.[a-z0-9_]+)` \\| `(\\([^`]*\\) -> [^`]+)` \\|")
	limitRow  = regexp.MustCompile("^\\| `([A-Z][A-Za-z0-9]+)` \\| ([0-9][0-9 ]*)")
)

func readABIDoc(t *testing.T) abiDoc {
	t.Helper()
	f, err := os.Open("../docs/abi.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := abiDoc{imports: map[string]string{}, limits: map[string]int64{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := importRow.FindStringSubmatch(sc.Text()); m != nil {
			d.imports[m[1]] = m[2]
		}
		if m := limitRow.FindStringSubmatch(sc.Text()); m != nil {
			n, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(m[2]), " ", ""), 10, 64)
			if err != nil {
				t.Fatalf("limit %s: %v", m[1], err)
			}
			d.limits[m[1]] = n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.imports) < 40 || len(d.limits) < 15 {
		t.Fatalf("docs/abi.md tables not found: %d imports, %d limits", len(d.imports), len(d.limits))
	}
	return d
}

// TestLimitsMatchDoc keeps the SDK's limit constants equal to the table in
// docs/abi.md section 5 (the host implements the same table).
func TestLimitsMatchDoc(t *testing.T) {
	doc := readABIDoc(t)
	sdk := map[string]int64{
		"MemoryPagesMax": guest.MemoryPagesMax, "MethodNameLenMax": guest.MethodNameLenMax,
		"InputLenMax": guest.InputLenMax, "ReturnLenMax": guest.ReturnLenMax, "KeyLenMax": guest.KeyLenMax,
		"ValueLenMax": guest.ValueLenMax, "IteratorsOpenMax": guest.IteratorsOpenMax,
		"EventTopicLenMax": guest.EventTopicLenMax, "EventDataLenMax": guest.EventDataLenMax,
		"EventsPerTxMax": guest.EventsPerTxMax, "CallDepthMax": guest.CallDepthMax,
		"HashInputLenMax": guest.HashInputLenMax, "AbortMsgLenMax": guest.AbortMsgLenMax,
		"DebugLogLenMax": guest.DebugLogLenMax, "InitGasMax": guest.InitGasMax,
	}
	for name, v := range sdk {
		if got, ok := doc.limits[name]; !ok || got != v {
			t.Errorf("%s: sdk/guest has %d, docs/abi.md has %d (present %v)", name, v, got, ok)
		}
	}
}

// checkModule applies the module-shape rules of docs/abi.md section 1 that
// can be read from the binary, and returns the exported method names.
func checkModule(t *testing.T, doc abiDoc, name string, b []byte, wasi []string) []string {
	t.Helper()
	m, err := wasmfile.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, im := range m.Imports {
		key := im.Module + "." + im.Name
		want, ok := doc.imports[key]
		switch {
		case im.Kind != wasmfile.KindFunc:
			t.Errorf("%s imports %s of kind %d; only functions may be imported", name, key, im.Kind)
		case !ok:
			t.Errorf("%s imports %s, which docs/abi.md does not list", name, key)
		case im.Type.String() != want:
			t.Errorf("%s imports %s as %s, docs/abi.md says %s", name, key, im.Type, want)
		case im.Module == "wasi_snapshot_preview1" && !slices.Contains(wasi, im.Name):
			t.Errorf("%s imports %s, outside the WASI functions allowed for it", name, key)
		}
	}
	if len(m.Memories) != 1 || m.Memories[0].Min > guest.MemoryPagesMax || m.Memories[0].Max > guest.MemoryPagesMax || m.Memories[0].Shared {
		t.Errorf("%s: memories %+v, want one unshared memory within %d pages", name, m.Memories, guest.MemoryPagesMax)
	}
	if m.HasStart {
		t.Errorf("%s has a start section", name)
	}
	var methods []string
	hasMemory := false
	for _, e := range m.Exports {
		switch {
		case e.Kind == wasmfile.KindMemory && e.Name == "memory":
			hasMemory = true
		case e.Kind != wasmfile.KindFunc:
			t.Errorf("%s exports %q of kind %d", name, e.Name, e.Kind)
		case e.Type.String() != "() -> ()":
			t.Errorf("%s exports %s with signature %s, want () -> ()", name, e.Name, e.Type)
		case e.Name == "_initialize":
		case guest.ValidMethodName(e.Name) && e.Name != "gas_left":
			methods = append(methods, e.Name)
		default:
			t.Errorf("%s exports %q, not a method name", name, e.Name)
		}
	}
	if !hasMemory {
		t.Errorf("%s does not export its memory as \"memory\"", name)
	}
	slices.Sort(methods)
	return methods
}

// TestWATModuleFollowsABI checks the committed counter.wasm (built from
// counter.wat with wabt) without needing wabt.
func TestWATModuleFollowsABI(t *testing.T) {
	doc := readABIDoc(t)
	b, err := os.ReadFile("counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if got := checkModule(t, doc, "counter_wat", b, nil); !slices.Equal(got, goModules["counter"]) {
		t.Fatalf("counter_wat methods %v, want those of the Go counter %v", got, goModules["counter"])
	}
}

// TestGoModulesBuildAndFollowABI builds every Go example module for wasip1,
// as `make contracts` does, and checks its imports and exports against
// docs/abi.md. It is what proves the modules compile to wasm.
func TestGoModulesBuildAndFollowABI(t *testing.T) {
	doc := readABIDoc(t)
	dir := t.TempDir()
	names := make([]string, 0, len(goModules))
	for n := range goModules {
		names = append(names, n)
	}
	slices.Sort(names)
	names = append(names, "internal/allimports")
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 2) // at most two compilers on a 2-core machine
		outs = make([][]byte, len(names))
		errs = make([]error, len(names))
	)
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", filepath.Join(dir, filepath.Base(n)+".wasm"), "./"+n)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i, n := range names {
		if errs[i] != nil {
			t.Errorf("build %s: %v\n%s", n, errs[i], outs[i])
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.Base(n)+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		got := checkModule(t, doc, n, b, runtimeWASI)
		if n == "internal/allimports" {
			checkAllKairosImports(t, doc, b)
		} else if !slices.Equal(got, goModules[n]) {
			t.Errorf("%s exports methods %v, want %v", n, got, goModules[n])
		}
	}
}

// checkAllKairosImports requires the module built from
// internal/allimports, which calls every SDK function, to import every
// "kairos" function of docs/abi.md: together with checkModule's signature
// check, every //go:wasmimport of the SDK matches the document.
func checkAllKairosImports(t *testing.T, doc abiDoc, b []byte) {
	m, err := wasmfile.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	imported := map[string]bool{}
	for _, im := range m.Imports {
		imported[im.Module+"."+im.Name] = true
	}
	for name := range doc.imports {
		if strings.HasPrefix(name, "kairos.") && !imported[name] {
			t.Errorf("no SDK function imports %s", name)
		}
	}
}

// TestEveryModuleIsListed keeps goModules in step with the folders, so a
// new example module cannot skip the build check.
func TestEveryModuleIsListed(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(e.Name(), "main.go")); err == nil {
			if _, ok := goModules[e.Name()]; !ok {
				t.Errorf("contracts/%s is a module missing from goModules", e.Name())
			}
		}
	}
}
