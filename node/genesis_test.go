package node

import (
	"errors"
	"testing"
	"time"

	"github.com/kairos-network/kairos/consensus"
)

// TestGenesisMismatchHalts: validator 3 is configured with another
// compaction interval than the three others. It halts with
// ErrGenesisMismatch (peers of weight 3 > F disagree with it); the others
// only log it and go on executing.
func TestGenesisMismatchHalts(t *testing.T) {
	comm := smallGCCommittee(t, 4, 20)
	p := comm.Params
	p.CompactEvery = 2 * testCompactEvery
	other, err := consensus.NewCommittee(comm.ChainID, comm.Epoch, comm.Validators, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if genesisHash(comm) == genesisHash(other) {
		t.Fatal("the genesis hash ignores the parameters")
	}
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		cfg.Committee = comm
		if i == 3 {
			cfg.Committee = other
		}
	})
	odd := c.nodes[3]
	deadline := time.Now().Add(30 * time.Second)
	for !errors.Is(odd.Err(), ErrGenesisMismatch) {
		if time.Now().After(deadline) {
			t.Fatalf("validator 3 with another genesis: Err() = %v, want %v", odd.Err(), ErrGenesisMismatch)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	c.nodes[3] = nil
	t.Cleanup(func() { odd.Close() })
	c.waves(0, 1) // fails if one of the others halted
	t.Logf("validator 3: %v", odd.Err())
}
