package wasmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// GoGuestSource is a standard Go guest: an integer export, an
// allocation-heavy export (the GC runs and reads the clock), a float export,
// a counter, clock and randomness, fmt (and so os), and the runtime's own
// use of WASI in _initialize.
const GoGuestSource = `package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

//go:wasmexport add
func add(a, b int32) int32 { return a + b }

var keep = map[int]int{}

//go:wasmexport churn
func churn(n int32) int32 {
	s := 0
	for i := 0; i < int(n); i++ {
		b := make([]byte, 64+i%100)
		keep[i%50] = len(b)
		s += len(b)
	}
	return int32(s)
}

//go:wasmexport fdiv
func fdiv(a, b float64) int64 {
	return int64(math.Float64bits(a / b))
}

var bumps int32

// bump shows whether state leaks between calls: 1 on a restored instance.
//
//go:wasmexport bump
func bump() int32 { bumps++; return bumps }

// now and random read the virtual WASI clock and the seeded randomness.
//
//go:wasmexport now
func now() int64 { return time.Now().UnixNano() }

//go:wasmexport random
func random() int64 { return rand.Int64() }

// hello uses fmt, which brings in os and its stdio file-descriptor probing.
//
//go:wasmexport hello
func hello(n int32) int32 { return int32(len(fmt.Sprintf("hello %d", n))) }

func main() {}
`

var goGuest struct {
	sync.Mutex
	wasm []byte
	err  string
}

// GoGuest returns GoGuestSource compiled with the local Go toolchain. It is
// built once per test process; the test is skipped only when there is no go
// command.
func GoGuest(t testing.TB) []byte {
	t.Helper()
	goGuest.Lock()
	defer goGuest.Unlock()
	if goGuest.wasm == nil && goGuest.err == "" {
		goGuest.wasm, goGuest.err = buildGoGuest(t)
	}
	if goGuest.err != "" {
		t.Fatal(goGuest.err)
	}
	return goGuest.wasm
}

func buildGoGuest(t testing.TB) ([]byte, string) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the Go guest")
	}
	dir, err := os.MkdirTemp("", "kairos-goguest-")
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(dir)
	files := map[string]string{
		"go.mod":  "module guest\n\ngo 1.26\n",
		"main.go": GoGuestSource,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err.Error()
		}
	}
	out := filepath.Join(dir, "guest.wasm")
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, "building the Go guest: " + err.Error() + "\n" + string(msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err.Error()
	}
	return b, ""
}
