package exec

import (
	"context"
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

// WasmRunner runs Call transactions in wasm through the host ABI
// (runtime/host), on instances supplied by an engine (host.Instances,
// implemented by the instance pools of runtime/vm). The host enforces the
// declared access list (or records it in simulation), meters gas and
// buffers writes; the runner hands a successful transaction's writes to
// the overlay. Deploy, upgrade and admin transactions are not executed yet
// (StatusInvalid): module records in the state and code loading by the
// engine are still to be built.
type WasmRunner struct {
	inst host.Instances
}

// NewWasmRunner returns a runner on inst, which must be safe for use by
// several goroutines at once (each transaction acquires and releases its
// own instances from one goroutine).
func NewWasmRunner(inst host.Instances) *WasmRunner { return &WasmRunner{inst: inst} }

// Run implements Runner.
func (r *WasmRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	p := &tx.Body.Payload
	if p.Kind != types.Call {
		return Result{Status: types.StatusInvalid, Error: fmt.Sprintf("wasm runner: %s not supported yet", p.Kind)}
	}
	gas := tx.Body.GasLimit
	if gas > uint64(1<<62) {
		gas = 1 << 62 // host gas is an int64; no chain allows this much
	}
	htx := &host.Tx{
		ID: env.TxID, Sender: env.Sender, Time: env.TS, Height: int64(env.Height), Gas: int64(gas),
		Access: tx.Body.Access, Simulate: env.Simulate, State: hostState{o}, Instances: r.inst,
	}
	res, err := host.Run(ctx, htx, p.Module, p.Method, p.Args)
	if err != nil {
		return Result{Fatal: err}
	}
	if rec, ok := o.(accessRecorder); ok && env.Simulate {
		// The host's record also holds what a failed transaction touched
		// and what it read from its own write buffer.
		for _, a := range res.Accessed {
			rec.recordAccess(a)
		}
	}
	if errors.Is(res.Err, host.ErrNoModule) {
		// Like the native runner and types.StatusInvalid: a transaction to
		// no module did nothing, so it costs nothing and keeps its nonce.
		return Result{Status: types.StatusInvalid, Error: res.Reason()}
	}
	out := Result{Status: res.Status, GasUsed: uint64(res.GasUsed), Error: res.Reason()}
	if res.Status != types.StatusOK {
		return out
	}
	for _, w := range res.Writes {
		v := w.Value
		if w.Deleted {
			v = nil
		}
		if err := o.Set(w.Module, w.Key, v); err != nil {
			// The host checks the same limits before buffering a write.
			return Result{Fatal: fmt.Errorf("exec: host write rejected by the overlay: %w", err)}
		}
	}
	out.Return, out.Events = res.Return, res.Events
	return out
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
