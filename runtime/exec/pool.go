package exec

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/types"
)

// ErrEngineConfig rejects a PoolConfig with a limit below its minimum.
var ErrEngineConfig = errors.New("exec: bad engine configuration")

// PoolConfig bounds what a PooledEngine keeps between transactions. The
// instances handed out at one time are not bounded here: they are at most
// workers × the host's call-depth limit, and blocking an Acquire on a bound
// could deadlock nested cross-module calls.
type PoolConfig struct {
	// VM is the pinned wazero configuration (memory page limit, the gas of
	// _initialize).
	VM vm.Config
	// CodeMax is the number of compiled modules kept, least recently used
	// evicted first (at least 1).
	CodeMax int
	// CodeBytesMax bounds the instrumented bytes of the compiled modules
	// kept (compiled code is a few times that); the most recent module is
	// kept even if it alone exceeds the bound.
	CodeBytesMax int64
	// IdlePerCode is the number of idle instances kept per module: with 2
	// workers and a few nested calls, a handful covers a block.
	IdlePerCode int
	// IdleBytesMax bounds the memory idle instances hold: each holds its
	// linear memory and a snapshot of the same size.
	IdleBytesMax int64
}

// DefaultPoolConfig is the node's configuration: 256 modules or 256 MiB of
// code, 4 idle instances per module and 512 MiB of idle instances.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{VM: vm.DefaultConfig(), CodeMax: 256, CodeBytesMax: 256 << 20, IdlePerCode: 4, IdleBytesMax: 512 << 20}
}

// PoolStats counts what a PooledEngine did, for tests and benchmarks. An
// executor worker's reuses and restored bytes are added when its block is
// done (see worker).
type PoolStats struct {
	Compiles       int   // modules compiled (cache misses)
	Instantiations int   // new instances (each runs _initialize if exported)
	Reuses         int   // acquisitions served by a restored idle instance
	RestoredBytes  int64 // linear memory copied back by those restores (the pages the previous call dirtied, or whole snapshots of untracked code)
	Discards       int   // released instances closed (failed frame, grown memory, full pool, evicted code)
	Evictions      int   // compiled modules evicted
}

// PooledEngine is the production Engine: compiled modules cached by code
// id in a bounded LRU, and for each a pool of idle instances, each restored
// to its post-_initialize snapshot (linear memory and every global,
// vm.Instance.Restore) when it is handed out. An instance whose frame did
// not end normally or whose memory grew is closed on Release, never
// reused. An evicted module's compiled code is closed (vm.Code.Close), so
// the bounds hold for the wazero runtime too. Safe for use by several
// goroutines; an acquired instance belongs to the goroutine that acquired
// it until it is released. An executor worker goes through its own cache
// first (worker): the instances it released during a block, taken back
// without the engine's lock and handed to the shared idle lists when the
// block is done.
//
// Pooling cannot change a result: a frame sees only the restored snapshot
// and its own wasi.FrameState (host.Run gives each frame one), and the
// snapshot is taken after _initialize in the fixed wasi.InitState, so a
// reused instance starts where a fresh one does.
type PooledEngine struct {
	vm  *vm.Engine
	cfg PoolConfig

	mu        sync.Mutex
	codes     map[string]*pooledCode
	lru       list.List // of *pooledCode, most recently used first
	codeBytes int64
	idleBytes int64
	out       map[api.Module]acquiredInstance
	stats     PoolStats
}

type pooledCode struct {
	id      string
	ready   chan struct{} // closed when code or err is set
	code    *vm.Code
	err     error
	size    int64
	elem    *list.Element
	idle    []*vm.Instance
	evicted bool
}

type acquiredInstance struct {
	in   *vm.Instance
	code *pooledCode
}

// NewPooledEngine creates the wazero runtime (runtime/vm, with the host
// modules registered) and an empty cache. Close releases both.
func NewPooledEngine(ctx context.Context, cfg PoolConfig) (*PooledEngine, error) {
	if cfg.CodeMax < 1 || cfg.CodeBytesMax < 1 || cfg.IdlePerCode < 0 || cfg.IdleBytesMax < 0 {
		return nil, fmt.Errorf("%w: %+v", ErrEngineConfig, cfg)
	}
	e, err := vm.NewEngine(ctx, cfg.VM)
	if err != nil {
		return nil, err
	}
	return &PooledEngine{vm: e, cfg: cfg, codes: map[string]*pooledCode{}, out: map[api.Module]acquiredInstance{}}, nil
}

// Acquire implements Engine. The first Acquire of a code id loads and
// compiles it; concurrent ones wait for that compilation.
func (e *PooledEngine) Acquire(ctx context.Context, codeID, method string, instrumented func() ([]byte, error)) (api.Module, api.Function, error) {
	in, _, err := e.take(ctx, codeID, instrumented, true)
	if err != nil {
		return nil, nil, err
	}
	return in.Module(), in.Export(method), nil
}

// take returns an instance of codeID, restored or new, and its code. With
// track it is recorded as out, for Release; a worker's instances are not
// (the worker tracks them, see acquireLocal).
func (e *PooledEngine) take(ctx context.Context, codeID string, instrumented func() ([]byte, error), track bool) (*vm.Instance, *pooledCode, error) {
	if in, c := e.idle(codeID, track); in != nil {
		in.Restore()
		return in, c, nil
	}
	var c *pooledCode
	var in *vm.Instance
	for in == nil {
		var err error
		if c, err = e.code(ctx, codeID, instrumented); err != nil {
			return nil, nil, err
		}
		if in, err = e.instance(ctx, c); err != nil && !errors.Is(err, vm.ErrCodeClosed) {
			return nil, nil, err
		}
		// ErrCodeClosed: another goroutine evicted c since e.code
		// returned it; look it up (and compile it) again.
	}
	if track {
		e.mu.Lock()
		e.out[in.Module()] = acquiredInstance{in: in, code: c}
		e.mu.Unlock()
	}
	return in, c, nil
}

// idle is the usual shared acquisition, a compiled module with an idle
// instance, in one critical section instead of three. It returns the
// most recently released instance, taken (and recorded as out with
// track) but not yet restored, or nil when the slow path must run.
func (e *PooledEngine) idle(codeID string, track bool) (*vm.Instance, *pooledCode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.codes[codeID]
	if c == nil || c.code == nil || len(c.idle) == 0 { // code is set under mu when ready
		return nil, nil
	}
	e.lru.MoveToFront(c.elem)
	in := e.popIdleLocked(c)
	if track {
		e.out[in.Module()] = acquiredInstance{in: in, code: c}
	}
	return in, c
}

// popIdleLocked takes c's most recently released idle instance, not yet
// restored, or nil when it has none. e.mu is held.
func (e *PooledEngine) popIdleLocked(c *pooledCode) *vm.Instance {
	n := len(c.idle)
	if n == 0 {
		return nil
	}
	in := c.idle[n-1]
	c.idle = c.idle[:n-1]
	e.idleBytes -= instanceBytes(in)
	e.stats.Reuses++
	return in
}

// instance returns an idle instance of c, restored, or a new one.
func (e *PooledEngine) instance(ctx context.Context, c *pooledCode) (*vm.Instance, error) {
	e.mu.Lock()
	in := e.popIdleLocked(c)
	e.mu.Unlock()
	if in != nil {
		in.Restore()
		return in, nil
	}
	// Env is for vm's direct calls only: host.Run gives every frame its
	// own WASI state.
	in, err := c.code.Instantiate(ctx, vm.Env{})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.stats.Instantiations++
	e.mu.Unlock()
	return in, nil
}

// code returns the compiled module of id, compiling it on a miss.
func (e *PooledEngine) code(ctx context.Context, id string, instrumented func() ([]byte, error)) (*pooledCode, error) {
	e.mu.Lock()
	c := e.codes[id]
	if c != nil {
		e.lru.MoveToFront(c.elem)
		e.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err != nil {
			return nil, c.err
		}
		return c, nil
	}
	c = &pooledCode{id: id, ready: make(chan struct{})}
	c.elem = e.lru.PushFront(c)
	e.codes[id] = c
	e.stats.Compiles++
	e.mu.Unlock()

	b, err := instrumented()
	var code *vm.Code
	if err == nil {
		code, err = e.vm.Compile(ctx, b)
	}
	e.mu.Lock()
	c.code, c.err, c.size = code, err, int64(len(b))
	var closing evicted
	if err != nil {
		// Not cached: a failure to read state or a cancelled context is
		// not a property of the code.
		e.drop(c)
	} else { // evict skips entries still compiling, so c is in the cache
		e.codeBytes += c.size
		closing = e.evict()
	}
	close(c.ready)
	e.mu.Unlock()
	e.close(closing)
	return c, err
}

// evicted is what an eviction closes outside the lock: idle instances and
// compiled modules. vm.Code.Close waits for the Instantiates in progress,
// an Acquire that loses the race gets vm.ErrCodeClosed and compiles
// again, and instances still out are closed on Release.
type evicted struct {
	idle  []*vm.Instance
	codes []*vm.Code
}

// evict drops least recently used compiled modules while the cache is over
// a bound, never the most recent one nor one still compiling, and returns
// what to close. Called with mu held.
func (e *PooledEngine) evict() evicted {
	var closing evicted
	for el := e.lru.Back(); el != nil && el != e.lru.Front() && (e.lru.Len() > e.cfg.CodeMax || e.codeBytes > e.cfg.CodeBytesMax); {
		c, prev := el.Value.(*pooledCode), el.Prev()
		if c.code != nil {
			closing.idle = append(closing.idle, c.idle...)
			closing.codes = append(closing.codes, c.code)
			for _, in := range c.idle {
				e.idleBytes -= instanceBytes(in)
			}
			c.idle = nil
			e.codeBytes -= c.size
			e.drop(c)
			e.stats.Evictions++
		}
		el = prev
	}
	return closing
}

// drop removes c from the cache. Called with mu held.
func (e *PooledEngine) drop(c *pooledCode) {
	c.evicted = true
	e.lru.Remove(c.elem)
	delete(e.codes, c.id)
}

// Release implements Engine: a healthy instance goes back to its module's
// idle list if the bounds allow; a failed frame, a grown memory (memory
// cannot shrink back to the snapshot) or an evicted module closes it.
// Releasing a module that is not out is a no-op.
func (e *PooledEngine) Release(mod api.Module, failed bool) {
	e.mu.Lock()
	a, ok := e.out[mod]
	delete(e.out, mod)
	if !ok {
		e.mu.Unlock()
		return
	}
	// What the restore at its Acquire copied (0 for a new instance),
	// counted here under the lock taken anyway.
	e.stats.RestoredBytes += int64(a.in.RestoredBytes())
	keep := e.put(a.in, a.code, failed)
	e.mu.Unlock()
	if !keep {
		a.in.Close(context.Background())
	}
}

// put returns in, of code c, to c's idle list if it is healthy and the
// bounds allow, and reports whether it did; the caller closes it
// otherwise, outside the lock. Called with mu held.
func (e *PooledEngine) put(in *vm.Instance, c *pooledCode, failed bool) bool {
	size := instanceBytes(in)
	if failed || !reusable(in) || c.evicted || len(c.idle) >= e.cfg.IdlePerCode || e.idleBytes+size > e.cfg.IdleBytesMax {
		e.stats.Discards++
		return false
	}
	c.idle = append(c.idle, in)
	e.idleBytes += size
	return true
}

// reusable reports whether in can serve another frame: not discarded by
// vm, and its memory no larger than its snapshot (memory cannot shrink).
func reusable(in *vm.Instance) bool { return !in.Discarded() && !grew(in) }

// grew reports whether in's memory is larger than its snapshot.
func grew(in *vm.Instance) bool {
	m := in.Module().Memory()
	return m != nil && int(m.Size()) != in.SnapshotBytes()
}

// instanceBytes is the memory an idle instance holds: its linear memory
// (the snapshot's size, or it would not be idle) and the snapshot.
func instanceBytes(in *vm.Instance) int64 { return 2 * int64(in.SnapshotBytes()) }

func (e *PooledEngine) close(ev evicted) {
	for _, in := range ev.idle {
		in.Close(context.Background())
	}
	for _, c := range ev.codes {
		c.Close(context.Background())
	}
}

// Stats returns the counters so far.
func (e *PooledEngine) Stats() PoolStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// Close closes the idle instances and the runtime (with every compiled
// module and any instance still out).
func (e *PooledEngine) Close(ctx context.Context) error {
	e.mu.Lock()
	var idle []*vm.Instance
	for _, c := range e.codes {
		idle = append(idle, c.idle...)
		c.idle = nil
	}
	e.idleBytes = 0
	e.mu.Unlock()
	e.close(evicted{idle: idle})
	return e.vm.Close(ctx)
}

// worker is the state one executor goroutine (a worker of ExecuteBlock,
// or ExecuteSerial's) keeps between its transactions for the length of a
// block: WasmRunner.call's frame, and of a PooledEngine the instances it
// released last, which it takes back without the engine's lock, and the
// ones it holds. Two workers taking and returning an instance per transaction
// through the shared idle list met on its lock twice per transaction
// (about 0.4 µs of a 2 µs WAT transfer) and each often got the instance
// the other had just used, whose memory was in the other core's cache
// (see RATIONALE.md). A worker belongs to one goroutine, so nothing here
// is locked; flush hands its idle instances to the engine when the block
// is done. Which instance a frame gets cannot change a result: every one
// is restored to the same post-_initialize snapshot.
type worker struct {
	e    *PooledEngine   // the engine of idle and out; nil until first used
	idle []localInstance // healthy, most recently released last; at most localIdleMax
	out  []localInstance // taken through acquireLocal, not yet released
	// Counted for PoolStats, added to the engine's at flush.
	reuses   int
	restored int64
	// call is WasmRunner.call's frame for this worker's transactions, one
	// allocation per worker instead of one per transaction.
	call callFrame
	// recordKey holds the module record key txInstances.Acquire reads.
	recordKey types.Address
	// arena holds the write sets and events of the worker's transactions
	// (host.Tx.Arena): the block's result keeps them.
	arena host.Arena
	// ov is the overlay of the worker's transaction (see runTx).
	ov overlay
}

type localInstance struct {
	mod  api.Module
	in   *vm.Instance
	code *pooledCode
}

// localIdleMax bounds the idle instances one worker keeps between its
// transactions (and PoolConfig.IdlePerCode, when lower): one per module a
// block's transactions call in turn, and a few nested callees. They are
// out of the engine's idle bounds until flush, like instances in use.
const localIdleMax = 4

// workerKey is the context key of the executor worker running a frame.
type workerKey struct{}

// withWorker gives ctx's frames worker w's instance cache.
func withWorker(ctx context.Context, w *worker) context.Context {
	return context.WithValue(ctx, workerKey{}, w)
}

// workerOf is the worker withWorker set on ctx, nil if none (simulation,
// direct callers of a Runner): those take the engine's shared path.
func workerOf(ctx context.Context) *worker {
	w, _ := ctx.Value(workerKey{}).(*worker)
	return w
}

// localEngine is an Engine with a worker-local path (PooledEngine).
type localEngine interface {
	// acquireIdle returns an idle instance of codeID that w released,
	// restored, or ok false (then acquireLocal must be called).
	acquireIdle(w *worker, codeID, method string) (mod api.Module, fn api.Function, ok bool)
	// acquireLocal is Acquire for worker w, after acquireIdle found
	// nothing: the instance is w's until releaseLocal.
	acquireLocal(ctx context.Context, w *worker, codeID, method string, instrumented func() ([]byte, error)) (api.Module, api.Function, error)
	// releaseLocal is Release for worker w.
	releaseLocal(w *worker, mod api.Module, failed bool)
}

// uses reports whether w may hold instances of e: a worker serves one
// engine (the first it met); another engine takes its shared path.
func (w *worker) uses(e *PooledEngine) bool {
	if w.e == nil {
		w.e = e
	}
	return w.e == e
}

func (e *PooledEngine) acquireIdle(w *worker, codeID, method string) (api.Module, api.Function, bool) {
	if !w.uses(e) {
		return nil, nil, false
	}
	for j := len(w.idle) - 1; j >= 0; j-- {
		if li := w.idle[j]; li.code.id == codeID {
			w.idle = append(w.idle[:j], w.idle[j+1:]...)
			li.in.Restore()
			w.reuses++
			w.out = append(w.out, li)
			return li.mod, li.in.Export(method), true
		}
	}
	return nil, nil, false
}

func (e *PooledEngine) acquireLocal(ctx context.Context, w *worker, codeID, method string, instrumented func() ([]byte, error)) (api.Module, api.Function, error) {
	if !w.uses(e) {
		return e.Acquire(ctx, codeID, method, instrumented)
	}
	in, c, err := e.take(ctx, codeID, instrumented, false)
	if err != nil {
		return nil, nil, err
	}
	mod := in.Module()
	w.out = append(w.out, localInstance{mod: mod, in: in, code: c})
	return mod, in.Export(method), nil
}

func (e *PooledEngine) releaseLocal(w *worker, mod api.Module, failed bool) {
	j := len(w.out) - 1 // frames nest: the last taken is usually released first
	for j >= 0 && w.out[j].mod != mod {
		j--
	}
	if w.e != e || j < 0 {
		e.Release(mod, failed)
		return
	}
	li := w.out[j]
	w.out = append(w.out[:j], w.out[j+1:]...)
	w.restored += int64(li.in.RestoredBytes())
	if !failed && reusable(li.in) && len(w.idle) < min(localIdleMax, e.cfg.IdlePerCode) {
		w.idle = append(w.idle, li)
		return
	}
	e.mu.Lock()
	keep := e.put(li.in, li.code, failed)
	e.mu.Unlock()
	if !keep {
		li.in.Close(context.Background())
	}
}

// flush hands w's idle instances back to its engine (under the bounds,
// closing what they do not keep, such as instances of evicted code) and
// adds w's counts to the engine's. Call it when w's goroutine is done
// with the block, after every frame was released.
func (w *worker) flush() {
	// The last transaction's overlay holds its block's state view and
	// values: an idle worker keeps none of them alive.
	w.ov = overlay{}
	e := w.e
	if e == nil {
		return
	}
	var closing []*vm.Instance
	e.mu.Lock()
	e.stats.Reuses += w.reuses
	e.stats.RestoredBytes += w.restored
	for _, li := range w.idle {
		if c := li.code; !c.evicted {
			e.lru.MoveToFront(c.elem)
		}
		if !e.put(li.in, li.code, false) {
			closing = append(closing, li.in)
		}
	}
	e.mu.Unlock()
	for _, in := range closing {
		in.Close(context.Background())
	}
	w.e, w.idle, w.out, w.reuses, w.restored = nil, nil, nil, 0, 0
}

// Worker is an executor worker's instance cache (worker) for a caller
// outside this package that, like a worker, runs one frame tree at a time
// on one goroutine: host.Instances built on it take exactly the path
// txInstances takes for a transaction of a block (acquireIdle first, then
// acquireLocal; releaseLocal). runtime/enginetest's benchmarks measure the
// production path through it rather than through Acquire and Release,
// which only simulation and direct callers use. Not safe for concurrent
// use; Flush when done, as a worker is flushed when its block is done.
type Worker struct {
	e *PooledEngine
	w worker
}

// NewWorker returns an empty worker cache of e.
func (e *PooledEngine) NewWorker() *Worker { return &Worker{e: e} }

// Acquire is Acquire through the worker's cache.
func (w *Worker) Acquire(ctx context.Context, codeID, method string, instrumented func() ([]byte, error)) (api.Module, api.Function, error) {
	if mod, fn, ok := w.e.acquireIdle(&w.w, codeID, method); ok {
		return mod, fn, nil
	}
	return w.e.acquireLocal(ctx, &w.w, codeID, method, instrumented)
}

// Release is Release through the worker's cache.
func (w *Worker) Release(mod api.Module, failed bool) { w.e.releaseLocal(&w.w, mod, failed) }

// Flush hands the worker's idle instances and counts to the engine (every
// instance it acquired must have been released). The Worker can be used
// again afterwards.
func (w *Worker) Flush() { w.w.flush() }
