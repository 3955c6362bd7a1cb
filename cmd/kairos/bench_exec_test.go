package main

import (
	"strings"
	"testing"
)

// TestBenchExec runs `kairos bench exec` on a tiny workload: one row per
// conflict rate, and a refusal of a workload bigger than its accounts.
func TestBenchExec(t *testing.T) {
	out, err := runKairos(t, "bench", "exec", "--accounts", "40", "--txs", "20", "--rounds", "1", "--conflict", "0,0.5")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rates []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], "%") {
			rates = append(rates, f[0])
		}
	}
	if !strings.Contains(out, "serial tx/s") || strings.Join(rates, " ") != "0% 50%" {
		t.Errorf("want a header and rows 0%% and 50%%, got rows %v:\n%s", rates, out)
	}
	if _, err := runKairos(t, "bench", "exec", "--accounts", "10", "--txs", "20"); err == nil {
		t.Error("20 transfers over 10 accounts accepted")
	}
}
