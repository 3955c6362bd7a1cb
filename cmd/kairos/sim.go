package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/consensus/sim"
)

// newSimCmd runs the deterministic consensus simulator over many seeds and
// prints a summary table; any violation makes the command fail and names
// the seeds that replay it.
func newSimCmd() *cobra.Command {
	var (
		seeds, validators  int
		seed               uint64
		faults             string
		always, faultyDown bool
		faultMs, calmMs    int64
		rate               float64
		latMinUs, latAvgUs int64
		ed25519, verbose   bool
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the consensus simulator over many seeds and print a summary",
		Long: `Runs N validators' real consensus state machines in a seeded, single-threaded
simulation with a simulated network, clocks, disks, clients and one faulty
validator, checking safety after every step and liveness after the faults stop.

--faults takes "all", "none" or a comma-separated list of kinds:
  ` + strings.Join(sim.AllFaults, ", "),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var kinds []string
			switch faults {
			case "all":
				kinds = sim.AllFaults
			case "none", "":
			default:
				kinds = strings.Split(faults, ",")
				for _, k := range kinds {
					if !contains(sim.AllFaults, k) {
						return fmt.Errorf("unknown fault kind %q", k)
					}
				}
			}
			var sum sim.Summary
			sum.Replay = func(seed uint64) string {
				// The same flags, narrowed to one seed with its trace.
				args := []string{"go run ./cmd/kairos sim"}
				for _, name := range replayFlags {
					if cmd.Flags().Changed(name) {
						args = append(args, "--"+name+"="+cmd.Flags().Lookup(name).Value.String())
					}
				}
				return strings.Join(append(args, fmt.Sprintf("--seed=%d --seeds=1 -v", seed)), " ")
			}
			for i := 0; i < seeds; i++ {
				cfg := sim.DefaultConfig(seed + uint64(i))
				cfg.Validators, cfg.Faults, cfg.Always, cfg.FaultyDown = validators, kinds, always, faultyDown
				cfg.FaultTime, cfg.CalmTime = faultMs*1e6, calmMs*1e6
				cfg.TxRate, cfg.Ed25519 = rate, ed25519
				cfg.LatencyMin, cfg.LatencyAvg = latMinUs*1e3, latAvgUs*1e3
				if verbose {
					cfg.Trace = func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
				}
				r := sim.Run(cfg)
				for _, v := range r.Violations {
					fmt.Fprintf(cmd.ErrOrStderr(), "seed %d: %s\n", r.Seed, v)
				}
				sum.Add(r)
			}
			sum.Print(cmd.OutOrStdout())
			if sum.Violations > 0 {
				return fmt.Errorf("%d violations in %d seeds", sum.Violations, len(sum.Failed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&seeds, "seeds", 100, "number of seeds to run")
	f.Uint64Var(&seed, "seed", 0, "first seed")
	f.IntVar(&validators, "validators", 4, "number of validators (equal weights)")
	f.StringVar(&faults, "faults", "all", `fault kinds: "all", "none" or a comma-separated list`)
	f.BoolVar(&always, "always", false, "inject every listed kind in every seed (otherwise each seed draws some)")
	f.BoolVar(&faultyDown, "faulty-down", false, "keep the faulty validator down for the whole run")
	f.Int64Var(&faultMs, "fault-ms", 2000, "virtual milliseconds with faults")
	f.Int64Var(&calmMs, "calm-ms", 3000, "virtual milliseconds after the faults stop")
	f.Float64Var(&rate, "rate", 200, "client transactions per virtual second")
	f.Int64Var(&latMinUs, "latency-min-us", 500, "one-way network latency base, microseconds")
	f.Int64Var(&latAvgUs, "latency-avg-us", 1000, "mean of the exponential latency tail, microseconds")
	f.BoolVar(&ed25519, "ed25519", false, "use real ed25519 signatures (slower)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the trace of every seed to stderr")
	return cmd
}

// replayFlags are the flags that shape a run (all but the seed range and
// the trace switch).
var replayFlags = []string{"validators", "faults", "always", "faulty-down", "fault-ms", "calm-ms", "rate",
	"latency-min-us", "latency-avg-us", "ed25519"}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
