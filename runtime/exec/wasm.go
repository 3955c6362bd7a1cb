package exec

import (
	"context"
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

// ErrUninstantiable fails a transaction that needs an instance of a module
// that cannot be instantiated (vm.ErrInstantiate: its _initialize fails):
// the host's rule, which the receipt names.
var ErrUninstantiable = host.ErrUninstantiable

// WasmRunner runs wasm transactions through the host ABI (runtime/host)
// on the instances of an Engine: calls, and the module lifecycle (deploy,
// upgrade with migrate, set and clear admin; lifecycle.go). The host
// enforces the declared access list (or records it in simulation), meters
// gas and buffers writes; the runner hands a successful transaction's
// writes to the overlay. Modules are found through the overlay's
// ModulesModule records, so deploys and upgrades earlier in the block are
// seen.
type WasmRunner struct {
	engine  Engine
	records recordCache
}

// NewWasmRunner returns a runner on e.
func NewWasmRunner(e Engine) *WasmRunner { return &WasmRunner{engine: e} }

// Run implements Runner.
func (r *WasmRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	p := &tx.Body.Payload
	if p.Kind != types.Call {
		return r.lifecycle(ctx, o, tx, env)
	}
	res, why := r.call(ctx, o, tx, env, p.Module, p.Method, p.Args, tx.Body.GasLimit, false)
	if errors.Is(why, host.ErrNoModule) {
		// Like the native runner and types.StatusInvalid: a transaction to
		// no module did nothing, so it costs nothing and keeps its nonce.
		return Result{Status: types.StatusInvalid, Error: res.Error}
	}
	return res
}

// call runs method of module to in a host frame with gas, applies the
// writes of a success to o and returns the result and the host's reason.
func (r *WasmRunner) call(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv, to types.Address, method string, args []byte, gas uint64, lifecycle bool) (Result, error) {
	gas = min(gas, 1<<62) // host gas is an int64; no chain allows this much
	// The frame's transaction and the two views the host gets of it: an
	// executor worker's own (it runs one call at a time, and the host
	// keeps nothing of them after Run), else one allocation.
	w := workerOf(ctx)
	var f *callFrame
	if w != nil {
		f = &w.call
	} else {
		f = new(callFrame)
	}
	f.st, f.inst = hostState{o}, txInstances{o: o, e: r.engine, records: &r.records, w: w}
	f.tx = host.Tx{
		ID: env.TxID, Sender: env.Sender, Time: env.TS, Height: int64(env.Height), Gas: int64(gas),
		Access: tx.Body.Access, Simulate: env.Simulate, Lifecycle: lifecycle,
		State: &f.st, Instances: &f.inst,
	}
	if w != nil {
		f.tx.Arena = &w.arena
	}
	res, err := host.Run(ctx, &f.tx, to, method, args)
	*f = callFrame{} // keep no overlay alive in an idle worker
	if err != nil {
		return Result{Fatal: err}, nil
	}
	if rec, ok := o.(accessRecorder); ok && env.Simulate {
		// The host's record also holds what a failed transaction touched
		// and what it read from its own write buffer.
		for _, a := range res.Accessed {
			rec.recordAccess(a)
		}
	}
	out := Result{Status: res.Status, GasUsed: uint64(res.GasUsed), Error: res.Reason()}
	if res.Status != types.StatusOK {
		return out, res.Err
	}
	for _, w := range res.Writes {
		v := w.Value
		if w.Deleted {
			v = nil
		}
		if err := o.Set(w.Module, w.Key, v); err != nil {
			// The host checks the same limits before buffering a write.
			return Result{Fatal: fmt.Errorf("exec: host write rejected by the overlay: %w", err)}, nil
		}
	}
	if w != nil {
		// The overlay holds the values and keys of its own: the arena
		// may hand the Writes and their keys to the worker's next call.
		w.arena.Release(res.Writes)
	}
	out.Return, out.Events = res.Return, res.Events
	return out, nil
}

// callFrame is what WasmRunner.call hands the host for one call.
type callFrame struct {
	tx   host.Tx
	st   hostState
	inst txInstances
}

// hostState shows an Overlay to the host.
type hostState struct{ o Overlay }

func (s hostState) Get(module types.Address, key []byte) ([]byte, bool, error) {
	v, err := s.o.Get(module, key)
	return v, v != nil, err
}

func (s hostState) Iterate(module types.Address, prefix []byte) (host.Iterator, error) {
	it, err := s.o.Iterate(module, prefix)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return it, nil
}
