package exec

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// wasmCountKey is the one key of the WAT counter (contracts/counter_wat).
var wasmCountKey = []byte("\x05count")

// freshEngine is an Engine that compiles code once and instantiates a new
// instance per frame: the simplest correct engine, the reference the
// PooledEngine is compared with (pool_test.go). The
// _initialize of a Go guest runs in wasi.InitState, as runtime/host's tests
// do.
type freshEngine struct {
	rt   wazero.Runtime
	mu   sync.Mutex
	code map[string]wazero.CompiledModule
}

func newFreshEngine(t testing.TB) *freshEngine {
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
	return &freshEngine{rt: rt, code: map[string]wazero.CompiledModule{}}
}

func (e *freshEngine) Acquire(ctx context.Context, id, method string, load func() ([]byte, error)) (api.Module, api.Function, error) {
	e.mu.Lock()
	cm, ok := e.code[id]
	e.mu.Unlock()
	if !ok {
		b, err := load()
		if err != nil {
			return nil, nil, err
		}
		if cm, err = e.rt.CompileModule(ctx, b); err != nil {
			return nil, nil, err
		}
		e.mu.Lock()
		e.code[id] = cm
		e.mu.Unlock()
	}
	mod, err := e.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", vm.ErrInstantiate, err)
	}
	if init := mod.ExportedFunction("_initialize"); init != nil {
		// A Go guest: run its runtime's start-up in the fixed environment.
		mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal).Set(host.InitGasMax)
		st := wasi.InitState()
		if err := init.CallWithStack(wasi.WithState(ctx, &st), nil); err != nil {
			mod.Close(ctx)
			return nil, nil, fmt.Errorf("%w: _initialize: %w", vm.ErrInstantiate, err)
		}
	}
	return mod, mod.ExportedFunction(method), nil
}

func (e *freshEngine) Release(mod api.Module, _ bool) { mod.Close(context.Background()) }

// wasmWorld is a set of WAT counters installed at genesis (counter i has
// test account i as admin), the pool_dirty module, and the code a
// generator may deploy or upgrade to.
type wasmWorld struct {
	runner   Runner
	counters []types.Address
	// dirty runs testdata/pool_dirty.wasm: every call changes a global
	// and memory, and its return shows whether they were restored. The
	// counters keep nothing between calls, so without it a pool that
	// skipped the restore would pass the random comparisons.
	dirty   types.Address
	genesis []state.Write
	code    [][]byte // counter.wasm, migrate_ok.wasm, migrate_fail.wasm
}

func readWasm(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wasmSetup(t testing.TB, n int) *wasmWorld {
	t.Helper()
	w := &wasmWorld{code: [][]byte{
		readWasm(t, "../../contracts/counter_wat/counter.wasm"),
		readWasm(t, "testdata/migrate_ok.wasm"),
		readWasm(t, "testdata/migrate_fail.wasm"),
	}}
	for i := range n {
		a := nativeAddress("wasm-counter-" + string(rune('a'+i)))
		ws, err := GenesisModule(a, w.code[0], addr(i))
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			ws = ws[:1] // the code records are already there
		}
		w.genesis = append(w.genesis, ws...)
		w.counters = append(w.counters, a)
	}
	w.dirty = nativeAddress("wasm-pool-dirty")
	ws, err := GenesisModule(w.dirty, readWasm(t, "testdata/pool_dirty.wasm"), types.Address{})
	if err != nil {
		t.Fatal(err)
	}
	w.genesis = append(w.genesis, ws...)
	w.runner = NewRunner(NativeModules(), newFreshEngine(t))
	return w
}

// TestParallelEqualsSerialWasm is TestParallelEqualsSerial with a quarter
// of the transactions in real wasm through the host ABI.
func TestParallelEqualsSerialWasm(t *testing.T) {
	w := wasmSetup(t, 3)
	cs := configs(w.runner)
	for seed := range uint64(seeds(t, 8)) {
		if err := runChain(t, seed, cs, 2, 60, w); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWasmStatuses(t *testing.T) {
	w := wasmSetup(t, 1)
	r, c := w.runner, w.counters[0]
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
	s := newStore(t, 4, 0, w.genesis...)
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
	w := wasmSetup(t, 1)
	r, c := w.runner, w.counters[0]
	s := newStore(t, 1, 0, w.genesis...)
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
	w := wasmSetup(t, 1)
	r, c := w.runner, w.counters[0]
	s := newStore(t, 1, 0, w.genesis...)
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
