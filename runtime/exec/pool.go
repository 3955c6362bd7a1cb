package exec

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/vm"
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

// PoolStats counts what a PooledEngine did, for tests and benchmarks.
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
// it until it is released.
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
	worker  []int32 // worker[i] last ran idle[i] (workerOf)
	evicted bool
}

type acquiredInstance struct {
	in     *vm.Instance
	code   *pooledCode
	worker int32
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
	w := workerOf(ctx)
	if in := e.idle(codeID, w); in != nil {
		in.Restore()
		return in.Module(), in.Export(method), nil
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
	mod := in.Module()
	e.mu.Lock()
	e.out[mod] = acquiredInstance{in: in, code: c, worker: w}
	e.mu.Unlock()
	return mod, in.Export(method), nil
}

// idle is the usual Acquire, a compiled module with an idle instance, in
// one critical section instead of three: two workers acquiring an instance
// per transaction meet on the lock less. It prefers the most recent
// instance worker w released: its memory and the engine's state are still
// in w's core's caches, where the other worker's last instance is in the
// other core's (see RATIONALE.md). It returns the instance, already out and
// not yet restored, or nil when the slow path must run.
func (e *PooledEngine) idle(codeID string, w int32) *vm.Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.codes[codeID]
	if c == nil || c.code == nil || len(c.idle) == 0 { // code is set under mu when ready
		return nil
	}
	e.lru.MoveToFront(c.elem)
	n := len(c.idle)
	i := n - 1
	for j := i; j >= 0; j-- {
		if c.worker[j] == w {
			i = j
			break
		}
	}
	in := c.idle[i]
	c.idle[i], c.worker[i] = c.idle[n-1], c.worker[n-1]
	c.idle, c.worker = c.idle[:n-1], c.worker[:n-1]
	e.idleBytes -= instanceBytes(in)
	e.stats.Reuses++
	e.out[in.Module()] = acquiredInstance{in: in, code: c, worker: w}
	return in
}

// instance returns an idle instance of c, restored, or a new one.
func (e *PooledEngine) instance(ctx context.Context, c *pooledCode) (*vm.Instance, error) {
	e.mu.Lock()
	var in *vm.Instance
	if n := len(c.idle); n > 0 {
		in, c.idle, c.worker = c.idle[n-1], c.idle[:n-1], c.worker[:n-1]
		e.idleBytes -= instanceBytes(in)
		e.stats.Reuses++
	}
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
			c.idle, c.worker = nil, nil
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
	in, c := a.in, a.code
	// What the restore at its Acquire copied (0 for a new instance),
	// counted here under the lock both workers take anyway.
	e.stats.RestoredBytes += int64(in.RestoredBytes())
	size := instanceBytes(in)
	keep := !failed && !in.Discarded() && !grew(in) && !c.evicted &&
		len(c.idle) < e.cfg.IdlePerCode && e.idleBytes+size <= e.cfg.IdleBytesMax
	if keep {
		c.idle, c.worker = append(c.idle, in), append(c.worker, a.worker)
		e.idleBytes += size
	} else {
		e.stats.Discards++
	}
	e.mu.Unlock()
	if !keep {
		in.Close(context.Background())
	}
}

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
		c.idle, c.worker = nil, nil
	}
	e.idleBytes = 0
	e.mu.Unlock()
	e.close(evicted{idle: idle})
	return e.vm.Close(ctx)
}

// workerKey is the context key of the executor worker running a frame.
type workerKey struct{}

// withWorker marks ctx as worker w's (1, 2, …), for the PooledEngine's
// choice of an idle instance. It cannot change a result: every idle
// instance is restored to the same snapshot.
func withWorker(ctx context.Context, w int32) context.Context {
	return context.WithValue(ctx, workerKey{}, w)
}

// workerOf is the worker withWorker set on ctx, 0 if none (serial
// execution, simulation).
func workerOf(ctx context.Context) int32 {
	w, _ := ctx.Value(workerKey{}).(int32)
	return w
}
