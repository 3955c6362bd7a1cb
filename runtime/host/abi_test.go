package host_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
)

// TestFuncsMatchABIDoc parses the normative tables of docs/abi.md
// (sections 4 and 8) and compares them with what the host and the virtual
// WASI register, name by name and signature by signature.
func TestFuncsMatchABIDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/abi.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `((?:kairos|wasi_snapshot_preview1)\\.[a-z0-9_]+)` \\| `([^`]+)` \\|")
	var fromDoc []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		f, err := deploy.ParseHostFunc(m[1] + strings.ReplaceAll(m[2], " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		fromDoc = append(fromDoc, sig(f))
	}
	var registered []string
	for _, f := range append(host.Funcs(), wasi.Funcs()...) {
		registered = append(registered, sig(f))
	}
	if len(fromDoc) != 22+19 || !slices.Equal(fromDoc, registered) {
		t.Fatalf("docs/abi.md (%d):\n%s\nregistered (%d):\n%s", len(fromDoc), strings.Join(fromDoc, "\n"), len(registered), strings.Join(registered, "\n"))
	}
}

func sig(f validate.HostFunc) string {
	return fmt.Sprintf("%s.%s%v->%v", f.Module, f.Name, f.Type.Params, f.Type.Results)
}

// The WASI functions pay the host's gas constants and truncate like
// debug_log (docs/abi.md sections 6 and 8).
func TestWASIConstantsMatchHost(t *testing.T) {
	if wasi.GasCall != host.GasHostCall || wasi.GasByte != host.GasByte || wasi.DebugLenMax != host.DebugLogLenMax {
		t.Fatal("runtime/wasi constants differ from runtime/host")
	}
}
