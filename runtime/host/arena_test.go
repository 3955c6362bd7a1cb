package host_test

import (
	"reflect"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
)

// TestArenaResultsEqual: metamorphic, the differential scripts give the
// same Results with every transaction's copies in one Arena as with
// copies of their own (nil and empty slices alike), and the Results of
// earlier transactions still read the same after the arena served all
// the later ones.
func TestArenaResultsEqual(t *testing.T) {
	for name, steps := range scripts() {
		_, _, _, want := runWasm(t, 0, steps)
		_, _, _, got := runWasmArena(t, 0, steps, new(host.Arena))
		for i := range want {
			w, g := want[i], got[i]
			if w.Reason() != g.Reason() {
				t.Fatalf("%s step %d: reason %q, with an arena %q", name, i, w.Reason(), g.Reason())
			}
			w.Err, g.Err = nil, nil
			if !reflect.DeepEqual(w, g) {
				t.Fatalf("%s step %d:\n%#v\nwith an arena:\n%#v", name, i, w, g)
			}
		}
	}
}
