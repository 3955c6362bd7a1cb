package sim

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/consensus"
)

var (
	simSeeds = flag.Int("sim.seeds", 150, "number of simulator seeds (make sim runs thousands)")
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

// TestSimScenarios replays the data-driven scenarios in testdata/*.txt.
func TestSimScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := ParseScenario(string(text))
			if err != nil {
				t.Fatal(err)
			}
			r := Run(sc.Config)
			for _, p := range sc.Check(r) {
				t.Error(p)
			}
			t.Log(r)
		})
	}
}

func TestScenarioParseErrors(t *testing.T) {
	for _, text := range []string{
		"at 10ms explode 1",
		"at soon crash 1",
		"at 10ms crash 9",
		"config colour=blue",
		"frobnicate",
		"at 10ms partition 1",
	} {
		if _, err := ParseScenario(text); !errors.Is(err, ErrScenario) {
			t.Errorf("%q: got %v, want ErrScenario", text, err)
		}
	}
	// An expectation that does not hold is reported.
	sc, _ := ParseScenario("config calm-ms=0\nexpect min-commits 1000000")
	if len(sc.Check(&Result{})) == 0 {
		t.Fatal("unmet expectation not reported")
	}
}

// TestSimDeterministic reruns a sample of seeds and compares trace hashes
// and results: the simulation (and so the cores) depend on the seed only.
func TestSimDeterministic(t *testing.T) {
	for seed := uint64(0); seed < 8; seed++ {
		a, b := Run(DefaultConfig(seed*97)), Run(DefaultConfig(seed*97))
		if a.TraceHash != b.TraceHash || a.String() != b.String() {
			t.Fatalf("seed %d differs between runs:\n%v\n%v", seed*97, a, b)
		}
	}
	if Run(DefaultConfig(1)).TraceHash == Run(DefaultConfig(2)).TraceHash {
		t.Fatal("different seeds gave the same trace: the hash covers nothing")
	}
}

// TestSimCommitteeSizes runs a few seeds per committee size, from a
// single validator (F=0, which certifies alone) to 7 (F=2).
func TestSimCommitteeSizes(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 7} {
		for seed := uint64(0); seed < 3; seed++ {
			cfg := DefaultConfig(seed)
			cfg.Validators = n
			r := Run(cfg)
			if len(r.Violations) > 0 || r.Commits == 0 {
				t.Errorf("n=%d seed %d: %d commits, violations %v", n, seed, r.Commits, r.Violations)
			}
		}
	}
}

// TestIdleRoundDelay: with no transactions, validators pace their headers
// by IdleRoundDelay and make far fewer rounds than with the minimum delay
// alone; under load the delay stays at the minimum, so release latency is
// what it is without an idle delay. Both runs use the same seed and
// network; "baseline" sets IdleRoundDelay to 0 (off).
func TestIdleRoundDelay(t *testing.T) {
	run := func(rate float64, idle bool) *Result {
		cfg := DefaultConfig(3)
		cfg.Faults, cfg.TxRate = nil, rate
		p := consensus.DefaultParams()
		if !idle {
			p.IdleRoundDelay = 0
		}
		cfg.Params = &p
		r := Run(cfg)
		if len(r.Violations) > 0 {
			t.Fatalf("rate %v idle %v: %v", rate, idle, r.Violations)
		}
		return r
	}
	base, idle := run(0, false), run(0, true)
	t.Logf("no load: %d rounds in %d ms without the idle delay, %d with it", base.Rounds, base.VirtualTime/Millisecond, idle.Rounds)
	if idle.Rounds*2 > base.Rounds {
		t.Errorf("idle network: %d rounds with the idle delay, %d without: not fewer by half", idle.Rounds, base.Rounds)
	}
	loadBase, loadIdle := run(200, false), run(200, true)
	pb, pi := percentiles(loadBase.Latencies), percentiles(loadIdle.Latencies)
	t.Logf("200 tx/s latency p50/p99 ms: %v without, %v with the idle delay", pb, pi)
	if loadIdle.Released != loadBase.Released || loadBase.Released == 0 {
		t.Fatalf("released %d with the idle delay, %d without", loadIdle.Released, loadBase.Released)
	}
	for i := range pb {
		if pi[i] > pb[i]+pb[i]/10 {
			t.Errorf("latency percentile %d: %d ms with the idle delay, %d ms without", i, pi[i], pb[i])
		}
	}
}

// TestRoundDelayLatency: rounds are the unit of the commit latency, so
// in virtual time (no CPU cost) the default min_round_delay of 10 ms
// releases transactions sooner than consensus.md's 20 ms start value, with
// more rounds. Same seed and network for both; figures are logged for
// RATIONALE.md ("Why is min_round_delay 10 ms?").
func TestRoundDelayLatency(t *testing.T) {
	run := func(delay int64) ([2]int64, uint64) {
		cfg := DefaultConfig(1)
		cfg.Faults, cfg.TxRate = nil, 1000
		p := consensus.DefaultParams()
		p.MinRoundDelay = delay
		cfg.Params = &p
		r := Run(cfg)
		if len(r.Violations) > 0 {
			t.Fatalf("delay %d ms: %v", delay/Millisecond, r.Violations)
		}
		return percentiles(r.Latencies), r.Rounds
	}
	slow, slowRounds := run(20 * Millisecond)
	fast, fastRounds := run(consensus.DefaultParams().MinRoundDelay)
	t.Logf("1000 tx/s, submit → release p50/p99 ms: %v at 20 ms (%d rounds), %v at the default %d ms (%d rounds)",
		slow, slowRounds, fast, consensus.DefaultParams().MinRoundDelay/Millisecond, fastRounds)
	if fast[0] >= slow[0] {
		t.Errorf("p50 %d ms at the default delay, not below %d ms at 20 ms", fast[0], slow[0])
	}
}

// percentiles returns the p50 and p99 of latencies in ms.
func percentiles(l []int64) [2]int64 {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return [2]int64{}
	}
	return [2]int64{s[len(s)/2] / Millisecond, s[len(s)*99/100] / Millisecond}
}

// TestL3Settle replays all-Byzantine seeds whose run ended while an
// honest node was behind. Judged at the end instant they would fail L3;
// with settle they must pass, and seed 27 (a node that catches up 126 ms
// after the end) must actually have needed it, otherwise the test no longer
// covers a lagging node. Seed 51 released a block 0.2 ms before the end
// when it was picked. The lagging seed changes with the protocol's timing
// (40, then 33 with a 20 ms minimum round delay, now 27): when it stops
// lagging, take another seed with settle > 0 from a scan of the same
// configuration.
func TestL3Settle(t *testing.T) {
	byzOnly := []string{FTwin, FAcksWithheld, FAcksEarly, FAcksLate, FAcksAncient, FBadSig, FReplay, FOversize, FMalformed}
	for _, seed := range []uint64{27, 51} {
		cfg := DefaultConfig(seed)
		cfg.Faults, cfg.Always = byzOnly, true
		r := Run(cfg)
		if len(r.Violations) > 0 {
			t.Errorf("seed %d: %v", seed, r.Violations)
		}
		if seed == 27 && r.Settle == 0 {
			t.Errorf("seed 27 no longer lags at the end: the test covers nothing, pick another seed")
		}
		t.Logf("seed %d: caught up %.1f ms after the end", seed, float64(r.Settle)/1e6)
	}
}

// TestL3StuckNode: settle must not excuse a node that makes no progress.
// Validator 1 crashes after the faults stopped and never restarts; the
// others go on committing, so L3 must name it once the settle bound ran
// out.
func TestL3StuckNode(t *testing.T) {
	sc, err := ParseScenario("config seed=5 fault-ms=2000 calm-ms=3000\nat 3000ms crash 1\n")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(sc.Config)
	var l3 []string
	for _, v := range r.Violations {
		if strings.Contains(v, "L3: validator 1 ") {
			l3 = append(l3, v)
		} else {
			t.Errorf("unexpected violation: %s", v)
		}
	}
	if len(l3) == 0 {
		t.Fatalf("stuck validator 1 not reported; violations %v", r.Violations)
	}
	if p := consensus.DefaultParams(); r.Settle != settleResends*p.ResendInterval {
		t.Errorf("settled after %d ns, want the full bound %d", r.Settle, settleResends*p.ResendInterval)
	}
	t.Log(l3)
}
