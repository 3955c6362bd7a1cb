package exec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/types"
)

func newPooledEngine(t testing.TB, cfg PoolConfig) *PooledEngine {
	t.Helper()
	e, err := NewPooledEngine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// TestParallelEqualsSerialWasmPooled is the metamorphic test of
// TestParallelEqualsSerialWasm with the reference on the fresh-instance
// engine and every other config on one shared pooled engine: receipts,
// gas, events, write sets and roots must be byte-identical, although the
// pooled instances run transactions in different prior orders across
// configs, blocks and seeds, and are discarded after the random failing
// transactions; a second engine bounded to one module evicts code all the
// time. KAIROS_EXEC_SEEDS sets the number of seeds (make exec-soak).
func TestParallelEqualsSerialWasmPooled(t *testing.T) {
	w := wasmSetup(t, 3)
	e := newPooledEngine(t, DefaultPoolConfig())
	pooled := NewRunner(NativeModules(), e)
	cs := []config{{name: "fresh serial", x: New(w.runner, Options{}), serial: true}, {name: "pooled serial", x: New(pooled, Options{}), serial: true}}
	for _, n := range []int{1, 2, 8} {
		cs = append(cs, config{name: fmt.Sprintf("pooled workers=%d", n), x: New(pooled, Options{Workers: n})})
	}
	// A cache of one module and one idle instance: eviction churn between
	// the counters' code and the code the generator deploys.
	tinyCfg := DefaultPoolConfig()
	tinyCfg.CodeMax, tinyCfg.IdlePerCode = 1, 1
	tiny := newPooledEngine(t, tinyCfg)
	cs = append(cs, config{name: "tiny pool workers=2", x: New(NewRunner(NativeModules(), tiny), Options{Workers: 2})})
	for seed := range uint64(seeds(t, 6)) {
		if err := runChain(t, seed, cs, 2, 60, w); err != nil {
			t.Fatal(err)
		}
	}
	// Without reuse the comparison would only test fresh against fresh.
	if st := e.Stats(); st.Reuses == 0 || st.Instantiations >= st.Reuses {
		t.Fatalf("the pooled engine hardly reused instances: %+v", st)
	}
	if st := tiny.Stats(); st.Evictions == 0 || st.Reuses == 0 {
		t.Fatalf("the tiny pool did not churn: %+v", st)
	}
}

// TestPooledRestoresEveryState runs, on one pooled instance where the
// bounds allow just one per module, a sequence that dirties a global and
// linear memory, traps and grows memory, serially and with 2 workers, and
// compares it with the fresh engine byte for byte. Every successful call
// must see the post-_initialize state (11, 11, 1 page), whatever ran on
// the instance before.
func TestPooledRestoresEveryState(t *testing.T) {
	dirty, counter := nativeAddress("pool-dirty"), nativeAddress("pool-counter")
	ws, err := GenesisModule(dirty, readWasm(t, "testdata/pool_dirty.wasm"), types.Address{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := GenesisModule(counter, readWasm(t, "../../contracts/counter_wat/counter.wasm"), types.Address{})
	if err != nil {
		t.Fatal(err)
	}
	genesis := append(ws, cs...)
	cfg := DefaultPoolConfig()
	cfg.IdlePerCode = 1
	e := newPooledEngine(t, cfg)
	runners := map[string]Runner{"fresh": NewRunner(nil, newFreshEngine(t)), "pooled": NewRunner(nil, e)}
	T := int64(1e18)
	// Transactions of sender i in the order given; each block is executed
	// by each runner serially and with 2 workers, into its own store.
	var txs []*types.Tx
	nonce := map[int]uint64{}
	tx := func(sender int, m types.Address, method string, access ...types.Access) {
		nonce[sender]++
		txs = append(txs, mkTx(sender, nonce[sender], T, call(m, method, nil), access...))
	}
	for _, method := range []string{"dirty", "dirty", "trap", "dirty", "grow", "dirty", "grow", "trap", "dirty"} {
		tx(0, dirty, method)
		tx(1, counter, "increment", rw(counter, wasmCountKey))
		tx(2, dirty, "dirty")
	}
	want := map[string]types.Status{"dirty": types.StatusOK, "grow": types.StatusOK, "trap": types.StatusTrapped}
	b := mkBlock(2, 1e12, txs)
	var ref []byte
	for _, name := range []string{"fresh", "pooled"} {
		for _, workers := range []int{0, 2} {
			x := New(runners[name], Options{Workers: workers})
			s := newStore(t, 4, 0, genesis...)
			run := x.ExecuteBlock
			if workers == 0 {
				run = x.ExecuteSerial
			}
			res, err := run(context.Background(), s, b, txs)
			if err != nil {
				t.Fatal(err)
			}
			for i, rc := range res.Receipts {
				p := txs[i].Body.Payload
				if p.Module == counter {
					if rc.Status != types.StatusOK {
						t.Fatalf("%s/%d: tx %d counter: %s (%s)", name, workers, i, rc.Status, rc.Error)
					}
					continue
				}
				if rc.Status != want[p.Method] {
					t.Fatalf("%s/%d: tx %d %s: %s (%s)", name, workers, i, p.Method, rc.Status, rc.Error)
				}
				wantPages := uint64(1)
				if p.Method == "grow" {
					wantPages = 2
				}
				if rc.Status == types.StatusOK && !bytes.Equal(rc.Return, dirtyReport(11, 11, wantPages)) {
					t.Fatalf("%s/%d: tx %d %s returned %x: the instance was not restored", name, workers, i, p.Method, rc.Return)
				}
			}
			got := encodeResult(res)
			if ref == nil {
				ref = got
			} else if !bytes.Equal(got, ref) {
				t.Fatalf("%s with %d workers differs from the fresh serial result", name, workers)
			}
		}
	}
	st := e.Stats()
	// 2 runs × (2 traps + 2 grows) discards; everything else reused.
	if st.Discards < 8 || st.Reuses == 0 || st.Compiles != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// dirtyReport is pool_dirty's return: three little-endian u64.
func dirtyReport(g, cell, pages uint64) []byte {
	var b []byte
	for _, v := range []uint64{g, cell, pages} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// TestPooledEngineBounds: the code cache evicts the least recently used
// module at its count bound (its instances are closed, a later call
// recompiles), idle instances never exceed their bounds, and a failing
// load is not cached.
func TestPooledEngineBounds(t *testing.T) {
	ctx := context.Background()
	code := map[string][]byte{}
	for i, f := range []string{"testdata/pool_dirty.wasm", "../../contracts/counter_wat/counter.wasm", "testdata/migrate_ok.wasm"} {
		p, err := deploy.Prepare(readWasm(t, f), DeployConfig())
		if err != nil {
			t.Fatal(err)
		}
		code[string(rune('a'+i))] = p.Instrumented
	}
	cfg := DefaultPoolConfig()
	cfg.CodeMax, cfg.IdlePerCode = 2, 2
	e := newPooledEngine(t, cfg)
	loads := map[string]int{}
	acquire := func(id string) *acquiredInstance {
		t.Helper()
		mod, _, err := e.Acquire(ctx, id, "get", func() ([]byte, error) { loads[id]++; return code[id], nil })
		if err != nil {
			t.Fatal(err)
		}
		a := e.out[mod]
		return &a
	}
	a1, a2, a3 := acquire("a"), acquire("a"), acquire("a")
	for _, a := range []*acquiredInstance{a1, a2, a3} {
		e.Release(a.in.Module(), false)
	}
	if n := len(e.codes["a"].idle); n != 2 {
		t.Fatalf("%d idle instances of a, bound 2", n)
	}
	e.Release(acquire("b").in.Module(), false)
	e.Release(acquire("a").in.Module(), false) // a is now the most recent
	e.Release(acquire("c").in.Module(), false) // evicts b
	if _, ok := e.codes["b"]; ok || e.Stats().Evictions != 1 {
		t.Fatalf("b not evicted: %+v", e.Stats())
	}
	e.Release(acquire("b").in.Module(), false)
	if loads["a"] != 1 || loads["b"] != 2 || loads["c"] != 1 {
		t.Fatalf("loads %v, want a once, b twice (evicted), c once", loads)
	}
	// An instance out while its code is evicted is closed on release, and
	// the evicted compiled module is closed.
	held := acquire("c")
	evictedCode := e.codes["c"].code
	e.Release(acquire("a").in.Module(), false)
	e.Release(acquire("b").in.Module(), false) // evicts c
	e.Release(held.in.Module(), false)
	if !held.in.Discarded() {
		t.Fatal("an instance of evicted code went back to a pool")
	}
	if _, err := evictedCode.Instantiate(ctx, vm.Env{}); !errors.Is(err, vm.ErrCodeClosed) {
		t.Fatalf("evicted code not closed: instantiate %v", err)
	}
	// A failing load is returned and not cached.
	boom := errors.New("boom")
	if _, _, err := e.Acquire(ctx, "d", "get", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("load error %v", err)
	}
	if _, ok := e.codes["d"]; ok {
		t.Fatal("a failed load was cached")
	}
	if _, err := NewPooledEngine(ctx, PoolConfig{VM: cfg.VM}); !errors.Is(err, ErrEngineConfig) {
		t.Fatalf("zero bounds accepted: %v", err)
	}
}

// TestPooledEngineConcurrent acquires and releases from several
// goroutines (run with -race): a code id that all want at once is loaded
// once, eviction churn under a bound of 2 modules loses no instance, and
// at the end nothing is out and the idle bounds hold.
func TestPooledEngineConcurrent(t *testing.T) {
	ctx := context.Background()
	var code [][]byte
	for _, f := range []string{"testdata/pool_dirty.wasm", "../../contracts/counter_wat/counter.wasm", "testdata/migrate_ok.wasm"} {
		p, err := deploy.Prepare(readWasm(t, f), DeployConfig())
		if err != nil {
			t.Fatal(err)
		}
		code = append(code, p.Instrumented)
	}
	cfg := DefaultPoolConfig()
	cfg.CodeMax, cfg.IdlePerCode = 2, 3
	e := newPooledEngine(t, cfg)
	var mu sync.Mutex
	loads := map[string]int{}
	load := func(id string, i int) func() ([]byte, error) {
		return func() ([]byte, error) { mu.Lock(); loads[id]++; mu.Unlock(); return code[i], nil }
	}
	const goroutines, rounds = 4, 40
	start := make(chan struct{})
	errs := make(chan error, goroutines)
	var wg, first sync.WaitGroup
	first.Add(goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, err := e.Acquire(ctx, "first", "get", load("first", 0))
			// No churn before every goroutine has "first": eviction
			// would make a late one load it again.
			first.Done()
			first.Wait()
			if err != nil {
				errs <- err
				return
			}
			for r := range rounds {
				i := (g + r) % len(code)
				mod, _, err := e.Acquire(ctx, fmt.Sprint(i), "get", load(fmt.Sprint(i), i))
				if err != nil {
					errs <- err
					return
				}
				e.Release(mod, r%5 == 0)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if loads["first"] != 1 {
		t.Fatalf("a code id wanted by %d goroutines at once was loaded %d times", goroutines, loads["first"])
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var idleBytes int64
	for _, c := range e.codes {
		if len(c.idle) > cfg.IdlePerCode {
			t.Fatalf("%d idle instances of %q, bound %d", len(c.idle), c.id, cfg.IdlePerCode)
		}
		for _, in := range c.idle {
			idleBytes += instanceBytes(in)
		}
	}
	// The "first" instances are still out; everything else came back.
	if len(e.out) != goroutines || len(e.codes) > cfg.CodeMax || idleBytes != e.idleBytes {
		t.Fatalf("%d out, %d codes, idle bytes %d counted %d", len(e.out), len(e.codes), idleBytes, e.idleBytes)
	}
}

// TestDeployUninstantiable: a deploy of code whose _initialize traps
// (testdata/init_trap.wasm) fails as a transaction, costing the deploy's
// own charges (the failed instantiation is no frame: like a successful
// one, docs/abi.md 8.1, it charges no gas), on both engines serially and
// in parallel; the block goes on.
func TestDeployUninstantiable(t *testing.T) {
	bad := lc(1, 1, types.Payload{Kind: types.Deploy, Code: readWasm(t, "testdata/init_trap.wasm")})
	good := lc(2, 1, types.Payload{Kind: types.Deploy, Code: readWasm(t, "../../contracts/counter_wat/counter.wasm")})
	txs := []*types.Tx{bad, good}
	b := mkBlock(2, 1e12, txs)
	var ref []byte
	for name, r := range map[string]Runner{"fresh": NewRunner(nil, newFreshEngine(t)), "pooled": NewRunner(nil, newPooledEngine(t, DefaultPoolConfig()))} {
		for _, workers := range []int{0, 2} {
			x := New(r, Options{Workers: workers})
			run := x.ExecuteBlock
			if workers == 0 {
				run = x.ExecuteSerial
			}
			res, err := run(context.Background(), newStore(t, 4, 0), b, txs)
			if err != nil {
				t.Fatalf("%s/%d: the block failed: %v", name, workers, err)
			}
			expect(t, res.Receipts, types.StatusTrapped, types.StatusOK)
			if res.Receipts[0].Error != ErrUninstantiable.Error() {
				t.Fatalf("%s/%d: error %q", name, workers, res.Receipts[0].Error)
			}
			if want := GasDeployBase + GasCodeByte*uint64(len(bad.Body.Payload.Code)); res.Receipts[0].GasUsed != want {
				t.Fatalf("%s/%d: used %d gas, want the deploy's %d", name, workers, res.Receipts[0].GasUsed, want)
			}
			if got := encodeResult(res); ref == nil {
				ref = got
			} else if !bytes.Equal(got, ref) {
				t.Fatalf("%s with %d workers differs", name, workers)
			}
		}
	}
}

// staleEngine is a broken pool for TestMissingRestoreIsCaught: it reuses
// one idle instance per module without restoring its snapshot.
type staleEngine struct {
	vm   *vm.Engine
	mu   sync.Mutex
	code map[string]*vm.Code
	idle map[string]*vm.Instance
	out  map[api.Module]staleInstance
}

type staleInstance struct {
	in *vm.Instance
	id string
}

func (e *staleEngine) Acquire(ctx context.Context, id, method string, load func() ([]byte, error)) (api.Module, api.Function, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.idle[id]
	delete(e.idle, id)
	if in == nil {
		c := e.code[id]
		if c == nil {
			b, err := load()
			if err != nil {
				return nil, nil, err
			}
			if c, err = e.vm.Compile(ctx, b); err != nil {
				return nil, nil, err
			}
			e.code[id] = c
		}
		var err error
		if in, err = c.Instantiate(ctx, vm.Env{}); err != nil {
			return nil, nil, err
		}
	}
	e.out[in.Module()] = staleInstance{in, id}
	return in.Module(), in.Export(method), nil
}

func (e *staleEngine) Release(mod api.Module, failed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.out[mod]
	delete(e.out, mod)
	if failed || grew(a.in) || e.idle[a.id] != nil {
		a.in.Close(context.Background())
		return
	}
	e.idle[a.id] = a.in
}

// TestMissingRestoreIsCaught: the random wasm comparison notices a pool
// that hands out instances without restoring them (pool_dirty is in the
// generator's mix for this).
func TestMissingRestoreIsCaught(t *testing.T) {
	w := wasmSetup(t, 3)
	ve, err := vm.NewEngine(context.Background(), vm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ve.Close(context.Background()) })
	stale := &staleEngine{vm: ve, code: map[string]*vm.Code{}, idle: map[string]*vm.Instance{}, out: map[api.Module]staleInstance{}}
	cs := []config{
		{name: "fresh serial", x: New(w.runner, Options{}), serial: true},
		{name: "stale serial", x: New(NewRunner(NativeModules(), stale), Options{}), serial: true},
	}
	caught := 0
	for seed := range uint64(3) {
		if runChain(t, seed, cs, 2, 60, w) != nil {
			caught++
		}
	}
	if caught == 0 {
		t.Fatal("a pool without restore went unnoticed on every seed")
	}
}

// TestPooledEngineWorkerLocal checks a worker's own instances: a worker
// gets back the instance it released last without the shared idle list
// (which stays empty while it works), another worker does not see it, a
// failed frame's instance is not kept, flush hands the kept ones to the
// engine (within its bounds) with the counts, and a pool configured to
// keep no idle instance keeps none locally either. It goes through
// Worker, the exported form of txInstances' calls.
func TestPooledEngineWorkerLocal(t *testing.T) {
	p, err := deploy.Prepare(readWasm(t, "../../contracts/counter_wat/counter.wasm"), DeployConfig())
	if err != nil {
		t.Fatal(err)
	}
	load := func() ([]byte, error) { return p.Instrumented, nil }
	sharedIdle := func(e *PooledEngine) int {
		e.mu.Lock()
		defer e.mu.Unlock()
		if c := e.codes["a"]; c != nil {
			return len(c.idle)
		}
		return 0
	}
	e := newPooledEngine(t, DefaultPoolConfig())
	acquire := func(w *Worker) api.Module {
		t.Helper()
		mod, fn, err := w.Acquire(context.Background(), "a", "get", load)
		if err != nil || fn == nil {
			t.Fatalf("acquire: %v, export %v", err, fn)
		}
		return mod
	}
	w1, w2 := e.NewWorker(), e.NewWorker()
	m1 := acquire(w1)
	m2 := acquire(w2)
	if m1 == m2 {
		t.Fatal("two instances out at once are the same")
	}
	for range 3 {
		w1.Release(m1, false)
		w2.Release(m2, false)
		if got := acquire(w1); got != m1 {
			t.Fatal("worker 1 did not get its own instance back")
		}
		if got := acquire(w2); got != m2 {
			t.Fatal("worker 2 did not get its own instance back")
		}
	}
	if n := sharedIdle(e); n != 0 {
		t.Fatalf("%d instances in the shared idle list while the workers hold theirs", n)
	}
	w2.Release(m2, true) // a failed frame: closed, not kept
	if _, _, ok := e.acquireIdle(&w2.w, "a", "get"); ok {
		t.Fatal("worker 2 kept the instance of a failed frame")
	}
	w1.Release(m1, false)
	w1.Flush()
	w2.Flush()
	if n := sharedIdle(e); n != 1 {
		t.Fatalf("%d shared idle instances after flush, want 1", n)
	}
	if got, _, err := e.Acquire(context.Background(), "a", "get", load); err != nil || got != m1 {
		t.Fatalf("the flushed instance is not the shared one: %v", err)
	}
	if st := e.Stats(); st.Instantiations != 2 || st.Reuses != 7 || st.Discards != 1 {
		t.Fatalf("stats %+v, want 2 instantiations, 7 reuses (6 local), 1 discard", st)
	}

	cfg := DefaultPoolConfig()
	cfg.IdlePerCode = 0
	none := newPooledEngine(t, cfg)
	w := none.NewWorker()
	mod, _, err := w.Acquire(context.Background(), "a", "get", load)
	if err != nil {
		t.Fatal(err)
	}
	w.Release(mod, false)
	if _, _, ok := none.acquireIdle(&w.w, "a", "get"); ok {
		t.Fatal("a worker kept an instance of a pool that keeps none")
	}
	w.Flush()
	if st := none.Stats(); st.Discards != 1 {
		t.Fatalf("stats %+v, want the instance discarded", st)
	}
}

// BenchmarkPoolPath is what the engine's own part of a transaction costs:
// Acquire then Release of the WAT counter's instance, nothing dirtied (so
// the restore is its fixed part only), through the worker path a block's
// transactions take (worker) and through the engine's locked shared path
// (shared: simulation, direct callers).
//
//	go test -run '^$' -bench PoolPath ./runtime/exec/
func BenchmarkPoolPath(b *testing.B) {
	p, err := deploy.Prepare(readWasm(b, "../../contracts/counter_wat/counter.wasm"), DeployConfig())
	if err != nil {
		b.Fatal(err)
	}
	load := func() ([]byte, error) { return p.Instrumented, nil }
	e := newPooledEngine(b, DefaultPoolConfig())
	ctx := context.Background()
	b.Run("worker", func(b *testing.B) {
		w := e.NewWorker()
		defer w.Flush()
		for b.Loop() {
			mod, _, err := w.Acquire(ctx, "a", "get", load)
			if err != nil {
				b.Fatal(err)
			}
			w.Release(mod, false)
		}
	})
	b.Run("shared", func(b *testing.B) {
		for b.Loop() {
			mod, _, err := e.Acquire(ctx, "a", "get", load)
			if err != nil {
				b.Fatal(err)
			}
			e.Release(mod, false)
		}
	})
}
