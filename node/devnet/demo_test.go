package devnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/runtime/exec"
)

// TestDemoDeploysAndAgrees runs the demo on a 4-validator devnet through
// the HTTP APIs: the WAT counter and (without -race, where a Go guest takes
// seconds per instantiation) the Go token are deployed by transactions and
// called; the demo verifies a balance's proof against a checkpoint, and
// every validator executed the same blocks to the same roots.
func TestDemoDeploysAndAgrees(t *testing.T) {
	counter, err := os.ReadFile("../../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DemoConfig{Counter: counter, Accounts: 3, Rounds: 2}
	if !raceEnabled && os.Getenv("KAIROS_EXEC_SKIP_GO") == "" {
		if cfg.Token, err = exec.BuildGoGuest("../../contracts/token"); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}()
	cfg.Committee = d.Committee
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var out bytes.Buffer
	rep, err := Demo(ctx, &out, d.APIs, cfg)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "proof verified") {
		t.Fatal("no verified proof line")
	}
	// Holder i sends i+1 tokens to holder i+1 per round, so holder 1 (whose
	// balance is proven) gains 1 and loses 2 per round; without the token
	// the proof is of the counter, incremented once.
	want := uint64(1)
	if cfg.Token != nil {
		want = 1_000_000 - uint64(cfg.Rounds)
		if rep.Transfers != 6 {
			t.Fatalf("%d transfers, want 6", rep.Transfers)
		}
	}
	if rep.ProofValue != want {
		t.Fatalf("proven value %d, want %d", rep.ProofValue, want)
	}
	// Every validator reaches the certified height with the same blocks
	// and roots.
	for !allAtLeast(d, rep.ProofHeight) {
		if ctx.Err() != nil {
			t.Fatalf("validators did not all reach height %d", rep.ProofHeight)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	for h := uint64(1); h <= rep.ProofHeight; h++ {
		b0, r0, err := d.Nodes[0].Block(h)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range d.Nodes[1:] {
			b, r, err := n.Block(h)
			if err != nil || b.ID() != b0.ID() || r != r0 {
				t.Fatalf("validator %d at height %d: block %v root %s (%v), validator 0: %v %s", i+1, h, b.ID(), r, err, b0.ID(), r0)
			}
		}
	}
}

func allAtLeast(d *Devnet, h uint64) bool {
	for _, n := range d.Nodes {
		if n.Status().Height < h {
			return false
		}
	}
	return true
}

func TestDemoConfigErrors(t *testing.T) {
	for _, c := range []DemoConfig{
		{},
		{Counter: []byte{0}},
		{Counter: []byte{0}, Committee: &consensus.Committee{}, Accounts: 1},
		{Counter: []byte{0}, Committee: &consensus.Committee{}, Accounts: MaxDemoAccounts + 1},
		{Counter: []byte{0}, Committee: &consensus.Committee{}, Rounds: -1},
		{Counter: []byte{0}, Committee: &consensus.Committee{}, Rounds: MaxDemoRounds + 1},
	} {
		if _, err := Demo(context.Background(), io.Discard, []string{"http://127.0.0.1:1"}, c); !errors.Is(err, ErrDemo) {
			t.Errorf("Demo(%+v) = %v, want %v", c, err, ErrDemo)
		}
	}
}
