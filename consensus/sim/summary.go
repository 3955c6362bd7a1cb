package sim

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Summary aggregates the results of many runs.
type Summary struct {
	Seeds       int
	VirtualTime int64
	Faults      map[string]int // seeds that injected each kind (and message counts)
	Commits     uint64
	Rounds      uint64
	Submitted   int
	Released    int
	Latencies   []int64
	Messages    uint64
	Verifies    uint64
	Violations  int
	Settle      int64    // longest run past the end for a lagging node to catch up (L3)
	Failed      []uint64 // seeds with violations
	// Replay renders the command that reruns one seed; nil means
	// ReplayCommand (the default configuration).
	Replay func(seed uint64) string
}

// Add folds one result in.
func (s *Summary) Add(r *Result) {
	if s.Faults == nil {
		s.Faults = map[string]int{}
	}
	s.Seeds++
	s.VirtualTime += r.VirtualTime
	for k, v := range r.Faults {
		if strings.HasSuffix(k, "-msgs") {
			s.Faults[k] += v
		} else {
			s.Faults[k]++
		}
	}
	s.Commits += r.Commits
	s.Rounds += r.Rounds
	s.Submitted += r.Submitted
	s.Released += r.Released
	s.Latencies = append(s.Latencies, r.Latencies...)
	s.Messages += r.Messages
	s.Verifies += r.Verifies
	s.Violations += len(r.Violations)
	s.Settle = max(s.Settle, r.Settle)
	if len(r.Violations) > 0 {
		s.Failed = append(s.Failed, r.Seed)
	}
}

// Percentile returns the p-th percentile (0..100) of the latencies in ns.
func (s *Summary) Percentile(p float64) int64 {
	if len(s.Latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	i := int(p / 100 * float64(len(l)-1))
	return l[i]
}

// Print writes the summary table.
func (s *Summary) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	ms := func(ns int64) string { return fmt.Sprintf("%.1f ms", float64(ns)/1e6) }
	per := func(n uint64) string {
		if s.Released == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(n)/float64(s.Released))
	}
	secs := float64(s.VirtualTime) / 1e9
	rows := [][2]string{
		{"seeds", fmt.Sprint(s.Seeds)},
		{"virtual time", fmt.Sprintf("%.1f s", secs)},
		{"committed sub-DAGs", fmt.Sprint(s.Commits)},
		{"rounds per second", fmt.Sprintf("%.1f", float64(s.Rounds)/max(secs, 1e-9))},
		{"txs released / submitted", fmt.Sprintf("%d / %d", s.Released, s.Submitted)},
		{"latency p50 (submit -> released)", ms(s.Percentile(50))},
		{"latency p90", ms(s.Percentile(90))},
		{"latency p99", ms(s.Percentile(99))},
		{"latency max", ms(s.Percentile(100))},
		{"messages per released tx", per(s.Messages)},
		{"signature verifications per released tx", per(s.Verifies)},
		{"longest catch-up after the end (L3)", ms(s.Settle)},
		{"violations", fmt.Sprint(s.Violations)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t\n", r[0], r[1])
	}
	kinds := make([]string, 0, len(s.Faults))
	for k := range s.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		unit := "seeds"
		if strings.HasSuffix(k, "-msgs") {
			unit = "msgs"
		}
		fmt.Fprintf(tw, "fault %s\t%d %s\t\n", k, s.Faults[k], unit)
	}
	tw.Flush()
	if len(s.Failed) > 0 {
		replay := s.Replay
		if replay == nil {
			replay = ReplayCommand
		}
		fmt.Fprintf(w, "failed seeds: %v\nreplay one with: %s\n", s.Failed, replay(s.Failed[0]))
	}
}
