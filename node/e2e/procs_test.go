package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node/devnet"
)

// TestDevnetProcs: `kairos devnet --procs` as a library call. The devnet of
// four `kairos node` processes runs the demo (deploy, call, checkpoint-
// verified proof), stops cleanly on interrupt (every process exits 0), and
// resumes from its homes to run the demo again at greater heights.
func TestDevnetProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process devnet")
	}
	bin := buildKairos(t)
	counter, err := os.ReadFile("../../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	from := 24000 + (os.Getpid()%2000)*8
	p2p := freeRun(t, validators, from)
	cfg := devnet.ProcsConfig{Bin: bin, Dir: filepath.Join(t.TempDir(), "homes"), Validators: validators,
		APIPort: freeRun(t, validators, p2p+validators), P2PPort: p2p, Ready: 60 * time.Second}
	var heights []uint64
	for run := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		p, err := devnet.StartProcs(ctx, cfg)
		if err != nil {
			cancel()
			t.Fatalf("run %d: %v", run, err)
		}
		_, err = devnet.Demo(ctx, io.Discard, p.APIs, devnet.DemoConfig{Counter: counter, Committee: p.Committee, Accounts: 2, Rounds: 1})
		var h uint64
		if err == nil {
			var st *devnet.Status
			if st, err = devnet.NewClient(p.APIs[0]).Status(ctx); err == nil {
				h = st.Height
			}
		}
		cancel()
		if cerr := p.Close(); cerr != nil {
			t.Fatalf("run %d: stop: %v", run, cerr)
		}
		if err != nil {
			for _, l := range p.Logs {
				b, _ := os.ReadFile(l)
				t.Logf("--- %s:\n%s", l, b[max(0, len(b)-3000):])
			}
			t.Fatalf("run %d: %v", run, err)
		}
		heights = append(heights, h)
	}
	if heights[1] <= heights[0] {
		t.Fatalf("the resumed devnet is at height %d, the first run ended at %d", heights[1], heights[0])
	}
	t.Logf("heights after each run: %v", heights)
}
