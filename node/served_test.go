package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// TestStatusNeverAheadOfBlocks holds node 0 at the fault point between a
// block's state commit and its root record, and checks that everything the
// node reports then (Status, State at height 0) names a height whose block
// it serves, while the held block and its receipts stay invisible.
func TestStatusNeverAheadOfBlocks(t *testing.T) {
	paused := make(chan uint64, 1)
	release := make(chan struct{})
	var once sync.Once
	c := newClusterWith(t, 4, func(i int, cfg *Config) {
		if i != 0 {
			return
		}
		cfg.afterStateCommit = func(h uint64) {
			hold := false
			once.Do(func() { hold = true })
			if hold {
				paused <- h
				<-release
			}
		}
	})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // before the cluster's cleanup closes the nodes
	ids := c.submit(0, 8)

	var h uint64
	select {
	case h = <-paused:
	case <-time.After(60 * time.Second):
		t.Fatalf("node 0 executed no block; status %+v", c.nodes[0].Status())
	}
	nd := c.nodes[0]
	if latest, _ := nd.store.Latest(); latest != h {
		t.Fatalf("state latest %d at the fault point of block %d", latest, h)
	}
	if _, _, err := nd.Block(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("block %d before its root record: err %v, want ErrNotFound", h, err)
	}
	st := nd.Status()
	if st.Height >= h {
		t.Fatalf("status height %d, block %d is not served yet", st.Height, h)
	}
	if st.Height > 0 {
		_, root, err := nd.Block(st.Height)
		if err != nil {
			t.Fatalf("status reports height %d, block fetch: %v", st.Height, err)
		}
		if root != st.StateRoot {
			t.Fatalf("status root %s, block %d root %s", st.StateRoot, st.Height, root)
		}
	}
	sv, err := nd.State(context.Background(), types.StateKey{Module: exec.CounterModule, Key: []byte("k0")}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if sv.Height != st.Height || sv.Root != st.StateRoot {
		t.Fatalf("state at 0 read height %d root %s, status height %d root %s", sv.Height, sv.Root, st.Height, st.StateRoot)
	}
	var blk types.Block
	if err := getCBOR(context.Background(), nd.d, heightKey(nsBlock, h), &blk); err != nil {
		t.Fatalf("block record %d written before the state commit: %v", h, err)
	}
	for _, tx := range blk.Txs {
		if _, _, err := nd.Receipt(tx.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("receipt of %s in unserved block %d: err %v, want ErrNotFound", tx.ID, h, err)
		}
	}

	unblock()
	c.waitFor("node 0 executes every transaction", 60*time.Second, func() bool { return c.executedAll(nd, ids) })
	st = nd.Status()
	if st.Height < h {
		t.Fatalf("status height %d after release, held block was %d", st.Height, h)
	}
	if _, _, err := nd.Block(st.Height); err != nil {
		t.Fatalf("status reports height %d, block fetch: %v", st.Height, err)
	}
}
