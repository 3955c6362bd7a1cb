package sim

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/consensus"
)

var restoreSeeds = flag.Int("sim.restoreseeds", 40, "seeds for the ordering-state restore property test")

// TestSimRestoreFromOrderingState: restarted nodes continue from their
// latest ordering state over a log compacted to its gc round, and an honest
// node wiped mid-run restores from a peer's state (state sync) with an
// empty log. Every honest node must still produce the same later sub-DAGs,
// blocks and ordering states as the others (S1), keep the other safety
// invariants, and catch up (L3). A small gc depth makes the peers drop the
// restored node's window quickly, so certificates also come from their
// logs.
//
// Even seeds run every fault kind but wipes (crashed nodes restore from
// their own state among Byzantine behaviour). Odd seeds wipe an honest
// validator with only network, clock and crash faults: a wiped validator
// counts against F until its amnesia floor is passed, so a Byzantine one
// besides it is beyond the fault model of a 4-validator network.
func TestSimRestoreFromOrderingState(t *testing.T) {
	var benign []string
	for _, k := range AllFaults {
		if !strings.HasPrefix(k, "byz-") && k != FWipe {
			benign = append(benign, k)
		}
	}
	compacted, synced := 0, 0
	for seed := uint64(0); seed < uint64(*restoreSeeds); seed++ {
		cfg := DefaultConfig(seed)
		cfg.Restore = true
		p := consensus.DefaultParams()
		p.GCDepth = 10
		cfg.Params = &p
		cfg.Faults = slices.DeleteFunc(slices.Clone(AllFaults), func(k string) bool { return k == FWipe })
		if seed%2 == 1 {
			none := -1
			cfg.Faulty, cfg.Faults = &none, benign
			victim := int(seed/2) % cfg.Validators
			cfg.Script = []Step{{At: 1200 * Millisecond, Do: "wipe", Node: victim}, {At: 1500 * Millisecond, Do: "restart", Node: victim}}
		}
		r := Run(cfg)
		if len(r.Violations) > 0 {
			t.Fatalf("seed %d: %d violations, first: %s\nfaults %v\nreplay: go test -count=1 -run TestSimRestoreFromOrderingState ./consensus/sim -sim.restoreseeds=%d -v",
				seed, len(r.Violations), r.Violations[0], r.Faults, seed+1)
		}
		compacted += r.Faults["restore-compacted"]
		synced += r.Faults["restore-synced"]
	}
	if synced < *restoreSeeds/2 || compacted == 0 {
		t.Fatalf("restored %d times from an own state and %d from a peer's in %d seeds: the test does not exercise restores",
			compacted, synced, *restoreSeeds)
	}
	t.Logf("%d seeds: %d restarts from an own compacted state, %d state syncs", *restoreSeeds, compacted, synced)
}
