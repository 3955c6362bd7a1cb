package meter_test

import (
	"math"
	"reflect"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
)

// TestGoGuestOnBothEngines instruments a real Go guest (built in the test)
// and runs _initialize, an integer call, an allocation-heavy call with GC
// and a NaN-producing float call on both engines: equal results and gas,
// and the same results as the original module.
func TestGoGuestOnBothEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a 2 MB module on two engines")
	}
	orig := GoGuest(t)
	inst := instrument(t, orig)
	t.Logf("Go guest: %d bytes, instrumented %d bytes (%+.1f%%)", len(orig), len(inst), 100*float64(len(inst)-len(orig))/float64(len(orig)))
	calls := []call{
		{"_initialize", nil},
		{"add", []uint64{2, 40}},
		{"churn", []uint64{2000}},
		{"fdiv", []uint64{math.Float64bits(1), math.Float64bits(3)}},
		{"fdiv", []uint64{math.Float64bits(0), math.Float64bits(0)}},
	}
	var first []Result
	for i, e := range Engines {
		o, n := Instantiate(t, e, orig), Instantiate(t, e, inst)
		for j, c := range calls {
			want, got := o.Call(c.fn, 0, c.args...), n.Call(c.fn, plenty, c.args...)
			if len(got.Values) == 0 {
				got.Values = nil
			}
			if got.Trap != "" || want.Trap != "" {
				t.Fatalf("%s %s: original %+v, instrumented %+v", e.Name, c.fn, want, got)
			}
			// 0/0 is a NaN whose payload is canonical only in the
			// instrumented module.
			if c.fn != "fdiv" || c.args[0] != 0 {
				if !reflect.DeepEqual(want.Values, got.Values) && len(want.Values)+len(got.Values) > 0 {
					t.Errorf("%s %s: original %v, instrumented %v", e.Name, c.fn, want.Values, got.Values)
				}
			}
			t.Logf("%s %s%v: %v, gas %d", e.Name, c.fn, c.args, got.Values, plenty-got.GasLeft)
			if i == 0 {
				first = append(first, got)
			} else if !reflect.DeepEqual(first[j], got) {
				t.Errorf("%s: %s %+v, %s %+v", c.fn, Engines[0].Name, first[j], e.Name, got)
			}
		}
	}
}
