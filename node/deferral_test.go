package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// seqTx increments counter key k as the nonce-th transaction of sender s,
// valid for validity.
func seqTx(s int, nonce uint64, k string, validity time.Duration) []byte {
	seed := sha256.Sum256([]byte(fmt.Sprintf("node-deferral-sender-%d", s)))
	key := []byte(k)
	body := types.TxBody{ChainID: testChain, Nonce: nonce, ValidUntil: time.Now().Add(validity).UnixNano(),
		GasLimit: 1_000_000, Access: []types.Access{{Module: exec.CounterModule, Key: key, Mode: types.Write}},
		Payload: types.Payload{Kind: types.Call, Module: exec.CounterModule, Method: "incr", Args: key}}
	return types.MustEncode(types.SignTx(body, ed25519.NewKeyFromSeed(seed[:])))
}

// TestClusterDefersFutureNonces: four nodes. Three senders' nonces 2..5
// are ordered into blocks before their nonce 1 (the gap); every node
// defers them, a node restarted meanwhile keeps the same deferred set
// (it is in the state), and once each nonce 1 executes the rest execute
// in nonce order at later heights on every node, with identical blocks
// and roots. A fourth sender's gap never closes: its transaction expires
// with a final receipt, in an empty block of the idle chain.
func TestClusterDefersFutureNonces(t *testing.T) {
	// Empty blocks every half second of consensus time: the stranded
	// transaction expires without further traffic.
	base := testCommittee(t, 4)
	p := base.Params
	p.EmptyBlockInterval = int64(500 * time.Millisecond)
	comm, err := consensus.NewCommittee(base.ChainID, base.Epoch, base.Validators, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, 4, func(i int, cfg *Config) { cfg.Committee = comm })
	ctx := context.Background()
	const senders, last = 3, 5
	ids := make([][]types.Hash, senders) // ids[s][nonce-1]
	for s := range senders {
		ids[s] = make([]types.Hash, last)
	}
	var ahead []types.Hash
	for s := range senders {
		for nonce := uint64(last); nonce >= 2; nonce-- {
			id, err := c.nodes[int(nonce)%4].SubmitTx(ctx, seqTx(s, nonce, fmt.Sprint("d", s), time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			ids[s][nonce-1] = id
			ahead = append(ahead, id)
		}
	}
	// Valid long enough to be ordered (and deferred) on a loaded machine.
	stranded, err := c.nodes[0].SubmitTx(ctx, seqTx(senders, 3, "x", 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ahead = append(ahead, stranded)
	deferredOn := func(nd *Node, ids []types.Hash) bool {
		for _, id := range ids {
			if _, _, err := nd.Receipt(id); !errors.Is(err, ErrDeferred) {
				return false
			}
		}
		return true
	}
	c.waitFor("every node defers the future nonces", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !deferredOn(nd, ahead) {
				return false
			}
		}
		return true
	})
	c.stop(3)
	c.start(3)
	for s := range senders {
		id, err := c.nodes[s].SubmitTx(ctx, seqTx(s, 1, fmt.Sprint("d", s), time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		ids[s][0] = id
	}
	var all []types.Hash
	for s := range senders {
		all = append(all, ids[s]...)
	}
	c.waitFor("every node executes all nonces", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !c.executedAll(nd, all) {
				return false
			}
		}
		return true
	})
	for s := range senders {
		var prev uint64
		for nonce, id := range ids[s] {
			rc, h, err := c.nodes[0].Receipt(id)
			want := fmt.Sprintf("%016x", nonce+1)
			if err != nil || rc.Status != types.StatusOK || fmt.Sprintf("%x", rc.Return) != want || h < prev {
				t.Fatalf("sender %d nonce %d: receipt %+v at %d (previous nonce at %d), %v; want return %s", s, nonce+1, rc, h, prev, err, want)
			}
			prev = h
		}
	}
	c.waitFor("every node settles the stranded transaction", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !c.executedAll(nd, []types.Hash{stranded}) {
				return false
			}
		}
		return true
	})
	if rc, _, err := c.nodes[0].Receipt(stranded); err != nil || rc.Status != types.StatusInvalid || !strings.Contains(rc.Error, "expired while deferred") {
		t.Fatalf("stranded tx: %+v, %v", rc, err)
	}
	t.Logf("height %d on all nodes", c.sameChain())
}
