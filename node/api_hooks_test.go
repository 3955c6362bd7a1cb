package node

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// TestModuleAndSimulateHeights: Module answers at the served height (its
// record is provable there), Simulate on the version the next block
// executes on, and both report the height they read.
func TestModuleAndSimulateHeights(t *testing.T) {
	c := newCluster(t, 4)
	ctx := context.Background()
	code, err := os.ReadFile("../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	inst := exec.InstanceAddress(wasmSender(), 1)
	if _, err := c.nodes[0].Module(ctx, inst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("module before its deploy: %v, want ErrNotFound", err)
	}
	id, err := c.nodes[0].SubmitTx(ctx, wasmTx(1, types.Payload{Kind: types.Deploy, Code: code}))
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor("the deploy executes", 60*time.Second, func() bool { return c.executedAll(c.nodes[0], []types.Hash{id}) })
	m, err := c.nodes[0].Module(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	_, at, _ := c.nodes[0].Receipt(id)
	if m.Size != len(code) || m.Height < at || m.Height > c.nodes[0].Status().Height {
		t.Fatalf("module %+v: size want %d, height want in [%d, %d]", m, len(code), at, c.nodes[0].Status().Height)
	}
	sv, err := c.nodes[0].State(ctx, types.StateKey{Module: exec.ModulesModule, Key: inst[:]}, m.Height, true)
	if err != nil || sv.Value == nil {
		t.Fatalf("module record at the reported height %d: %+v, %v", m.Height, sv, err)
	}
	if err := types.Verify(sv.Root, sv.Proof); err != nil {
		t.Fatal(err)
	}
	var call types.Tx
	if err := types.Decode(wasmTx(2, types.Payload{Kind: types.Call, Module: inst, Method: "increment"}), &call); err != nil {
		t.Fatal(err)
	}
	res, h, err := c.nodes[0].Simulate(ctx, &call)
	if latest, _ := c.nodes[0].store.Latest(); err != nil || res.Receipt.Status != types.StatusOK || h < at || h > latest {
		t.Fatalf("simulate: %+v at %d (deploy at %d), %v", res, h, at, err)
	}
}
