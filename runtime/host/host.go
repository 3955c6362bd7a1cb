package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/types"
)

// Sentinels naming the rule that stopped a frame. Result.Err wraps one of
// them (or a wasi sentinel, or none for a plain wasm trap).
var (
	ErrOutOfGas         = errors.New("host: out of gas")
	ErrBadPointer       = errors.New("host: bad pointer")
	ErrKeyLength        = errors.New("host: key length outside 1..KeyLenMax")
	ErrPrefixTooLong    = errors.New("host: prefix too long")
	ErrValueTooLong     = errors.New("host: value too long")
	ErrInputTooLong     = errors.New("host: input too long")
	ErrReturnTooLong    = errors.New("host: return data too long")
	ErrTooManyIterators = errors.New("host: too many open iterators")
	ErrBadIterator      = errors.New("host: bad iterator handle")
	ErrNoEntry          = errors.New("host: iterator has no current entry")
	ErrBadTopic         = errors.New("host: bad event topic")
	ErrEventTooLong     = errors.New("host: event data too long")
	ErrTooManyEvents    = errors.New("host: too many events")
	ErrHashInputTooLong = errors.New("host: hash input too long")
	ErrAccess           = errors.New("host: access violation")
	ErrAborted          = errors.New("host: aborted")
	ErrNoModule         = errors.New("host: no module")
	ErrNoMethod         = errors.New("host: no such method")
	ErrCallDepth        = errors.New("host: call depth exceeded")
	ErrWasmTrap         = errors.New("host: wasm trap")
	ErrNoFrame          = errors.New("host: kairos function called outside a frame")
	// ErrUninstantiable: Instances.Acquire could not instantiate the
	// module because its _initialize fails (docs/abi.md 8.1), a property
	// of the code, not of the node.
	ErrUninstantiable = errors.New("host: module cannot be instantiated")
	// ErrNotMetered is a node error: an engine handed the host an instance
	// without the gas_left global (not instrumented).
	ErrNotMetered = errors.New("host: instance is not instrumented")
)

// State is the committed state a transaction reads: a pinned version (or
// the overlay of earlier transactions of the block on one). The host never
// writes to it: it buffers the transaction's writes per frame and returns
// them in Result.Writes. A State is used by one transaction at a time.
// Errors are node errors (I/O, a pruned version), never guest failures.
type State interface {
	// Get returns the value of key in module; ok is false when absent.
	// The host copies the value before the next call.
	Get(module types.Address, key []byte) (val []byte, ok bool, err error)
	// Iterate returns the entries of module whose keys start with prefix,
	// in ascending bytewise key order, as they are at this moment.
	Iterate(module types.Address, prefix []byte) (Iterator, error)
}

// Iterator walks entries in ascending key order. Key and Value return
// slices valid until the next call of Next; keys are without the module.
type Iterator interface {
	Next() bool
	Key() []byte
	Value() []byte
	Err() error
	Close() error
}

// Instances supplies module instances to run frames; the engine (runtime/vm)
// implements it with pooled, reset instances, tests with instantiate-per-call.
// Acquire and Release are called from the goroutine running the
// transaction, in nested pairs.
type Instances interface {
	// Acquire returns an instrumented instance of the module deployed at
	// addr, in its post-_initialize state (memory, every global, WASI
	// state restored; the meter's depth globals 0: the host sets only
	// gas_left), instantiated in a runtime where Instantiate and
	// wasi.Instantiate registered the host modules, and its export named
	// method (nil if there is none; the host checks names and
	// signatures). ok is false when no module is deployed at addr.
	// Engines should cache the api.Function per instance: wazero's
	// ExportedFunction allocates a call stack (~12 KB) on every lookup.
	// An error wrapping ErrUninstantiable fails the frame that needed the
	// instance as trapped, having used no gas (a caller gets CallTrapped);
	// any other error is a node error.
	Acquire(ctx context.Context, addr types.Address, method string) (mod api.Module, fn api.Function, ok bool, err error)
	// Release hands the instance back after the frame; failed reports the
	// frame did not end normally (the engine may discard the instance).
	Release(mod api.Module, failed bool)
}

// Tx is the context of one transaction.
type Tx struct {
	ID     types.Hash    // seeds the WASI random stream
	Sender types.Address // caller of the top frame
	Time   int64         // consensus timestamp, Unix ns
	Height int64         // block height
	Gas    int64         // gas limit of the top frame
	// Access is the declared access list, enforced unless Simulate.
	Access []types.Access
	// Simulate records accesses (Result.Accessed) instead of enforcing
	// Access.
	Simulate bool
	// Lifecycle lets the top frame be init or migrate (deploy and upgrade
	// transactions); ordinary calls may not invoke them.
	Lifecycle bool
	State     State
	Instances Instances
	// Debug receives debug_log messages (truncated to DebugLogLenMax) and
	// WASI stdout/stderr when set: simulation and tests set it, consensus
	// execution leaves it nil. Gas is the same either way. The message is
	// only valid during the call.
	Debug func(msg []byte)
	// Arena, when set, holds the copies a successful Result owns (its
	// writes, their keys and values, its events and their data) in
	// chunks shared with the arena's other Results, instead of
	// allocations of their own. An executor worker passes one for all
	// its transactions.
	Arena *Arena
}

// Write is one state change of a successful transaction.
type Write struct {
	Module  types.Address
	Key     []byte
	Value   []byte // nil when Deleted
	Deleted bool
}

// Result is the outcome of one transaction, the content of its receipt.
type Result struct {
	Status  types.Status
	Err     error  // why a failed transaction failed; nil for ok
	Abort   []byte // the abort message, for StatusAborted
	Return  []byte
	GasUsed int64
	Events  []types.Event
	Writes  []Write // sorted by module then key; empty unless ok
	// Accessed is the exact access list the transaction used (simulation
	// only), sorted by module, key, prefix flag.
	Accessed []types.Access
}

// Reason is the receipt's error text.
func (r *Result) Reason() string {
	if r.Status == types.StatusAborted {
		return string(r.Abort)
	}
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}

// run is the state of one transaction while it executes.
//
// Runs are pooled: a transfer's host path is a few microseconds, and
// allocating a run, its frames, their write buffers and the buffered bytes
// afresh was a third of it. Nothing of a run is left in a Result (Return,
// events, abort message and writes are owned copies; topics are immutable
// strings), so reusing it cannot change a later transaction's receipt.
// release drops every reference into the finished transaction; what a
// pooled run keeps is capacity, recent topics and, per frame, the last
// instance's metering globals.
type run struct {
	tx      *Tx
	frames  []*frame // the call stack, top frame first
	spare   []*frame // spare[d] is the frame reused at depth d
	started uint32   // frames started so far: the next frame's index
	events  int      // events emitted by frames still alive
	kbuf    []byte   // scratch for write-buffer index keys
	topics  []string // recent event topics, shared by the Results (strings are immutable)
	arena   []byte   // buffered keys and values, append-only while the run lasts
	access  map[accessKey]types.AccessMode
	grant   int // index in tx.Access of the entry that granted the last access
	// sigOK is the last export prepare found to take and return nothing.
	// Engines hand out the same api.Function of a pooled instance again
	// and again, and asking wazero for its signature builds its
	// definition and two type slices each time (~70 ns of a transfer).
	// Only wazero implements api.Function (api.WazeroOnly), with pointer
	// types, so comparing is sound: the same function, the same
	// signature. Kept across reuse, like a frame's metering globals.
	sigOK api.Function
}

var runs = sync.Pool{New: func() any { return new(run) }}

// release returns r to the pool, dropping every reference into the
// finished transaction and buffers grown beyond the retention limits.
func (r *run) release() {
	for _, f := range r.spare {
		if f.run != nil {
			f.reset()
		}
	}
	r.tx, r.frames, r.started, r.events, r.access, r.grant = nil, r.frames[:0], 0, 0, nil, 0
	r.arena = r.arena[:0]
	if cap(r.arena) > arenaKeepMax {
		r.arena = nil
	}
	runs.Put(r)
}

// Run executes method of the module at to as transaction tx. Guest
// failures are in Result; the error is a node error (state I/O, a broken
// engine), after which the transaction must not be committed.
func Run(ctx context.Context, tx *Tx, to types.Address, method string, input []byte) (Result, error) {
	r := runs.Get().(*run)
	defer r.release()
	r.tx = tx
	if tx.Simulate {
		r.access = map[accessKey]types.AccessMode{}
	}
	var res Result
	switch {
	case !ValidMethodName(method) || ReservedMethod(method) && !tx.Lifecycle:
		res.Status, res.Err = types.StatusTrapped, fmt.Errorf("%w %q", ErrNoMethod, method)
	case len(input) > InputLenMax:
		res.Status, res.Err = types.StatusTrapped, fmt.Errorf("%w: %d bytes", ErrInputTooLong, len(input))
	default:
		var o *outcome
		mod, fn, err := r.prepare(ctx, to, method, &o)
		if err != nil {
			return Result{}, err
		}
		if mod != nil {
			f, left, err := r.exec(ctx, mod, fn, tx.Sender, to, input, tx.Gas)
			if err != nil {
				return Result{}, err
			}
			res.GasUsed = tx.Gas - left
			if o = &f.end; o.status == types.StatusOK {
				res.Return, res.Events, res.Writes = f.ret, f.events, f.sortedWrites()
			}
		}
		res.Status, res.Err, res.Abort = o.status, o.err, o.msg
	}
	res.Accessed = r.accessed()
	return res, nil
}

// outcome is how a frame ended.
type outcome struct {
	status types.Status
	err    error
	code   int32  // for a callee: the call result code
	msg    []byte // the abort message
}

// prepare acquires an instance of self and finds method; when nothing can
// run it releases the instance and returns a nil mod, with the outcome (no
// module, no method) in *failed.
//
// The outcome goes out through a pointer, only when there is one: returned
// by value (56 bytes), it was copied on every frame, and reading the copy
// right after its parts were stored stalled on store forwarding, a tenth of
// Run's own time.
func (r *run) prepare(ctx context.Context, self types.Address, method string, failed **outcome) (api.Module, api.Function, error) {
	mod, fn, ok, err := r.tx.Instances.Acquire(ctx, self, method)
	if errors.Is(err, ErrUninstantiable) {
		// Deterministic (_initialize runs in a fixed environment), so a
		// guest failure; only the rule goes into the result, as the
		// engine's message may differ between engines.
		*failed = &outcome{types.StatusTrapped, ErrUninstantiable, CallTrapped, nil}
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		*failed = &outcome{types.StatusTrapped, fmt.Errorf("%w at %s", ErrNoModule, self), CallNoModule, nil}
		return nil, nil, nil
	}
	if fn == nil || !ValidMethodName(method) || fn != r.sigOK && !noParamsNoResults(fn) {
		r.tx.Instances.Release(mod, false)
		*failed = &outcome{types.StatusTrapped, fmt.Errorf("%w %q", ErrNoMethod, method), CallNoMethod, nil}
		return nil, nil, nil
	}
	r.sigOK = fn
	return mod, fn, nil
}

// noParamsNoResults reports whether fn has the signature of a method.
func noParamsNoResults(fn api.Function) bool {
	d := fn.Definition()
	return len(d.ParamTypes()) == 0 && len(d.ResultTypes()) == 0
}

// exec runs one frame on an acquired instance with gas, classifies how it
// ended (f.end) and releases the instance; gasLeft is what the frame did
// not use.
func (r *run) exec(ctx context.Context, mod api.Module, fn api.Function, caller, self types.Address, input []byte, gas int64) (f *frame, gasLeft int64, err error) {
	if len(r.frames) == len(r.spare) {
		r.spare = append(r.spare, new(frame))
	}
	f = r.spare[len(r.frames)]
	if f.run != nil { // used by an earlier frame at this depth of this run
		f.reset()
	}
	g := f.gasGlobal(mod)
	if g == nil {
		r.tx.Instances.Release(mod, true)
		return nil, 0, fmt.Errorf("%w: module %s", ErrNotMetered, self)
	}
	g.Set(uint64(gas))
	f.run, f.ctx, f.mod, f.mem, f.caller, f.self, f.input, f.events0 = r, ctx, mod, mod.Memory(), caller, self, input, r.events
	f.index = r.started
	r.started++
	r.frames = append(r.frames, f)
	f.fctx = frameCtx{ctx, f}
	callErr := fn.CallWithStack(&f.fctx, nil)
	r.frames = r.frames[:len(r.frames)-1]
	gasLeft = int64(g.Get())
	f.classify(callErr, gasLeft)
	f.closeIters()
	failed := f.end.status != types.StatusOK
	if f.end.status == types.StatusOutOfGas {
		gasLeft = 0
	}
	if failed {
		r.events = f.events0
	}
	r.tx.Instances.Release(mod, failed)
	if f.nodeErr != nil {
		return nil, 0, f.nodeErr
	}
	return f, gasLeft, nil
}

// classify sets f.end to how the export call ended. A host function that
// stopped the frame recorded why; anything else is a wasm trap.
func (f *frame) classify(callErr error, gasLeft int64) {
	switch {
	case f.stop != nil:
		f.end = *f.stop
	case f.wasi.Stop != nil:
		if errors.Is(f.wasi.Stop, wasi.ErrOutOfGas) {
			f.end = outcome{types.StatusOutOfGas, ErrOutOfGas, CallOutOfGas, nil}
		} else {
			f.end = outcome{types.StatusTrapped, f.wasi.Stop, CallTrapped, nil}
		}
	case gasLeft < 0:
		// Before callErr == nil: the meter tests the balance only at
		// function entries, loop headers and host calls, so a frame can
		// return normally having overspent; it ran out of gas all the same.
		f.end = outcome{types.StatusOutOfGas, ErrOutOfGas, CallOutOfGas, nil}
	case callErr == nil:
		f.end.status, f.end.code = types.StatusOK, CallOK // err and msg: nil since reset
	default:
		if g := f.mod.ExportedGlobal(meter.DepthExceededExport); g != nil && g.Get() != 0 {
			f.end = outcome{types.StatusTrapped, ErrCallDepth, CallTrapped, nil}
		} else {
			line, _, _ := strings.Cut(callErr.Error(), "\n")
			f.end = outcome{types.StatusTrapped, fmt.Errorf("%w: %s", ErrWasmTrap, line), CallTrapped, nil}
		}
	}
}
