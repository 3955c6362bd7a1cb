package sim

import (
	"flag"
	"testing"
)

var (
	simSeeds = flag.Int("sim.seeds", 200, "number of simulator seeds")
	simSeed  = flag.Int64("sim.seed", -1, "run only this seed, with a trace")
)

func TestSimSmoke(t *testing.T) {
	cfg := DefaultConfig(1)
	cfg.Faults = nil
	r := Run(cfg)
	t.Log(r)
	if len(r.Violations) > 0 {
		t.Fatal(r.Violations)
	}
}

// TestSimSeeds runs many seeds with every fault kind; any violation prints
// the seed and the command that replays it.
func TestSimSeeds(t *testing.T) {
	first, n := uint64(0), uint64(*simSeeds)
	if *simSeed >= 0 {
		first, n = uint64(*simSeed), 1
	}
	for seed := first; seed < first+n; seed++ {
		cfg := DefaultConfig(seed)
		if *simSeed >= 0 {
			cfg.Trace = func(s string) { t.Log(s) }
		}
		r := Run(cfg)
		if len(r.Violations) > 0 {
			t.Errorf("seed %d: %d violations, first: %s\nfaults %v\nreplay: go test -count=1 -run TestSimSeeds ./consensus/sim -sim.seed=%d -v",
				seed, len(r.Violations), r.Violations[0], r.Faults, seed)
		}
	}
}
