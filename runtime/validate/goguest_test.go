package validate_test

import (
	"slices"
	"testing"

	"github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// TestWASISubsetMatchesGoGuest builds a standard Go guest and checks that
// WASISubset is exactly what it imports, signatures included.
func TestWASISubsetMatchesGoGuest(t *testing.T) {
	m, err := wasm.Decode(wasmtest.GoGuest(t))
	if err != nil {
		t.Fatal(err)
	}
	subset := validate.WASISubset()
	got := map[string]bool{}
	for _, im := range m.Imports {
		if im.Kind != wasm.ExternFunc {
			t.Fatalf("Go guest imports a non-function %s.%s", im.Module, im.Name)
		}
		got[im.Module+"."+im.Name] = true
		i := slices.IndexFunc(subset, func(h validate.HostFunc) bool { return h.Module == im.Module && h.Name == im.Name })
		if i < 0 {
			t.Errorf("Go guest imports %s.%s, missing from WASISubset", im.Module, im.Name)
			continue
		}
		if !subset[i].Type.Equal(m.Types[im.TypeIndex]) {
			t.Errorf("%s.%s: WASISubset says %v, the Go guest imports %v", im.Module, im.Name, subset[i].Type, m.Types[im.TypeIndex])
		}
	}
	if len(got) != len(subset) {
		t.Errorf("Go guest imports %d distinct WASI functions %v, WASISubset lists %d", len(got), got, len(subset))
	}
}

// TestGoGuestPassesDefaults: the default limits admit a standard Go guest.
func TestGoGuestPassesDefaults(t *testing.T) {
	_, uses, err := validate.Check(wasmtest.GoGuest(t), validate.Config{Limits: validate.DefaultLimits(), Imports: validate.WASISubset()})
	for _, u := range uses {
		t.Logf("%-42s %10d / %d", u.Rule, u.Used, u.Limit)
	}
	if err != nil {
		t.Fatal(err)
	}
}
