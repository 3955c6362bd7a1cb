package deploy_test

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

var cfg = deploy.Config()

// TestCodeCID recomputes the CID by hand: "b" + base32 of
// <version 1><raw 0x55><sha2-256 0x12><32> <digest>.
func TestCodeCID(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("kairos"), New().Bytes()} {
		d := sha256.Sum256(b)
		want := "b" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(append([]byte{0x01, 0x55, 0x12, 0x20}, d[:]...)))
		if got := deploy.CodeCID(b).String(); got != want {
			t.Errorf("CodeCID(%q) = %s, want %s", b, got, want)
		}
	}
}

func TestPrepare(t *testing.T) {
	b := New()
	b.Func("f", nil, I32s, nil, I32(1))
	p, err := deploy.Prepare(b.Bytes(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.MeterVersion != meter.Version || p.Instrumented == nil || len(p.Uses) == 0 || !p.CodeCID.Equals(deploy.CodeCID(b.Bytes())) {
		t.Fatalf("%+v", p)
	}
	if _, err := wasm.Decode(p.Instrumented); err != nil {
		t.Fatal(err)
	}
	// A rejected module keeps its CID and gets no instrumented bytes.
	b.M.Memories = []wasm.Limits{{Min: 10_000}}
	p, err = deploy.Prepare(b.Bytes(), cfg)
	if !errors.Is(err, validate.ErrMemoryTooLarge) || p.Instrumented != nil || !p.CodeCID.Defined() {
		t.Fatalf("%v %+v", err, p)
	}
}

func TestParseHostFunc(t *testing.T) {
	i32, i64 := wasm.I32, wasm.I64
	for _, c := range []struct {
		in   string
		want validate.HostFunc
		ok   bool
	}{
		{"kairos.state_get(i32,i32,i32,i32)->i32", validate.HostFunc{Module: "kairos", Name: "state_get", Type: wasm.FuncType{Params: []wasm.ValType{i32, i32, i32, i32}, Results: []wasm.ValType{i32}}}, true},
		{"kairos.block_height() -> (i64)", validate.HostFunc{Module: "kairos", Name: "block_height", Type: wasm.FuncType{Results: []wasm.ValType{i64}}}, true},
		{"a.b.c(i64)", validate.HostFunc{Module: "a.b", Name: "c", Type: wasm.FuncType{Params: []wasm.ValType{i64}}}, true},
		{"kairos.x", validate.HostFunc{}, false},
		{".x()", validate.HostFunc{}, false},
		{"kairos.x(v128)", validate.HostFunc{}, false},
		{"kairos.x() i32", validate.HostFunc{}, false},
		{"kairos.x()->(f32,bad)", validate.HostFunc{}, false},
	} {
		got, err := deploy.ParseHostFunc(c.in)
		if (err == nil) != c.ok || c.ok && !(got.Module == c.want.Module && got.Name == c.want.Name && got.Type.Equal(c.want.Type)) {
			t.Errorf("%q: %+v, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, deploy.ErrBadHostFunc) {
			t.Errorf("%q: %v is not ErrBadHostFunc", c.in, err)
		}
	}
}

// TestImportsMatchABIDoc: the allow-list is exactly the functions of the
// normative tables of docs/abi.md (sections 4 and 8), in order, and a
// module importing every one of them deploys; one more WASI import does
// not.
func TestImportsMatchABIDoc(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "../../docs/abi.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `((?:kairos|wasi_snapshot_preview1)\\.[a-z0-9_]+)` \\| `([^`]+)` \\|")
	var fromDoc []validate.HostFunc
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		f, err := deploy.ParseHostFunc(m[1] + strings.ReplaceAll(m[2], " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		fromDoc = append(fromDoc, f)
	}
	if got := deploy.Imports(); len(fromDoc) != 22+19 || !reflect.DeepEqual(got, fromDoc) {
		t.Fatalf("deploy.Imports() (%d) differs from docs/abi.md (%d):\n%v\n%v", len(got), len(fromDoc), got, fromDoc)
	}
	importing := func(fs []validate.HostFunc) []byte {
		b := New()
		for _, f := range fs {
			b.Import(f.Module, f.Name, f.Type.Params, f.Type.Results)
		}
		b.Func("run", nil, nil, nil)
		return b.Bytes()
	}
	if _, err := deploy.Prepare(importing(fromDoc), deploy.Config()); err != nil {
		t.Fatalf("a module importing every ABI function: %v", err)
	}
	extra := validate.HostFunc{Module: validate.WASIModule, Name: "sock_accept", Type: wasm.FuncType{Params: []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}, Results: I32s}}
	if _, err := deploy.Prepare(importing(append(fromDoc, extra)), deploy.Config()); !errors.Is(err, validate.ErrImportNotAllowed) {
		t.Fatalf("sock_accept: %v, want ErrImportNotAllowed", err)
	}
}
