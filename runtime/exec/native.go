package exec

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kairos-network/kairos/types"
)

// Errors a native module meets through its Call; the runner turns them
// into receipt statuses.
var (
	// ErrOutOfGas stops a call that ran out of gas (StatusOutOfGas).
	ErrOutOfGas = errors.New("exec: out of gas")
	// ErrAccessViolation stops a call that touched a key outside the
	// declared access list (StatusAccessViolation).
	ErrAccessViolation = errors.New("exec: undeclared access")
)

// Gas of the native runner: a fixed count per operation, so it is
// deterministic and cheap to reason about in tests.
const (
	GasTxBase   = 100
	GasGet      = 20
	GasSet      = 40
	GasIterItem = 10
	GasEmit     = 20
)

// NativeModule is a module written in Go and run by NativeRunner. It is
// the test and benchmark stand-in for a wasm module: same overlay, same
// access rules, same statuses.
type NativeModule interface {
	// Call runs method; c is valid until it returns. An error wrapping
	// ErrOutOfGas or ErrAccessViolation gives that status; any other
	// error aborts.
	Call(c *Call, method string, args []byte) ([]byte, error)
}

// NativeRunner runs Call payloads against Go-coded modules at fixed
// addresses. Other payloads (deploy, upgrade, admin) are StatusInvalid:
// native modules have no lifecycle.
type NativeRunner struct {
	modules map[types.Address]NativeModule
}

// NewNativeRunner returns a runner of modules, keyed by address. The map is
// copied.
func NewNativeRunner(modules map[types.Address]NativeModule) *NativeRunner {
	m := make(map[types.Address]NativeModule, len(modules))
	for a, mod := range modules {
		m[a] = mod
	}
	return &NativeRunner{modules: m}
}

// Run implements Runner.
func (r *NativeRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	p := &tx.Body.Payload
	if p.Kind != types.Call {
		return Result{Status: types.StatusInvalid, Error: fmt.Sprintf("native runner: %s not supported", p.Kind)}
	}
	mod, ok := r.modules[p.Module]
	if !ok {
		return Result{Status: types.StatusInvalid, Error: fmt.Sprintf("unknown module %s", p.Module)}
	}
	// A Call escapes (modules take it through an interface): ~190 bytes
	// per transaction, a third of a native transfer's allocation, when
	// each had its own. The pool hands it back within the transaction, on
	// the same P.
	c := callPool.Get().(*Call)
	defer func() {
		*c = Call{} // keeps no overlay or events alive, shares no events
		callPool.Put(c)
	}()
	*c = Call{o: o, access: tx.Body.Access, enforce: !env.Simulate, Self: p.Module, Env: env, gasLimit: tx.Body.GasLimit}
	ret, err := func() ([]byte, error) {
		if err := c.Charge(GasTxBase); err != nil {
			return nil, err
		}
		return mod.Call(c, p.Method, p.Args)
	}()
	res := Result{GasUsed: c.gasUsed, Return: ret, Events: c.events}
	switch {
	case c.fatal != nil:
		return Result{Fatal: c.fatal}
	case err == nil:
		res.Status = types.StatusOK
	case errors.Is(err, ErrOutOfGas):
		res.Status, res.GasUsed = types.StatusOutOfGas, tx.Body.GasLimit
	case errors.Is(err, ErrAccessViolation):
		res.Status = types.StatusAccessViolation
	default:
		res.Status = types.StatusAborted
	}
	if err != nil {
		res.Error, res.Return, res.Events = err.Error(), nil, nil
	}
	return res
}

// Call is a native module's handle on one transaction: state of its own
// module through the overlay, gas, events and the transaction's facts. It
// is valid only until the module's Call returns: the runner reuses it.
type Call struct {
	// Self is the called module's address; Env the transaction's env.
	Self types.Address
	Env  TxEnv

	o        Overlay
	access   []types.Access
	enforce  bool
	gasUsed  uint64
	gasLimit uint64
	events   []types.Event
	fatal    error
}

var callPool = sync.Pool{New: func() any { return new(Call) }}

// Charge consumes gas, failing with ErrOutOfGas past the limit (the gas
// used is then the whole limit).
func (c *Call) Charge(gas uint64) error {
	if gas > c.gasLimit-c.gasUsed {
		c.gasUsed = c.gasLimit
		return ErrOutOfGas
	}
	c.gasUsed += gas
	return nil
}

func (c *Call) check(k []byte, prefix bool, mode types.AccessMode) error {
	if !c.enforce {
		return nil
	}
	for _, a := range c.access {
		if prefix {
			// An iteration needs a prefix entry that covers the whole prefix.
			if a.Prefix && a.Covers(c.Self, k, mode) {
				return nil
			}
		} else if a.Covers(c.Self, k, mode) {
			return nil
		}
	}
	return fmt.Errorf("%w: mode %d of %x (prefix %v) in %s", ErrAccessViolation, mode, k, prefix, c.Self)
}

// guard records a node error so Run reports it as Fatal, and passes guest
// errors through.
func (c *Call) guard(err error) error {
	if err != nil && errors.Is(err, ErrState) {
		c.fatal = err
	}
	return err
}

// Get reads key of the module.
func (c *Call) Get(k []byte) ([]byte, error) {
	if err := c.Charge(GasGet); err != nil {
		return nil, err
	}
	if err := c.check(k, false, types.Read); err != nil {
		return nil, err
	}
	v, err := c.o.Get(c.Self, k)
	return v, c.guard(err)
}

// Set writes key of the module (empty value = delete).
func (c *Call) Set(k, value []byte) error {
	if err := c.Charge(GasSet); err != nil {
		return err
	}
	if err := c.check(k, false, types.Write); err != nil {
		return err
	}
	return c.o.Set(c.Self, k, value)
}

// Iterate visits the module's keys under prefix in key order, charging
// GasIterItem per key.
func (c *Call) Iterate(prefix []byte, fn func(k, v []byte) error) error {
	if err := c.check(prefix, true, types.Read); err != nil {
		return err
	}
	it, err := c.o.Iterate(c.Self, prefix)
	if err != nil {
		return c.guard(err)
	}
	defer it.Close()
	for it.Next() {
		if err := c.Charge(GasIterItem); err != nil {
			return err
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return c.guard(it.Err())
}

// Emit appends an event of the module.
func (c *Call) Emit(topic string, data []byte) error {
	if err := c.Charge(GasEmit); err != nil {
		return err
	}
	c.events = append(c.events, types.Event{Module: c.Self, Topic: topic, Data: append([]byte(nil), data...)})
	return nil
}
