package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/kairos-network/kairos"

// projectRules lists, per top-level folder, the project folders its packages
// may depend on (transitively, through go list -deps). A folder may always
// depend on itself.
var projectRules = map[string][]string{
	"types":     {},
	"consensus": {"types"},
	"state":     {"types"},
	"runtime":   {"types", "state"},
	"p2p":       {"types"},
	"node":      {"types", "consensus", "state", "runtime", "p2p"},
	"sdk":       {"types"},
	// Modules are compiled to wasm: only the guest SDK, never the client SDK.
	"contracts": {"sdk/guest"},
	"internal":  {"types", "consensus", "state", "runtime", "p2p", "node", "sdk"},
	// The binary is a thin shell: its commands call into node and sdk, and
	// into the packages whose bench, sim and check commands it exposes.
	"cmd": {"types", "consensus", "state", "runtime", "p2p", "node", "sdk"},
}

// subRules narrows projectRules for sub-folders that need fewer imports
// than their top-level folder.
var subRules = map[string][]string{
	"sdk/guest": {},
}

// thirdParty confines each third-party module (by import path prefix) to
// the folders that may import it directly. "*" means any folder.
var thirdParty = map[string][]string{
	"github.com/fxamacker/cbor/v2":         {"types"},
	"github.com/multiformats/go-multihash": {"types", "state", "p2p", "node", "runtime"},
	"github.com/ipfs/go-cid":               {"types", "state", "p2p", "node", "runtime"},
	"github.com/ipfs/go-datastore":         {"state", "node"},
	"github.com/ipfs/go-ds-pebble":         {"state", "node"},
	"github.com/ipfs/go-ds-leveldb":        {"state", "node"},
	"github.com/cockroachdb/pebble":        {"state", "node"},
	"github.com/tetratelabs/wazero":        {"runtime"},
	"github.com/libp2p/":                   {"p2p", "node", "cmd"},
	"github.com/multiformats/go-multiaddr": {"p2p", "node", "cmd"},
	"github.com/spf13/cobra":               {"cmd"},
	"github.com/prometheus/client_golang":  {"node", "p2p", "cmd"},
	"github.com/BurntSushi/toml":           {"node", "cmd"},
	"github.com/anishathalye/porcupine":    {"*"},
	"go.uber.org/goleak":                   {"*"},
	"golang.org/x/":                        {"*"},

	// The chain's signature rule (types/verify.go).
	"github.com/oasisprotocol/curve25519-voi": {"types"},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
	Doc          string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// folderOf returns the project-relative folder of an import path and
// whether the path is inside the project.
func folderOf(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

func top(rel string) string { return strings.SplitN(rel, "/", 2)[0] }

func allowedProject(from, to string) bool {
	if top(from) == top(to) {
		return true
	}
	rules, ok := projectRules[top(from)]
	for sub, r := range subRules {
		if from == sub || strings.HasPrefix(from, sub+"/") {
			rules, ok = r, true
		}
	}
	if !ok {
		return false
	}
	for _, r := range rules {
		if top(to) == r || to == r || strings.HasPrefix(to, r+"/") {
			return true
		}
	}
	return false
}

func TestProjectDependencies(t *testing.T) {
	for _, p := range listPackages(t) {
		from, _ := folderOf(p.ImportPath)
		if _, ok := projectRules[top(from)]; !ok {
			t.Errorf("%s: folder %q has no dependency rule (add one to projectRules)", p.ImportPath, top(from))
			continue
		}
		for _, d := range p.Deps {
			if to, ok := folderOf(d); ok && !allowedProject(from, to) {
				t.Errorf("%s may not depend on %s (ARCHITECTURE.md layout)", p.ImportPath, d)
			}
		}
		// sdk/guest is compiled into modules: keep it free of project code.
		for _, d := range append(append([]string{}, p.Imports...), p.TestImports...) {
			if to, ok := folderOf(d); ok && !allowedProject(from, to) {
				t.Errorf("%s may not import %s", p.ImportPath, d)
			}
		}
	}
}

func TestThirdPartyConfinement(t *testing.T) {
	prefixes := make([]string, 0, len(thirdParty))
	for p := range thirdParty {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range listPackages(t) {
		from, _ := folderOf(p.ImportPath)
		imports := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		for _, imp := range imports {
			if _, ours := folderOf(imp); ours || isStd(imp) {
				continue
			}
			var rule []string
			for _, pre := range prefixes {
				if strings.HasPrefix(imp, pre) {
					rule = thirdParty[pre]
				}
			}
			if rule == nil {
				t.Errorf("%s imports %s, which has no rule (add it to thirdParty with the folders it belongs to)", p.ImportPath, imp)
				continue
			}
			ok := false
			for _, f := range rule {
				ok = ok || f == "*" || f == top(from)
			}
			if !ok {
				t.Errorf("%s imports %s, confined to %v", p.ImportPath, imp, rule)
			}
		}
	}
}

func TestEveryPackageHasDocGo(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("package %s has no package doc comment (doc.go)", p.ImportPath)
		}
	}
}

func isStd(path string) bool {
	first := strings.SplitN(path, "/", 2)[0]
	return !strings.Contains(first, ".")
}
