package vm

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// Errors.
var (
	ErrCompile     = errors.New("vm: compile failed")
	ErrInstantiate = errors.New("vm: instantiate failed")
	ErrNotMetered  = errors.New("vm: module is not instrumented")
	ErrNoExport    = errors.New("vm: no such exported function")
	ErrDiscarded   = errors.New("vm: instance discarded")
	ErrCodeClosed  = errors.New("vm: code closed")
)

// Config is the engine configuration. The zero value is not valid; start
// from DefaultConfig.
type Config struct {
	// MemoryLimitPages caps every instance's memory (64 KiB pages); a
	// grow past it fails inside the guest rather than trapping.
	MemoryLimitPages uint32
	// CacheDir keeps compiled code across restarts; "" keeps it in memory.
	CacheDir string
	// Interpreter selects wazero's interpreter instead of the compiler. It
	// exists for the metamorphic tests that compare the engines; nodes run
	// the compiler.
	Interpreter bool
	// InitGas is the gas given to _initialize when a Go guest is
	// instantiated: host.InitGasMax (docs/abi.md 8.1) on a node.
	InitGas int64
	// FullRestore turns dirty-page tracking off: every restore copies the
	// whole snapshot. It exists for the benchmarks that compare the two.
	FullRestore bool
}

// DefaultConfig matches validate.DefaultLimits() (512 pages) and the ABI's
// _initialize budget.
func DefaultConfig() Config {
	return Config{MemoryLimitPages: 512, InitGas: host.InitGasMax}
}

// Engine owns one wazero runtime with the two host modules of the ABI:
// "kairos" (runtime/host) and the virtual WASI (runtime/wasi).
type Engine struct {
	cfg Config
	rt  wazero.Runtime
}

// NewEngine creates the runtime. Close it to release compiled code.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	// Reference types are on for meter.Track's dirty-page table only:
	// guests cannot use them (wasm.Decode rejects every reference and
	// table instruction, validate a second table).
	rc = rc.WithCoreFeatures(api.CoreFeaturesV2.
		SetEnabled(api.CoreFeatureSIMD, false)).
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCloseOnContextDone(false)
	cache := wazero.NewCompilationCache()
	if cfg.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("vm: compilation cache: %w", err)
		}
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc.WithCompilationCache(cache))
	// Never wazero's own WASI: it reads the machine's clock and charges no
	// gas. The virtual WASI answers from the frame's wasi.State.
	if _, err := host.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("vm: host module: %w", err)
	}
	if _, err := wasi.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("vm: wasi: %w", err)
	}
	return &Engine{cfg: cfg, rt: rt}, nil
}

// Close releases the runtime and everything compiled or instantiated in it.
func (e *Engine) Close(ctx context.Context) error { return e.rt.Close(ctx) }

// Code is a compiled instrumented module.
type Code struct {
	e       *Engine
	cm      wazero.CompiledModule
	tracked bool // compiled with meter.Track
	// restoreGlobals is how many globals the code's RestoreExport sets,
	// -1 without one (untracked code).
	restoreGlobals int

	// Close may come while other goroutines instantiate (a pool evicting
	// code another Acquire just got): the compiled module is released only
	// when the last instantiation in progress ends. Instances already
	// created keep working after it (wazero keeps what they reference).
	mu            sync.Mutex
	instantiating int  // Instantiate calls in progress
	closed        bool // Close was called: Instantiate fails
	released      bool // the compiled module was closed
}

// Close releases the compiled module once no Instantiate is in progress
// (at once, or when the last one ends); later Instantiates fail with
// ErrCodeClosed. Instances already created are not affected: close them
// on their own. Closing twice is a no-op.
func (c *Code) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	release := c.releasable()
	c.mu.Unlock()
	if release {
		return c.cm.Close(ctx)
	}
	return nil
}

// begin counts an instantiation in progress, or fails on closed code.
func (c *Code) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrCodeClosed
	}
	c.instantiating++
	return nil
}

// end ends an instantiation and releases the compiled module if Close
// came meanwhile and this was the last one.
func (c *Code) end(ctx context.Context) {
	c.mu.Lock()
	c.instantiating--
	release := c.releasable()
	c.mu.Unlock()
	if release {
		c.cm.Close(ctx)
	}
}

// releasable reports (once) that the compiled module is to be closed now.
// Called with mu held.
func (c *Code) releasable() bool {
	if !c.closed || c.instantiating > 0 || c.released {
		return false
	}
	c.released = true
	return true
}

// Compile compiles an instrumented module (deploy.Prepared.Instrumented),
// with dirty-page tracking (meter.Track) unless Config.FullRestore is set
// or Track cannot account for every write of the module: such code restores
// whole snapshots.
func (e *Engine) Compile(ctx context.Context, instrumented []byte) (*Code, error) {
	bin, tracked, globals := instrumented, false, -1
	if !e.cfg.FullRestore {
		if m, err := wasm.Decode(instrumented); err == nil {
			if tm, err := meter.Track(m, trackConfig(e.cfg)); err == nil {
				if rm, n, err := withRestore(tm); err == nil {
					tm, globals = rm, n
				}
				bin, tracked = wasm.Encode(tm), true
			}
		}
	}
	cm, err := e.rt.CompileModule(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCompile, err)
	}
	return &Code{e: e, cm: cm, tracked: tracked, restoreGlobals: globals}, nil
}

// Tracked reports whether the code restores only the pages a call dirtied.
func (c *Code) Tracked() bool { return c.tracked }

// Env is the virtual WASI environment of the frames that Instance.Call
// runs directly (outside host.Run, which gives every frame its own state):
// each call starts from wasi.FrameState(Seed ‖ 0, frame 0, ClockNs), so
// the clock reads ClockNs + wasi.ClockStep·k and randomness is the
// docs/abi.md section 8 stream of that seed.
type Env struct {
	ClockNs int64
	// Deprecated: the virtual WASI clock advances by wasi.ClockStep per
	// read (docs/abi.md section 8); this field is ignored.
	ClockStepNs int64
	Seed        [32]byte
}

// frameState is the WASI state a direct call starts from.
func (env Env) frameState() wasi.State { return wasi.FrameState(env.Seed, 0, env.ClockNs) }

// Status classifies how a call ended; guest failures are values, not
// errors.
type Status uint8

// Statuses.
const (
	StatusOK            Status = iota
	StatusOutOfGas             // gas_left < 0 after the call, trapped or returned
	StatusDepthExceeded        // trapped by the call-depth limit
	StatusTrapped              // any other trap (unreachable, bounds, division, host abort)
)

func (s Status) String() string {
	return [...]string{"ok", "out_of_gas", "depth_exceeded", "trapped"}[s]
}

// Outcome is the result of one call.
type Outcome struct {
	Status  Status
	Values  []uint64
	GasUsed int64 // the whole limit when out of gas
	Trap    error // the engine's error when Status != StatusOK
}

// Instance is a live module with its post-init snapshot.
type Instance struct {
	mod      api.Module
	env      Env
	gas      api.MutableGlobal
	depth    api.MutableGlobal
	exceeded api.MutableGlobal
	globals  []api.MutableGlobal // mutable original globals
	snapMem  []byte
	snapGlob []uint64
	snapped  bool // the snapshot exists (reset before it only sets the meter)
	// dirty is meter.DirtyExport when the code is tracked: reset copies
	// back only the pages it reports.
	dirty      api.Function
	dirtyStack [3]uint64
	// restore is the code's RestoreExport (nil without one), called with
	// restoreStack: the snapshot's globals, then dirty's arguments.
	restore      api.Function
	restoreStack []uint64
	restored     int // bytes the last restore copied
	discarded    error
	// funcs caches exported functions: wazero builds a new call engine
	// (with its stack) on every ExportedFunction lookup.
	funcs map[string]api.Function
	// last is the export Export found last, under lastName: a pooled
	// instance mostly serves one method after another (transfers), and
	// comparing the name is cheaper than hashing it.
	lastName string
	last     api.Function
}

// Instantiate creates an instance, runs _initialize if the module exports
// it (docs/abi.md 8.1: Config.InitGas, the fixed wasi.InitState, no kairos
// functions), and takes the snapshot every frame starts from. env is the
// WASI environment of later direct Calls. A failing _initialize is
// ErrInstantiate (it fails the deploy); closed code is ErrCodeClosed.
func (c *Code) Instantiate(ctx context.Context, env Env) (*Instance, error) {
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end(ctx)
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions() // _initialize runs below, metered
	mod, err := c.e.rt.InstantiateModule(ctx, c.cm, mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInstantiate, err)
	}
	in := &Instance{mod: mod, env: env, funcs: map[string]api.Function{}}
	var ok bool
	if in.gas, ok = mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal); !ok {
		mod.Close(ctx)
		return nil, ErrNotMetered
	}
	in.depth, _ = mod.ExportedGlobal(meter.DepthExport).(api.MutableGlobal)
	in.exceeded, _ = mod.ExportedGlobal(meter.DepthExceededExport).(api.MutableGlobal)
	if in.depth == nil || in.exceeded == nil {
		mod.Close(ctx)
		return nil, ErrNotMetered
	}
	for i := 0; ; i++ {
		g := mod.ExportedGlobal(meter.GlobalExport(i))
		if g == nil {
			break
		}
		if mg, ok := g.(api.MutableGlobal); ok {
			in.globals = append(in.globals, mg)
		}
	}
	if mod.ExportedFunction("_initialize") != nil {
		in.reset(c.e.cfg.InitGas)
		st := wasi.InitState()
		out, err := in.call(wasi.WithState(ctx, &st), "_initialize", c.e.cfg.InitGas)
		if err != nil || out.Status != StatusOK {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: _initialize: %s: %v", ErrInstantiate, out.Status, out.Trap)
		}
	}
	if m := mod.Memory(); m != nil {
		view, _ := m.Read(0, m.Size())
		in.snapMem = append([]byte(nil), view...)
	}
	for _, g := range in.globals {
		in.snapGlob = append(in.snapGlob, g.Get())
	}
	if c.tracked {
		if in.dirty = mod.ExportedFunction(meter.DirtyExport); in.dirty == nil {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: tracked code without %s", ErrInstantiate, meter.DirtyExport)
		}
		if c.restoreGlobals == len(in.globals) {
			if in.restore = mod.ExportedFunction(RestoreExport); in.restore != nil {
				in.restoreStack = make([]uint64, len(in.globals)+3) // + from, limit; room for dirty's 3 results
			}
		}
		// _initialize's writes are in the snapshot: clear their marks.
		if err := in.eachDirty(func(int, int) {}); err != nil {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: %w", ErrInstantiate, err)
		}
	}
	in.snapped = true
	return in, nil
}

// Restore copies the snapshot back (memory and every global) and clears
// the meter's depth globals, so the instance is in its post-_initialize
// state; the caller sets gas_left (host.Run does for every frame, so
// Restore leaves it: each global access is two interface calls into
// wazero). The WASI state is not part of the instance: it belongs to the
// frame (wasi.FrameState).
//
// With the code's RestoreExport, the globals and the depth globals are set
// by the call that starts the dirty-page walk (see RestoreExport).
func (in *Instance) Restore() {
	if in.snapped {
		if m := in.mod.Memory(); m != nil {
			view, _ := m.Read(0, uint32(len(in.snapMem)))
			if in.restoreMemory(view) {
				return
			}
		}
		for i, g := range in.globals {
			g.Set(in.snapGlob[i])
		}
	}
	in.depth.Set(0)
	in.exceeded.Set(0)
}

// reset restores the snapshot (memory, globals) and sets the meter's
// globals for a call with gas.
func (in *Instance) reset(gas int64) {
	in.Restore()
	in.gas.Set(uint64(gas))
}

// restoreMemory copies the snapshot into view: the pages the last calls
// marked, or all of it for untracked code. A page is restored with the 7
// bytes after it, where a store that began in it may have reached (see
// meter.Track). It reports whether the walk's first call, RestoreExport,
// also restored every global.
func (in *Instance) restoreMemory(view []byte) (globals bool) {
	in.restored = 0
	if in.dirty != nil {
		err := in.eachDirty(func(lo, hi int) { in.restored += copy(view[lo:hi], in.snapMem[lo:hi]) })
		if err == nil {
			return in.restore != nil
		}
		// Not expected (dirty cannot trap below the tracked pages), but
		// a whole copy is always right, and the caller sets the globals.
	}
	in.restored = copy(view, in.snapMem)
	return false
}

// RestoredBytes is how many bytes of memory the last restore copied back:
// the dirtied pages, or the whole snapshot for untracked code.
func (in *Instance) RestoredBytes() int { return in.restored }

// storeReach is how far past its page a marked store may have written.
const storeReach = 7

// eachDirty calls fn(lo, hi) with the byte range of every marked page of
// the snapshot, clearing the marks: one call of the export per marked
// group of 64 pages (meter.GroupShift), or one when none is marked. The
// first call is RestoreExport's when the code has one (the globals go
// back with it), the others the dirty export's.
func (in *Instance) eachDirty(fn func(lo, hi int)) error {
	pages := len(in.snapMem) >> meter.PageShift
	groups := uint64(pages+1<<meter.GroupShift-1) >> meter.GroupShift
	ctx := context.Background()
	f, stack := in.dirty, in.dirtyStack[:]
	if in.restore != nil {
		n := len(in.snapGlob)
		f, stack = in.restore, in.restoreStack
		// All of them again: the results of the last call overwrote the
		// first three, and the engine owns the stack while it runs.
		copy(stack, in.snapGlob)
		stack[n], stack[n+1] = 0, groups
	} else {
		stack[0], stack[1] = 0, groups
	}
	for {
		if err := f.CallWithStack(ctx, stack); err != nil {
			return fmt.Errorf("vm: reading dirty pages: %w", err)
		}
		g, mask, next := int32(stack[0]), stack[1], int32(stack[2])
		if g < 0 {
			return nil
		}
		for ; mask != 0; mask &= mask - 1 {
			p := int(g)<<meter.GroupShift + bits.TrailingZeros64(mask)
			if p >= pages { // marked by a write past the snapshot: memory grew, the instance goes
				break
			}
			lo := p << meter.PageShift
			fn(lo, min(lo+1<<meter.PageShift+storeReach, len(in.snapMem)))
		}
		if next < 0 {
			return nil
		}
		f, stack = in.dirty, in.dirtyStack[:]
		stack[0], stack[1] = uint64(next), groups
	}
}

// Call restores the snapshot and calls an export with a gas limit, as one
// frame with the WASI state of the instance's Env (kairos functions trap:
// host.Run is the way to run transactions). The error is for host problems
// (discarded instance, unknown export); guest failures are in the Outcome.
// After a trap or a memory grow the instance is discarded.
func (in *Instance) Call(ctx context.Context, name string, gas int64, args ...uint64) (Outcome, error) {
	if in.discarded != nil {
		return Outcome{}, fmt.Errorf("%w: %w", ErrDiscarded, in.discarded)
	}
	in.reset(gas)
	st := in.env.frameState()
	out, err := in.call(wasi.WithState(ctx, &st), name, gas, args...)
	if err != nil {
		return out, err
	}
	if out.Status != StatusOK {
		in.discard(ctx, fmt.Errorf("call trapped: %s", out.Status))
	} else if in.grew() {
		in.discard(ctx, fmt.Errorf("memory grew from %d to %d bytes", len(in.snapMem), in.mod.Memory().Size()))
	}
	return out, nil
}

// grew reports whether linear memory is larger than the snapshot: memory
// cannot shrink, so such an instance cannot be restored.
func (in *Instance) grew() bool {
	m := in.mod.Memory()
	return m != nil && int(m.Size()) != len(in.snapMem)
}

// Export returns the exported function name (cached per instance), nil if
// the module has none or the name is the instrumenter's. Misses are not
// cached: transactions choose the names, so the cache holds at most the
// module's exports.
func (in *Instance) Export(name string) api.Function {
	if in.last != nil && name == in.lastName {
		return in.last
	}
	if f, ok := in.funcs[name]; ok {
		in.lastName, in.last = name, f
		return f
	}
	if strings.HasPrefix(name, validate.ReservedPrefix) {
		return nil
	}
	f := in.mod.ExportedFunction(name)
	if f != nil {
		in.funcs[name] = f
	}
	return f
}

// Module is the wazero module, for host.Instances.
func (in *Instance) Module() api.Module { return in.mod }

func (in *Instance) call(ctx context.Context, name string, gas int64, args ...uint64) (Outcome, error) {
	f := in.Export(name)
	if f == nil {
		return Outcome{}, fmt.Errorf("%w: %q", ErrNoExport, name)
	}
	vals, err := f.Call(ctx, args...)
	left := int64(in.gas.Get())
	out := Outcome{Values: vals, GasUsed: gas - left, Trap: err}
	switch {
	case left < 0:
		// The meter tests the balance only at loop headers, function
		// entries and host calls, so a call may also return normally
		// after overspending: its results do not count either.
		out.Status, out.GasUsed = StatusOutOfGas, gas
	case err == nil:
		return out, nil
	case in.exceeded.Get() == 1:
		out.Status = StatusDepthExceeded
	default:
		out.Status = StatusTrapped
	}
	out.Values = nil
	return out, nil
}

func (in *Instance) discard(ctx context.Context, why error) {
	in.discarded = why
	in.mod.Close(ctx)
}

// SnapshotBytes is the size of the memory snapshot copied before every
// call, the dominant per-call cost of a large guest.
func (in *Instance) SnapshotBytes() int { return len(in.snapMem) }

// Discarded reports whether the instance can no longer be used.
func (in *Instance) Discarded() bool { return in.discarded != nil }

// Close releases the instance.
func (in *Instance) Close(ctx context.Context) error {
	if in.discarded == nil {
		in.discarded = errors.New("closed")
		return in.mod.Close(ctx)
	}
	return nil
}
