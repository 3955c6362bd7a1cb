package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchExec runs `kairos bench exec` on a tiny workload: one row per
// conflict rate, a CPU profile when asked, and a refusal of a workload
// bigger than its accounts.
func TestBenchExec(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	out, err := runKairos(t, "bench", "exec", "--accounts", "40", "--txs", "20", "--rounds", "1", "--conflict", "0,0.5", "--cpuprofile", prof)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("--cpuprofile wrote no profile: %v", err)
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
	out, err = runKairos(t, "bench", "exec", "--module", "wat", "--wasm", "../../contracts/counter_wat/counter.wasm", "--accounts", "40", "--txs", "20", "--rounds", "1", "--conflict", "1")
	if err != nil || !strings.Contains(out, "WAT counters") || !strings.Contains(out, "Reuses:") {
		t.Errorf("--module wat: %v\n%s", err, out)
	}
	if _, err := runKairos(t, "bench", "exec", "--module", "evm"); err == nil {
		t.Error("--module evm accepted")
	}
}
