package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/node/loadgen"
)

// p99Target is the latency bound of the sweep's "highest sustained rate".
const p99Target = time.Second

// newBenchNodeCmd is `kairos bench node`: a 4-validator devnet in this
// process under open-loop load, one table row per offered rate.
func newBenchNodeCmd() *cobra.Command {
	var rates []float64
	var duration, drain time.Duration
	var senders, validators int
	var dir, cpuProfile string
	var counters bool
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Devnet under open-loop load: committed tx/s and submit→block latency per offered rate",
		Long: `Starts a devnet (pebble in a temporary directory, 127.0.0.1, free ports) in this process,
funds --senders accounts on the native token, and for each rate of --rates offers that many
transfers per second for --duration, spread over the validators' APIs, each sender sending its
next nonce without waiting for a receipt. Latency runs from a transaction's scheduled send time
to its block being visible on the API it was sent to (block watchers poll every 5 ms). Rates run
one after another on the same chain. RSS is the whole process, which hosts every validator;
cpu-ms/tx is the process's user+system CPU during the rate (signing, sending, draining)
divided by the transactions sent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tmp, err := os.MkdirTemp(dir, "kairos-bench-node-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			d, err := devnet.Start(devnet.Config{Dir: tmp, Validators: validators})
			if err != nil {
				return err
			}
			defer d.Close()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			out := cmd.OutOrStdout()
			g, err := loadgen.New(ctx, d.APIs, senders)
			if err != nil {
				return err
			}
			// The profile covers the rates only, not start-up and funding.
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			fmt.Fprintf(out, "devnet: %d validators in one process, %d senders (pipelined nonces, sender i → API i mod %d), %v per rate\n",
				len(d.Nodes), senders, len(d.APIs), duration)
			fmt.Fprintf(out, "%9s %9s %10s %8s %8s %8s %8s %6s %6s %6s %10s\n",
				"offered/s", "ok tx/s", "ok/sent", "p50", "p90", "p99", "max", "rej", "failed", "lost", "cpu-ms/tx")
			best := 0.0
			var problems []string
			for _, rate := range rates {
				cpu0 := processCPU()
				r, err := g.Run(ctx, rate, duration, drain)
				cpu := processCPU() - cpu0
				if err != nil {
					return fmt.Errorf("rate %v: %w", rate, err)
				}
				ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
				fmt.Fprintf(out, "%9.0f %9.1f %10s %8s %8s %8s %8s %6d %6d %6d %10.3f\n", r.Offered, r.Committed,
					fmt.Sprintf("%d/%d", r.OK, r.Sent), ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Rejected, r.Failed, r.Lost,
					cpu.Seconds()*1000/float64(max(r.Sent, 1)))
				if r.FirstProblem != "" {
					problems = append(problems, fmt.Sprintf("rate %v: %s", rate, r.FirstProblem))
				}
				if r.OK == r.Sent && r.P99 < p99Target {
					best = max(best, rate)
				}
			}
			for _, p := range problems {
				fmt.Fprintln(out, "first problem at", p)
			}
			if len(rates) > 1 {
				if best > 0 {
					fmt.Fprintf(out, "highest offered rate with every tx ok and p99 < %v: %.0f tx/s\n", p99Target, best)
				} else {
					fmt.Fprintf(out, "no offered rate had every tx ok and p99 < %v\n", p99Target)
				}
			}
			if counters {
				for i, n := range d.Nodes {
					fmt.Fprintf(out, "validator %d counters: %s\n", i, nonZeroCounters(n.Collector()))
				}
			}
			if rss, err := selfRSS(); err == nil {
				fmt.Fprintf(out, "RSS of this process (all %d validators + the generator): %d MiB, %.0f MiB per validator (RSS/%d)\n",
					len(d.Nodes), rss>>20, float64(rss>>20)/float64(len(d.Nodes)), len(d.Nodes))
			} else {
				fmt.Fprintln(out, "RSS: not available:", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Float64SliceVar(&rates, "rates", []float64{500}, "offered rates in tx/s, run one after another (alias --rate)")
	f.Float64SliceVar(&rates, "rate", []float64{500}, "offered rate in tx/s")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long each rate is offered")
	f.DurationVar(&drain, "drain", 30*time.Second, "bound on waiting for the last blocks after a rate's last send")
	f.IntVar(&senders, "senders", 500, "funded sender accounts (each sends rate/senders tx/s)")
	f.IntVar(&validators, "validators", 4, "validators of the devnet")
	f.StringVar(&dir, "dir", "", "parent of the temporary data directory (default: the system temp dir)")
	f.BoolVar(&counters, "counters", false, "print each validator's non-zero counters (drops, rejections, p2p messages) after the rates")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the rates (whole process: validators and generator) to this file")
	return cmd
}

// nonZeroCounters renders c's non-zero counters as name{labels}=value, in
// the registry's order (by name, then labels).
func nonZeroCounters(c prometheus.Collector) string {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return err.Error()
	}
	families, err := reg.Gather()
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if m.GetCounter().GetValue() == 0 {
				continue
			}
			name := strings.TrimPrefix(f.GetName(), "kairos_")
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			parts = append(parts, fmt.Sprintf("%s=%.0f", name, m.GetCounter().GetValue()))
		}
	}
	return strings.Join(parts, " ")
}

// startCPUProfile starts a CPU profile written to path; stop ends it and
// closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// processCPU returns the user and system CPU time this process has used
// (every validator and the generator), or 0 where getrusage fails. On a
// shared machine CPU per transaction is steadier than wall-clock rates.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS reads the resident set size of this process (Linux).
func selfRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmRSS(f)
}

func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}
