package exec

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// wasmCountKey is the one key of the WAT counter (contracts/counter_wat).
var wasmCountKey = []byte("\x05count")

// freshInstances is a host.Instances that instantiates a new instance per
// frame: the simplest correct engine, enough to drive the scheduler with
// real wasm until runtime/vm's pools implement host.Instances. The WAT
// counter has no _initialize, so no WASI state is set up here.
type freshInstances struct {
	rt   wazero.Runtime
	mu   sync.Mutex
	code map[types.Address]wazero.CompiledModule
}

func newFreshInstances(t testing.TB) *freshInstances {
	t.Helper()
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false).SetEnabled(api.CoreFeatureReferenceTypes, false)).
		WithMemoryLimitPages(512).
		WithCloseOnContextDone(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := host.Instantiate(ctx, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := wasi.Instantiate(ctx, rt); err != nil {
		t.Fatal(err)
	}
	return &freshInstances{rt: rt, code: map[types.Address]wazero.CompiledModule{}}
}

// deployAt validates, instruments and compiles bin as the module at a.
func (e *freshInstances) deployAt(t testing.TB, a types.Address, bin []byte) {
	t.Helper()
	p, err := deploy.Prepare(bin, validate.Config{Limits: validate.DefaultLimits, Imports: append(host.Funcs(), wasi.Funcs()...)})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := e.rt.CompileModule(context.Background(), p.Instrumented)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.code[a] = cm
	e.mu.Unlock()
}

func (e *freshInstances) Acquire(ctx context.Context, a types.Address) (api.Module, bool, error) {
	e.mu.Lock()
	cm, ok := e.code[a]
	e.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	mod, err := e.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	return mod, err == nil, err
}

func (e *freshInstances) Release(mod api.Module, _ bool) { mod.Close(context.Background()) }

// muxRunner sends native modules to the native runner and the rest to wasm.
type muxRunner struct {
	native *NativeRunner
	wasm   *WasmRunner
}

func (m muxRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	if _, ok := m.native.modules[tx.Body.Payload.Module]; ok {
		return m.native.Run(ctx, o, tx, env)
	}
	return m.wasm.Run(ctx, o, tx, env)
}

// wasmSetup deploys the WAT counter at n addresses and returns a runner of
// the native modules and those.
func wasmSetup(t testing.TB, n int) (Runner, []types.Address) {
	t.Helper()
	bin, err := os.ReadFile("../../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	e := newFreshInstances(t)
	var addrs []types.Address
	for i := range n {
		a := nativeAddress("wasm-counter-" + string(rune('a'+i)))
		e.deployAt(t, a, bin)
		addrs = append(addrs, a)
	}
	return muxRunner{native: NewNativeRunner(NativeModules()), wasm: NewWasmRunner(e)}, addrs
}

// TestParallelEqualsSerialWasm is TestParallelEqualsSerial with a quarter
// of the transactions in real wasm through the host ABI.
func TestParallelEqualsSerialWasm(t *testing.T) {
	r, counters := wasmSetup(t, 3)
	cs := configs(r)
	for seed := range uint64(seeds(t, 8)) {
		if err := runChain(t, seed, cs, 2, 60, counters...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWasmStatuses(t *testing.T) {
	r, cs := wasmSetup(t, 1)
	c := cs[0]
	T := int64(2e12)
	txs := []*types.Tx{
		mkTx(0, 1, T, call(c, "increment", nil), rw(c, wasmCountKey)),
		mkTx(1, 1, T, call(c, "increment", nil), rw(c, wasmCountKey)),
		mkTx(2, 1, T, call(c, "increment", nil), rd(c, wasmCountKey)),
		mkTx(3, 1, T, call(c, "increment", nil)),
		mkTx(0, 2, T, call(nativeAddress("none"), "increment", nil)),
		mkTx(0, 2, T, call(c, "get", nil), rd(c, wasmCountKey)),
	}
	want := []types.Status{types.StatusOK, types.StatusOK, types.StatusAccessViolation, types.StatusAccessViolation, types.StatusInvalid, types.StatusOK}
	s := newStore(t, 4, 0)
	res, err := New(r, Options{Workers: 2}).ExecuteBlock(context.Background(), s, mkBlock(2, 1e12, txs), txs)
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range res.Receipts {
		if rc.Status != want[i] {
			t.Errorf("tx %d: %s (%s), want %s", i, rc.Status, rc.Error, want[i])
		}
		if rc.Status == types.StatusAccessViolation && rc.GasUsed == 0 {
			t.Errorf("tx %d: access violation charged no gas", i)
		}
	}
	if got := u64(res.Receipts[5].Return); got != 2 {
		t.Fatalf("count read back %d, want 2", got)
	}
	if len(res.Receipts[1].Events) != 1 || res.Receipts[1].Events[0].Module != c {
		t.Fatalf("events %v", res.Receipts[1].Events)
	}
	if got := u64(valueOf(res.Writes, c, wasmCountKey)); got != 2 {
		t.Fatalf("count written %d, want 2", got)
	}
}

func TestSimulateWasm(t *testing.T) {
	r, cs := wasmSetup(t, 1)
	c := cs[0]
	s := newStore(t, 1, 0)
	x := New(r, Options{})
	sim, err := x.Simulate(context.Background(), s, BlockEnv{Height: 2, Time: 1e12}, mkTx(0, 1, 1e18, call(c, "increment", nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := []types.Access{rw(c, wasmCountKey)}
	if sim.Receipt.Status != types.StatusOK || string(types.MustEncode(sim.Access)) != string(types.MustEncode(want)) {
		t.Fatalf("simulate: %s (%s) access %v", sim.Receipt.Status, sim.Receipt.Error, sim.Access)
	}
	txs := []*types.Tx{mkTx(0, 1, 1e18, call(c, "increment", nil), sim.Access...)}
	res, err := x.ExecuteBlock(context.Background(), s, mkBlock(2, 1e12, txs), txs)
	if err != nil {
		t.Fatal(err)
	}
	if rc := res.Receipts[0]; rc.Status != types.StatusOK || rc.GasUsed != sim.Receipt.GasUsed {
		t.Fatalf("block: %s gas %d, simulated gas %d", rc.Status, rc.GasUsed, sim.Receipt.GasUsed)
	}
}

// TestSimulateWasmFailure: a simulated transaction that aborts still
// reports what it touched (from the host's record), so a client can see it.
func TestSimulateWasmFailure(t *testing.T) {
	r, cs := wasmSetup(t, 1)
	c := cs[0]
	s := newStore(t, 1, 0)
	// A count of the wrong size makes the WAT counter abort after reading it.
	if _, err := s.Commit(context.Background(), 2, []state.Write{{Key: types.StateKey{Module: c, Key: wasmCountKey}, Value: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	sim, err := New(r, Options{}).Simulate(context.Background(), s, BlockEnv{Height: 3, Time: 1e12}, mkTx(0, 1, 1e18, call(c, "increment", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if sim.Receipt.Status != types.StatusAborted || len(sim.Access) != 1 || sim.Access[0].Module != c || len(sim.Writes) != 0 {
		t.Fatalf("simulate: %s (%s) access %v writes %v", sim.Receipt.Status, sim.Receipt.Error, sim.Access, sim.Writes)
	}
}
