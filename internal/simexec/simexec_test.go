package simexec

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/consensus/sim"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

const (
	chainID = "sim"
	// validUntil is well after any simulated block time (the simulator's
	// clocks start at unix 1 700 000 000 s) and within MaxValidity of it.
	validUntil = int64(1_700_000_000e9 + 1800e9)
	txGas      = 100_000
	// counterKeys is how many counters the transactions share: few
	// enough that a block's transactions conflict and the parallel
	// schedule has dependencies to respect.
	counterKeys = 5
)

// executor is a sim.Executor: one store and executor per validator, and
// the encoded transactions by id.
type executor struct {
	t      testing.TB
	stores []*state.Store
	execs  []*exec.Executor
	bodies map[order.TxID][]byte
	// corrupt, when set, lets the second validator to execute height 2
	// execute it wrongly (the negative control of the S2 check).
	corrupt bool
	atTwo   int
}

func newExecutor(t testing.TB, n int) *executor {
	x := &executor{t: t, bodies: map[order.TxID][]byte{}}
	runner := exec.NewNativeRunner(exec.NativeModules())
	for v := range n {
		x.stores = append(x.stores, openStore(t))
		x.execs = append(x.execs, exec.New(runner, exec.Options{Workers: 1 + v%2}))
	}
	return x
}

func openStore(t testing.TB) *state.Store {
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// txID builds and signs the client's n-th transaction: sender n (a fresh
// account, nonce 1) increments counter n mod counterKeys.
func (x *executor) txID(n int) order.TxID {
	seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("simexec-sender"), uint64(n)))
	key := []byte(fmt.Sprintf("c%d", n%counterKeys))
	tx := types.SignTx(types.TxBody{ChainID: chainID, Nonce: 1, ValidUntil: validUntil, GasLimit: txGas,
		Access:  []types.Access{{Module: exec.CounterModule, Key: key, Mode: types.Write}},
		Payload: types.Payload{Kind: types.Call, Module: exec.CounterModule, Method: "incr", Args: key}},
		ed25519.NewKeyFromSeed(seed[:]))
	id := order.TxID(tx.ID())
	x.bodies[id] = types.MustEncode(tx)
	return id
}

func (x *executor) Execute(v int, b *order.Block) (types.Root, error) {
	ctx := context.Background()
	blk := &types.Block{Height: b.Height, Parent: types.Hash(b.Parent), Time: b.Time, Watermark: b.Watermark}
	txs := make([]*types.Tx, len(b.Txs))
	for i, o := range b.Txs {
		body, ok := x.bodies[o.ID]
		if !ok {
			return types.Root{}, fmt.Errorf("unknown tx %x", o.ID[:4])
		}
		tx, err := types.DecodeTx(body, chainID, b.Time, types.DefaultTxLimits)
		if err != nil {
			return types.Root{}, fmt.Errorf("S5: tx %x: %w", o.ID[:4], err)
		}
		txs[i] = tx
		blk.Txs = append(blk.Txs, types.OrderedTx{ID: types.Hash(o.ID), TS: o.TS})
	}
	store := x.stores[v]
	res, err := x.execs[v].ExecuteBlock(ctx, store, blk, txs)
	if err != nil {
		return types.Root{}, err
	}
	for i, r := range res.Receipts {
		if r.Status != types.StatusOK {
			return types.Root{}, fmt.Errorf("S5: tx %x at height %d: %v %s", b.Txs[i].ID[:4], b.Height, r.Status, r.Error)
		}
	}
	writes := res.Writes
	if b.Height == 2 {
		x.atTwo++
	}
	if x.corrupt && b.Height == 2 && x.atTwo == 2 {
		writes = append(writes, state.Write{Key: types.StateKey{Module: exec.CounterModule, Key: []byte("zz")}, Value: []byte{1}})
	}
	return store.Commit(ctx, b.Height, writes)
}

func (x *executor) Wipe(v int) { x.stores[v] = openStore(x.t) }

func run(t *testing.T, seed uint64, corrupt bool) *sim.Result {
	cfg := sim.DefaultConfig(seed)
	x := newExecutor(t, cfg.Validators)
	x.corrupt = corrupt
	cfg.Executor, cfg.TxID = x, x.txID
	return sim.Run(cfg)
}

// seeds is how many seeds TestSimS2 runs: a few dozen in make test,
// more with KAIROS_SIMEXEC_SEEDS (make sim).
func seeds(t *testing.T) uint64 {
	if s := os.Getenv("KAIROS_SIMEXEC_SEEDS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KAIROS_SIMEXEC_SEEDS: %v", err)
		}
		return n
	}
	return 24
}

// TestSimS2 runs seeds with every fault kind and a real executor behind
// every validator: no safety or liveness violation, S2 at every height,
// and the blocks were really executed.
func TestSimS2(t *testing.T) {
	for seed := range seeds(t) {
		r := run(t, seed, false)
		if len(r.Violations) > 0 {
			t.Errorf("seed %d: %d violations, first: %s\nfaults %v", seed, len(r.Violations), r.Violations[0], r.Faults)
			continue
		}
		if r.Executed == 0 || r.Released == 0 {
			t.Errorf("seed %d: executed %d heights, released %d txs: nothing was checked", seed, r.Executed, r.Released)
		}
	}
}

// TestSimS2CanFail: a validator whose state diverges at height 2 is
// reported as an S2 violation (the check is not vacuous).
func TestSimS2CanFail(t *testing.T) {
	r := run(t, 1, true)
	for _, v := range r.Violations {
		if strings.Contains(v, "S2:") {
			return
		}
	}
	t.Fatalf("diverging root not reported; violations: %v", r.Violations)
}
