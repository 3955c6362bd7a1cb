package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/node/loadgen"
	"github.com/kairos-network/kairos/types"
)

// p99Target is the latency bound of the sweep's "highest sustained rate".
const p99Target = time.Second

// newBenchNodeCmd is `kairos bench node`: a 4-validator devnet in this
// process under open-loop load, one table row per offered rate.
func newBenchNodeCmd() *cobra.Command {
	var rates []float64
	var duration, drain, roundDelay, gossipDelay time.Duration
	var senders, validators int
	var dir, cpuProfile, memProfile string
	var counters, single bool
	var batchWorkers int
	var checkpointInterval uint64
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Devnet under open-loop load: committed tx/s and submit→block latency per offered rate",
		Long: `Starts a devnet (pebble in a temporary directory, 127.0.0.1, free ports) in this process,
funds --senders accounts on the native token, and for each rate of --rates offers that many
transfers per second for --duration, spread over the validators' APIs, each sender sending its
next nonce without waiting for a receipt (submissions reaching an API while its previous batch
is served share one POST /v1/txs/batch; --single sends each alone). Latency runs from a transaction's scheduled send time
to its block reaching the client from the API it was sent to (one watcher per API holds a
GET /v1/blocks/{height}/wait, answered when the block is stored). Rates run
one after another on the same chain. RSS is the whole process, which hosts every validator;
cpu-ms/tx is the process's user+system CPU during the rate (signing, sending, draining,
reading the receipts) divided by the transactions sent; load-ms/tx counts only the CPU from
the first send to the end of the drain (what the nodes under load and the sending cost).

After the rates, a per-stage table shows where a transaction's time went on the validators
(their kairos_tx_stage_seconds and driver histograms, summed over the validators, growth during
each rate): arrival → durable in the mempool → acked in an own header → own certificate →
committed by an anchor → released in a block → executed with its receipt visible; the stages from
the own header to the commit count only transactions this validator acked itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tmp, err := os.MkdirTemp(dir, "kairos-bench-node-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			cfg := devnet.Config{Dir: tmp, Validators: validators, GossipBatchDelay: gossipDelay}
			if roundDelay > 0 || checkpointInterval > 0 {
				p := consensus.DefaultParams()
				if roundDelay > 0 {
					p.MinRoundDelay = int64(roundDelay)
				}
				if checkpointInterval > 0 {
					p.CheckpointInterval = checkpointInterval
				}
				cfg.Params = &p
			}
			d, err := devnet.Start(cfg)
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
			g.Batch, g.BatchWorkers = !single, batchWorkers
			g.CPU = processCPU
			// The profile covers the rates only, not start-up and funding.
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if memProfile != "" {
				// Allocations counted from here: the rates, not start-up.
				runtime.MemProfileRate = memProfileRate
				defer func() {
					if err := writeHeapProfile(memProfile); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "memprofile:", err)
					}
				}()
			}
			how := fmt.Sprintf("batched per API, %d requests in flight per API", batchWorkers)
			if single {
				how = "one request per transaction"
			}
			fmt.Fprintf(out, "devnet: %d validators in one process, %d senders (pipelined nonces, sender i → API i mod %d, %s), %v per rate\n",
				len(d.Nodes), senders, len(d.APIs), how, duration)
			fmt.Fprintf(out, "%9s %9s %10s %8s %8s %8s %8s %6s %6s %6s %10s %11s %7s\n",
				"offered/s", "ok tx/s", "ok/sent", "p50", "p90", "p99", "max", "rej", "failed", "lost", "cpu-ms/tx", "load-ms/tx", "tx/req")
			best := 0.0
			var problems []string
			var collectors []prometheus.Collector
			for _, n := range d.Nodes {
				collectors = append(collectors, n.Collector())
			}
			var stageRows []string
			for _, rate := range rates {
				before := gatherHists(collectors...)
				cpu0 := processCPU()
				// The generator's goroutines (and the HTTP client's they
				// start) carry a profile label, so a profile can tell its
				// CPU from the validators'.
				var r *loadgen.Result
				pprof.Do(ctx, pprof.Labels("role", "loadgen"), func(ctx context.Context) {
					r, err = g.Run(ctx, rate, duration, drain)
				})
				cpu := processCPU() - cpu0
				stageRows = append(stageRows, stageTable(rate, gatherHists(collectors...).minus(before))...)
				if err != nil {
					return fmt.Errorf("rate %v: %w", rate, err)
				}
				ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
				perTx := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(max(r.Sent, 1)) }
				fmt.Fprintf(out, "%9.0f %9.1f %10s %8s %8s %8s %8s %6d %6d %6d %10.3f %11.3f %7.1f\n", r.Offered, r.Committed,
					fmt.Sprintf("%d/%d", r.OK, r.Sent), ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Rejected, r.Failed, r.Lost,
					perTx(cpu), perTx(r.LoadCPU), float64(r.Sent)/float64(max(r.Requests, 1)))
				if r.FirstProblem != "" {
					problems = append(problems, fmt.Sprintf("rate %v: %s", rate, r.FirstProblem))
				}
				if r.OK == r.Sent && r.P99 < p99Target {
					best = max(best, rate)
				}
			}
			fmt.Fprintln(out, "per-stage latency on the validators (sum of their histograms over the rate; p50/p99 interpolated in 25% buckets):")
			for _, row := range stageRows {
				fmt.Fprintln(out, row)
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
					ps := n.PoolStats()
					fmt.Fprintf(out, "validator %d mempool: %d payloads decoded and checked, %d held already (not again), %d added\n",
						i, ps.Decoded, ps.Known, ps.Added)
				}
				hits, misses, held := types.KeyCacheStats()
				fmt.Fprintf(out, "expanded-key cache of the signature checks (whole process, every validator and the setup): %d hits, %d misses, %d keys held\n",
					hits, misses, held)
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
	f.DurationVar(&roundDelay, "min-round-delay", 0, "the devnet's min_round_delay (0: consensus.DefaultParams'), to compare round pacing in one binary")
	f.Uint64Var(&checkpointInterval, "checkpoint-interval", 0, "the devnet's checkpoint_interval (0: consensus.DefaultParams'); must divide compact_every (256)")
	f.DurationVar(&gossipDelay, "gossip-batch-delay", 0, "the validators' transaction gossip batch delay (0: node.DefaultGossipBatchDelay)")
	f.BoolVar(&single, "single", false, "submit each transaction alone (POST /v1/txs) instead of through each API's batcher (POST /v1/txs/batch)")
	f.IntVar(&batchWorkers, "batch-workers", loadgen.DefaultBatchWorkers, "batch requests to one API in flight at once")
	f.BoolVar(&counters, "counters", false, "print each validator's non-zero counters (drops, rejections, p2p messages) after the rates")
	f.StringVar(&memProfile, "memprofile", "", "write an allocation profile of the rates (whole process) to this file (go tool pprof -sample_index=alloc_space)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the rates (whole process) to this file; the generator's samples carry the label role=loadgen (go tool pprof -tagignore role=loadgen shows the validators alone)")
	return cmd
}

// stageLabels names the rows of the per-stage table: the node's
// kairos_tx_stage_seconds stages, then the driver's histograms.
var stageLabels = []struct{ key, label string }{
	{node.StagePool, "arrival → durable in mempool"},
	{node.StageAck, "pooled → acked in own header"},
	{node.StageCert, "own header → certified"},
	{node.StageCommit, "certified → committed (anchor)"},
	{node.StageRelease, "committed → released in block"},
	{node.StageExecute, "released → executed, receipt"},
	{node.StageTotal, "total: arrival → receipt"},
	{"kairos_round_seconds", "own header → next own header"},
	{"kairos_header_transit_seconds", "peer's header built → stepped here"},
	{"kairos_vote_wait_seconds", "peer's header → own vote on it"},
	{"kairos_driver_inbox_wait_seconds", "driver inbox wait (per input)"},
	{"kairos_driver_commit_seconds", "driver group commit (fsync)"},
	{"kairos_driver_inbox_depth", "driver inbox depth (inputs)"},
}

// stageTable renders one rate's per-stage rows from the histograms' growth
// over that rate.
func stageTable(rate float64, h hists) []string {
	rows := []string{fmt.Sprintf("%9s  %-32s %9s %9s %9s", "offered/s", "stage", "n", "p50", "p99")}
	for _, s := range stageLabels {
		x, ok := h[s.key]
		if !ok {
			continue
		}
		f := func(q float64) string {
			v := x.quantile(q)
			switch {
			case math.IsNaN(v):
				return "-"
			case math.IsInf(v, 1):
				return "overflow"
			case strings.HasSuffix(s.key, "_depth"):
				return fmt.Sprintf("%.0f", v)
			default:
				return fmt.Sprintf("%.1fms", v*1000)
			}
		}
		rows = append(rows, fmt.Sprintf("%9.0f  %-32s %9d %9s %9s", rate, s.label, x.count, f(0.5), f(0.99)))
	}
	return rows
}

// hist is a classic Prometheus histogram: upper bounds and cumulative
// counts per bound, and the total count (the +Inf bucket).
type hist struct {
	bounds []float64
	cum    []uint64
	count  uint64
}

// hists maps a histogram's name, or the stage label of
// kairos_tx_stage_seconds, to its sum over the gathered collectors.
type hists map[string]hist

// gatherHists sums the histograms of cs by name (and stage); histograms of
// one name share their bounds (they come from the same code).
func gatherHists(cs ...prometheus.Collector) hists {
	out := hists{}
	for _, c := range cs {
		// One registry per collector: every node's metrics have the same
		// names and labels.
		reg := prometheus.NewRegistry()
		if reg.Register(c) != nil {
			continue
		}
		fams, err := reg.Gather()
		if err != nil {
			continue
		}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				ph := m.GetHistogram()
				if ph == nil {
					continue
				}
				key := f.GetName()
				for _, l := range m.GetLabel() {
					if l.GetName() == "stage" {
						key = l.GetValue()
					}
				}
				h := out[key]
				if h.bounds == nil {
					for _, b := range ph.GetBucket() {
						h.bounds = append(h.bounds, b.GetUpperBound())
					}
					h.cum = make([]uint64, len(h.bounds))
				}
				for i, b := range ph.GetBucket() {
					h.cum[i] += b.GetCumulativeCount()
				}
				h.count += ph.GetSampleCount()
				out[key] = h
			}
		}
	}
	return out
}

// minus returns the growth of every histogram of h since before.
func (h hists) minus(before hists) hists {
	out := hists{}
	for k, x := range h {
		b, ok := before[k]
		d := hist{bounds: x.bounds, cum: slices.Clone(x.cum), count: x.count}
		if ok {
			for i := range d.cum {
				d.cum[i] -= b.cum[i]
			}
			d.count -= b.count
		}
		out[k] = d
	}
	return out
}

// quantile estimates the q-quantile by linear interpolation inside the
// bucket that holds it (as Prometheus' histogram_quantile does); +Inf when
// it lies above the last bound, NaN without observations.
func (x hist) quantile(q float64) float64 {
	if x.count == 0 {
		return math.NaN()
	}
	rank := q * float64(x.count)
	lower, below := 0.0, uint64(0)
	for i, c := range x.cum {
		if float64(c) >= rank && c > below {
			return lower + (x.bounds[i]-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = x.bounds[i], c
	}
	return math.Inf(1)
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

// memProfileRate samples one allocation per this many bytes while
// --memprofile is on (the runtime default is 512 KiB, too coarse for a
// few seconds of load).
const memProfileRate = 64 << 10

// writeHeapProfile writes the allocations sampled so far to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
