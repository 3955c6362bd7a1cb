package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

const testChain = "node-test"

func validatorKey(i int) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(fmt.Sprintf("node-test-validator-%d", i)))
	return ed25519.NewKeyFromSeed(s[:])
}

func testCommittee(t testing.TB, n int) *consensus.Committee {
	t.Helper()
	vals := make([]consensus.Validator, n)
	for i := range vals {
		pub := validatorKey(i).Public().(ed25519.PublicKey)
		id, err := p2p.PeerID(pub)
		if err != nil {
			t.Fatal(err)
		}
		vals[i] = consensus.Validator{PeerID: id.String(), Key: pub, Weight: 1}
	}
	p := consensus.DefaultParams()
	// Fewer rounds per second keep four nodes light on a shared machine;
	// a deep gc window lets a restarted node catch up from certificates.
	p.MinRoundDelay = int64(50 * time.Millisecond)
	p.GCDepth = 1000
	c, err := consensus.NewCommittee(testChain, 0, vals, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type cluster struct {
	t     testing.TB
	comm  *consensus.Committee
	dirs  []string
	nodes []*Node
	tweak func(i int, cfg *Config) // adjusts node i's config before start; may be nil
}

func newCluster(t testing.TB, n int) *cluster {
	return newClusterWith(t, n, nil)
}

func newClusterWith(t testing.TB, n int, tweak func(i int, cfg *Config)) *cluster {
	c := &cluster{t: t, comm: testCommittee(t, n), nodes: make([]*Node, n), tweak: tweak}
	root := t.TempDir()
	for i := 0; i < n; i++ {
		c.dirs = append(c.dirs, filepath.Join(root, fmt.Sprint(i)))
		c.start(i)
	}
	t.Cleanup(func() {
		for i, nd := range c.nodes {
			if nd != nil {
				if err := nd.Close(); err != nil {
					t.Errorf("close node %d: %v", i, err)
				}
			}
		}
	})
	return c
}

// start starts node i with every running node as a bootstrap peer.
func (c *cluster) start(i int) {
	var boot []peer.AddrInfo
	for _, nd := range c.nodes {
		if nd != nil {
			boot = append(boot, nd.AddrInfo())
		}
	}
	cfg := Config{Committee: c.comm, Key: validatorKey(i), Dir: c.dirs[i], Workers: 1,
		Native: exec.NativeModules(), Bootstrap: boot}
	if c.tweak != nil {
		c.tweak(i, &cfg)
	}
	nd, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.nodes[i] = nd
}

func (c *cluster) stop(i int) {
	if err := c.nodes[i].Close(); err != nil {
		c.t.Fatalf("stop node %d: %v", i, err)
	}
	c.nodes[i] = nil
}

// waitFor polls cond until it holds, failing the test at the deadline or
// when a node halts.
func (c *cluster) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		for i, nd := range c.nodes {
			if nd != nil && nd.Err() != nil {
				c.t.Fatalf("%s: node %d halted: %v", what, i, nd.Err())
			}
		}
		if time.Now().After(deadline) {
			for i, nd := range c.nodes {
				if nd != nil {
					c.t.Logf("node %d: %+v", i, nd.Status())
				}
			}
			c.t.Fatalf("%s: not reached within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not waiting for time
	}
}

// counterTx increments counter key k; every transaction has its own sender
// so nonces never depend on the order.
func counterTx(seq int, k string) []byte {
	s := sha256.Sum256([]byte(fmt.Sprintf("node-test-sender-%d", seq)))
	key := []byte(k)
	body := types.TxBody{ChainID: testChain, Nonce: 1, ValidUntil: time.Now().Add(time.Minute).UnixNano(),
		GasLimit: 1_000_000, Access: []types.Access{{Module: exec.CounterModule, Key: key, Mode: types.Write}},
		Payload: types.Payload{Kind: types.Call, Module: exec.CounterModule, Method: "incr", Args: key}}
	return types.MustEncode(types.SignTx(body, ed25519.NewKeyFromSeed(s[:])))
}

// submit sends txs [from, to) round robin to the running nodes.
func (c *cluster) submit(from, to int) []types.Hash {
	var ids []types.Hash
	var live []*Node
	for _, nd := range c.nodes {
		if nd != nil {
			live = append(live, nd)
		}
	}
	for i := from; i < to; i++ {
		id, err := live[i%len(live)].SubmitTx(context.Background(), counterTx(i, fmt.Sprintf("k%d", i%3)))
		if err != nil {
			c.t.Fatalf("submit %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (c *cluster) executedAll(nd *Node, ids []types.Hash) bool {
	for _, id := range ids {
		if _, _, err := nd.Receipt(id); err != nil {
			return false
		}
	}
	return true
}

// sameChain checks that the running nodes hold identical blocks and roots
// up to the lowest height among them, and returns that height.
func (c *cluster) sameChain() uint64 {
	c.t.Helper()
	low := uint64(1 << 63)
	for _, nd := range c.nodes {
		if nd != nil {
			low = min(low, nd.Status().Height)
		}
	}
	for h := uint64(1); h <= low; h++ {
		var ref *types.Block
		var refRoot types.Root
		for i, nd := range c.nodes {
			if nd == nil {
				continue
			}
			b, root, err := nd.Block(h)
			if err != nil {
				c.t.Fatalf("node %d block %d: %v", i, h, err)
			}
			if ref == nil {
				ref, refRoot = b, root
				continue
			}
			if b.ID() != ref.ID() || root != refRoot {
				c.t.Fatalf("node %d differs at height %d: block %s root %s, node 0 block %s root %s",
					i, h, b.ID(), root, ref.ID(), refRoot)
			}
		}
	}
	return low
}

// wasmTx is a transaction of the wasm test sender (its nonce-th).
func wasmTx(nonce uint64, p types.Payload, access ...types.Access) []byte {
	s := sha256.Sum256([]byte("node-test-wasm-sender"))
	body := types.TxBody{ChainID: testChain, Nonce: nonce, ValidUntil: time.Now().Add(time.Minute).UnixNano(),
		GasLimit: 10_000_000, Access: access, Payload: p}
	return types.MustEncode(types.SignTx(body, ed25519.NewKeyFromSeed(s[:])))
}

func wasmSender() types.Address {
	s := sha256.Sum256([]byte("node-test-wasm-sender"))
	return types.AddressFromPublicKey(ed25519.NewKeyFromSeed(s[:]).Public().(ed25519.PublicKey))
}

// TestClusterAgreesAndRestarts runs four real nodes (libp2p on 127.0.0.1,
// pebble in temp dirs, each its own wasm engine): they execute the same
// blocks to the same roots, including a wasm deploy and a call of it;
// with one node down the other three go on; the restarted node catches up
// to the same blocks and roots.
func TestClusterAgreesAndRestarts(t *testing.T) {
	c := newCluster(t, 4)
	counter, err := os.ReadFile("../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	deployID, err := c.nodes[1].SubmitTx(context.Background(), wasmTx(1, types.Payload{Kind: types.Deploy, Code: counter}))
	if err != nil {
		t.Fatal(err)
	}
	again := counterTx(100, "k0") // sent again once executed
	againID, err := c.nodes[0].SubmitTx(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	ids := append(c.submit(0, 24), deployID, againID)
	c.waitFor("all nodes execute the first batch", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !c.executedAll(nd, ids) {
				return false
			}
		}
		return true
	})
	h := c.sameChain()
	for i, id := range ids {
		r, _, err := c.nodes[0].Receipt(id)
		if err != nil || r.Status != types.StatusOK {
			t.Fatalf("tx %d: receipt %+v, %v", i, r, err)
		}
	}
	c.waitFor("a checkpoint certificate", 30*time.Second, func() bool {
		cc, err := c.nodes[0].LatestCheckpoint()
		return err == nil && cc.Height >= 1
	})
	t.Logf("first batch: height %d on all nodes", h)
	// An executed transaction sent again is not held (it would only wait
	// for its expiry): the API still answers with its receipt.
	if id, err := c.nodes[0].SubmitTx(context.Background(), again); err != nil || id != againID || c.nodes[0].Pending(id) {
		t.Fatalf("resubmitted executed tx: id %s (want %s), err %v, pending %v", id, againID, err, c.nodes[0].Pending(id))
	}
	// A core asking for an executed payload gets it from the records, with
	// no peer asked (this node's requests fail while isolated), and as
	// executed: held for votes, never acked again.
	c.nodes[0].isolated.Store(true)
	var delivered, executed []consensus.TxID
	c.nodes[0].fetchTxs([]consensus.TxID{consensus.TxID(againID)}, func(got, ex []consensus.TxID) {
		delivered, executed = append(delivered, got...), append(executed, ex...)
	})
	c.nodes[0].isolated.Store(false)
	if len(delivered) != 0 || len(executed) != 1 || executed[0] != consensus.TxID(againID) || c.nodes[0].Pending(againID) {
		t.Fatalf("fetch of an executed payload delivered %v, executed %v, pending %v", delivered, executed, c.nodes[0].Pending(againID))
	}

	c.stop(3)
	inst := exec.InstanceAddress(wasmSender(), 1)
	incrID, err := c.nodes[2].SubmitTx(context.Background(), wasmTx(2, types.Payload{Kind: types.Call, Module: inst, Method: "increment"},
		types.Access{Module: inst, Key: []byte("\x05count"), Mode: types.Write}))
	if err != nil {
		t.Fatal(err)
	}
	more := append(c.submit(24, 36), incrID)
	c.waitFor("three nodes execute without the fourth", 60*time.Second, func() bool {
		for _, nd := range c.nodes[:3] {
			if !c.executedAll(nd, more) {
				return false
			}
		}
		return true
	})
	down := c.sameChain()
	if r, _, err := c.nodes[0].Receipt(incrID); err != nil || r.Status != types.StatusOK || string(r.Return) != "\x00\x00\x00\x00\x00\x00\x00\x01" {
		t.Fatalf("increment of the deployed counter: %+v, %v", r, err)
	}
	if down <= h {
		t.Fatalf("height did not advance with one node down: %d", down)
	}

	c.start(3)
	all := append(append([]types.Hash(nil), ids...), more...)
	c.waitFor("the restarted node catches up", 60*time.Second, func() bool {
		return c.executedAll(c.nodes[3], all) && c.nodes[3].Status().Height >= down
	})
	t.Logf("after restart: height %d on all nodes", c.sameChain())
	// The restarted node's replayed core fetches payloads it had before;
	// executed ones do not stay in any pool.
	c.waitFor("every pool drains", 30*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.Status().Mempool != 0 {
				return false
			}
		}
		return true
	})
	for i, nd := range c.nodes { // node 3 loaded its index from disk
		indexCoversRecords(t, i, nd)
	}

	// A validator that lost its disk asks peers how far it had signed,
	// re-syncs the DAG from round 1 and re-executes every block.
	c.stop(2)
	if err := os.RemoveAll(c.dirs[2]); err != nil {
		t.Fatal(err)
	}
	c.start(2)
	c.waitFor("the wiped node catches up", 60*time.Second, func() bool {
		return c.executedAll(c.nodes[2], all)
	})
	t.Logf("after wipe: height %d on all nodes", c.sameChain())
	for i, nd := range c.nodes {
		if st := nd.Status(); st.Conflicts != 0 {
			t.Fatalf("node %d saw %d conflicting certificates (equivocation)", i, st.Conflicts)
		}
	}

	// A quorum certifying another root at an executed height stops the node.
	b, root, err := c.nodes[3].Block(1)
	if err != nil {
		t.Fatal(err)
	}
	root[0] ^= 1
	for v := 0; v < 3; v++ {
		vote := &consensus.CheckpointVote{Height: 1, BlockID: b.ID(), StateRoot: root, Signer: uint32(v)}
		c.comm.SignCheckpoint(consensus.Ed25519Signer(validatorKey(v)), vote)
		c.nodes[3].onCheckpointVote(vote)
	}
	if err := c.nodes[3].Err(); !errors.Is(err, ErrStateDiverged) {
		t.Fatalf("after a certified foreign root: Err() = %v, want %v", err, ErrStateDiverged)
	}
	if _, err := c.nodes[3].SubmitTx(context.Background(), counterTx(99, "k0")); !errors.Is(err, ErrStopped) {
		t.Fatalf("submit to a halted node: %v, want %v", err, ErrStopped)
	}
}
