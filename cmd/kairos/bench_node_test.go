package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBenchNode runs `kairos bench node` through the command tree at two
// low rates: the devnet starts, every transaction is ok, and the table,
// the sweep verdict and the RSS line come out.
func TestBenchNode(t *testing.T) {
	out, err := runKairos(t, "bench", "node", "--rates", "10,20", "--duration", "1s", "--senders", "10", "--dir", t.TempDir(),
		"--min-round-delay", "15ms", "--gossip-batch-delay", "2ms")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"10/10", "20/20", "offered rate with every tx ok", "per validator (RSS/4)", "cpu-ms/tx", "load-ms/tx", "tx/req",
		"per-stage latency", "total: arrival → receipt", "driver group commit (fsync)",
		"own header → next own header", "peer's header built → stepped here"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first problem") {
		t.Errorf("a transaction was not ok:\n%s", out)
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\tkairos\nVmRSS:\t  1024 kB\nVmSwap:\t0 kB\n", 1 << 20, true},
		{"VmRSS:\t7 kB\n", 7 << 10, true},
		{"Name:\tkairos\n", 0, false},
		{"VmRSS:\tlots kB\n", 0, false},
	} {
		got, err := parseVmRSS(strings.NewReader(c.in))
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("%q: got %d, %v", c.in, got, err)
		}
	}
}

func TestNonZeroCounters(t *testing.T) {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_hits_total", Help: "h"}, []string{"kind"})
	hits.WithLabelValues("b").Add(3)
	hits.WithLabelValues("a").Add(2)
	hits.WithLabelValues("zero")
	idle := prometheus.NewCounter(prometheus.CounterOpts{Name: "idle_total", Help: "i"})
	got := nonZeroCounters(multiCollector{hits, idle})
	if want := "hits_total{a}=2 hits_total{b}=3"; got != want {
		t.Fatalf("nonZeroCounters = %q, want %q", got, want)
	}
}

type multiCollector []prometheus.Collector

func (m multiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m {
		c.Describe(ch)
	}
}

func (m multiCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m {
		c.Collect(ch)
	}
}

// TestHistQuantile checks the bucket quantile against the exact quantile of
// the samples (a sorted slice): both lie in the same bucket. The
// histogram's growth (minus) is checked against one fed only the later
// samples.
func TestHistQuantile(t *testing.T) {
	bounds := prometheus.ExponentialBuckets(0.001, 1.25, 40)
	bucketOf := func(v float64) int {
		i, _ := slices.BinarySearch(bounds, v)
		return i
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		newH := func() prometheus.Histogram {
			return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "x", Buckets: bounds})
		}
		all, later := newH(), newH()
		var early, late []float64
		for range 1 + rng.IntN(300) {
			v := math.Exp(rng.NormFloat64()*1.5 - 3)
			early = append(early, v)
			all.Observe(v)
		}
		before := gatherHists(all)
		for range 1 + rng.IntN(300) {
			v := math.Exp(rng.NormFloat64() - 2)
			late = append(late, v)
			all.Observe(v)
			later.Observe(v)
		}
		grown, want := gatherHists(all).minus(before)["x_seconds"], gatherHists(later)["x_seconds"]
		if grown.count != want.count || !slices.Equal(grown.cum, want.cum) {
			t.Fatalf("seed %d: growth %+v, want %+v", seed, grown, want)
		}
		slices.Sort(late)
		for _, q := range []float64{0.5, 0.9, 0.99} {
			exact := late[int(math.Ceil(q*float64(len(late))))-1]
			got := grown.quantile(q)
			if bucketOf(got) != bucketOf(exact) && !(math.IsInf(got, 1) && bucketOf(exact) == len(bounds)) {
				t.Errorf("seed %d q %v: %v, exact %v (%d samples): other bucket", seed, q, got, exact, len(late))
			}
		}
	}
	if q := (hist{bounds: bounds, cum: make([]uint64, len(bounds))}).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("quantile without observations = %v, want NaN", q)
	}
}
