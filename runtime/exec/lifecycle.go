package exec

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// ModulesModule is the system module that keeps module instances: under an
// instance address its ModuleRecord, under 'c' ‖ CID ‖ u16 chunk the
// original code and under 'i' ‖ CID ‖ u16 meter version ‖ u16 chunk the
// instrumented code, in chunks of at most types.StateValueMax bytes (so
// snapshots carry code, and a 2 MB Go guest fits).
var ModulesModule = types.Address(sha256.Sum256([]byte("kairos/system/modules\x00")))

// ModuleRecord is the state of one module instance.
type ModuleRecord struct {
	_     struct{}      `cbor:",toarray"`
	Code  []byte        // CID bytes of the original code
	Admin types.Address // zero: immutable forever
	// Meter is the version of the instrumenter (meter.Version) that made
	// the instrumented code this instance runs. A newer node binary with
	// a newer instrumenter keeps running the stored bytes of the recorded
	// version, so gas never changes under a deployed module; only a deploy
	// or upgrade after it instruments at the new version, stored beside
	// the old bytes of the same CID instead of over them (an engine that
	// had compiled the old bytes would otherwise disagree with one that
	// loads the new).
	Meter uint16
}

// Gas of the lifecycle steps, on top of what init or migrate use.
const (
	GasDeployBase = 10_000
	GasCodeByte   = 10 // per byte of code validated, instrumented and stored
	GasAdmin      = 1_000
)

// Lifecycle errors, in receipts (StatusAborted).
var (
	ErrNotAdmin     = errors.New("exec: sender is not the module's admin")
	ErrImmutable    = errors.New("exec: module is immutable")
	ErrCodeRejected = errors.New("exec: code rejected")
	ErrCodeTooLarge = errors.New("exec: code too large")
)

// CodeChunksMax caps the chunks of one stored code (original or
// instrumented): 16 MiB, well above validate's module size limit.
const CodeChunksMax = 16

// InstanceAddress is the address of the instance a deploy transaction of
// sender with nonce creates: known before execution, so the deploy's own
// access list (for init) and later calls can name it.
func InstanceAddress(sender types.Address, nonce uint64) types.Address {
	b := append([]byte("kairos/instance\x00"), sender[:]...)
	return types.Address(sha256.Sum256(binary.BigEndian.AppendUint64(b, nonce)))
}

// Kinds of stored code.
const (
	original     = 'c'
	instrumented = 'i'
)

func recordKey(a types.Address) []byte { return a[:] }

// chunkKey names chunk i of a stored code; id is the CID for original code
// and instrumentedID for instrumented code.
func chunkKey(kind byte, id []byte, i int) []byte {
	return binary.BigEndian.AppendUint16(append([]byte{kind}, id...), uint16(i))
}

// instrumentedID names the instrumented code of cid made by instrumenter
// version meter; as a string it is also the engine's code id.
func instrumentedID(cid []byte, meter uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte(nil), cid...), meter)
}

// CodeChunkKey is the ModulesModule key of chunk i of the original code
// with CID bytes cid (read by the API to serve a module's size).
func CodeChunkKey(cid []byte, i int) []byte { return chunkKey(original, cid, i) }

// codeWrites splits code into chunk writes of ModulesModule.
func codeWrites(kind byte, cid, code []byte) ([]state.Write, error) {
	n := (len(code) + types.StateValueMax - 1) / types.StateValueMax
	if n > CodeChunksMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrCodeTooLarge, len(code))
	}
	ws := make([]state.Write, n)
	for i := range n {
		chunk := code[i*types.StateValueMax : min(len(code), (i+1)*types.StateValueMax)]
		ws[i] = state.Write{Key: types.StateKey{Module: ModulesModule, Key: chunkKey(kind, cid, i)}, Value: chunk}
	}
	return ws, nil
}

// loadCode reads the chunks of a stored code until the first absent one.
func loadCode(o Overlay, kind byte, cid []byte) ([]byte, error) {
	var code []byte
	for i := range CodeChunksMax + 1 {
		v, err := o.Get(ModulesModule, chunkKey(kind, cid, i))
		if err != nil {
			return nil, err
		}
		if v == nil {
			break
		}
		code = append(code, v...)
	}
	if len(code) == 0 {
		return nil, fmt.Errorf("%w: code %x missing", ErrState, cid)
	}
	return code, nil
}

// DeployConfig returns the deploy pipeline's configuration: the network's
// limits, and an import allow-list of exactly the host ABI and the virtual
// WASI. A function, so no caller can change what another one gets.
func DeployConfig() validate.Config {
	return validate.Config{Limits: validate.DefaultLimits(), Imports: append(host.Funcs(), wasi.Funcs()...)}
}

// GenesisModule returns the writes that install code at addr with admin,
// for a chain's genesis and for tests.
func GenesisModule(addr types.Address, code []byte, admin types.Address) ([]state.Write, error) {
	p, err := deploy.Prepare(code, DeployConfig())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCodeRejected, err)
	}
	chunks, err := storedCode(p)
	if err != nil {
		return nil, err
	}
	rec := &ModuleRecord{Code: p.CodeCID.Bytes(), Admin: admin, Meter: meterVersion(p)}
	ws := []state.Write{{Key: types.StateKey{Module: ModulesModule, Key: recordKey(addr)}, Value: types.MustEncode(rec)}}
	return append(ws, chunks...), nil
}

// storedCode returns the chunk writes of a prepared module's original and
// instrumented code.
func storedCode(p *deploy.Prepared) ([]state.Write, error) {
	cid := p.CodeCID.Bytes()
	ws, err := codeWrites(original, cid, p.Original)
	if err != nil {
		return nil, err
	}
	iws, err := codeWrites(instrumented, instrumentedID(cid, meterVersion(p)), p.Instrumented)
	return append(ws, iws...), err
}

// meterVersion is p's instrumenter version as stored in a ModuleRecord.
func meterVersion(p *deploy.Prepared) uint16 { return uint16(p.MeterVersion) }

// Engine supplies wasm instances by code id (runtime/vm's pools): like
// host.Instances, an instrumented module in its post-_initialize state, in
// a runtime where host.Instantiate and wasi.Instantiate registered the host
// modules, with its export named method (nil if none); instrumented loads
// the code on a cache miss. Safe for use by several goroutines; Acquire
// and Release of one transaction come from one.
type Engine interface {
	Acquire(ctx context.Context, codeID, method string, instrumented func() ([]byte, error)) (api.Module, api.Function, error)
	Release(mod api.Module, failed bool)
}

// loadRecord reads and decodes the record of module a (nil when absent).
func loadRecord(o Overlay, a types.Address) (*ModuleRecord, error) {
	return (*recordCache)(nil).load(o, a)
}

// txInstances resolves module addresses through the transaction's overlay,
// so a module deployed or upgraded earlier in the block (or earlier in the
// same transaction) is the one that runs.
type txInstances struct {
	o       Overlay
	e       Engine
	records *recordCache
	w       *worker // the executor worker running the transaction, or nil
}

// recordCache keeps the last module record a runner decoded, keyed by its
// stored bytes: a block calls the same few modules over and over, and
// decoding the record's CBOR on every call was a fifth of a small wasm
// call. Keyed by value, it cannot answer a stale record; one entry bounds
// it. The record it returns is shared and must not be modified.
type recordCache struct{ last atomic.Pointer[recordEntry] }

type recordEntry struct {
	raw  string
	rec  *ModuleRecord
	code string // string(instrumentedID(rec.Code, rec.Meter)), the engine's code id
}

// load is loadRecord through the cache (a nil cache decodes every time,
// for callers that modify the record).
func (c *recordCache) load(o Overlay, a types.Address) (*ModuleRecord, error) {
	e, err := c.entry(o, a, recordKey(a))
	if e == nil {
		return nil, err
	}
	return e.rec, nil
}

// entry is load with the record's code id (nil when absent); key is
// recordKey(a), which the caller may hold in a buffer of its own.
func (c *recordCache) entry(o Overlay, a types.Address, key []byte) (*recordEntry, error) {
	v, err := o.Get(ModulesModule, key)
	if err != nil || v == nil {
		return nil, err
	}
	if c != nil {
		if e := c.last.Load(); e != nil && e.raw == string(v) {
			return e, nil
		}
	}
	var rec ModuleRecord
	if err := types.Decode(v, &rec); err != nil {
		return nil, fmt.Errorf("%w: module record of %s: %w", ErrState, a, err)
	}
	e := &recordEntry{raw: string(v), rec: &rec, code: string(instrumentedID(rec.Code, rec.Meter))}
	if c != nil {
		c.last.Store(e)
	}
	return e, nil
}

func (t txInstances) Acquire(ctx context.Context, a types.Address, method string) (api.Module, api.Function, bool, error) {
	// The record key in the worker's buffer: a slice of a itself would
	// move a to the heap, an allocation per call.
	var key []byte
	if t.w != nil {
		t.w.recordKey = a
		key = t.w.recordKey[:]
	} else {
		k := a
		key = recordKey(k)
	}
	rec, err := t.records.entry(t.o, a, key)
	if err != nil || rec == nil {
		return nil, nil, false, err
	}
	le, local := t.e.(localEngine)
	local = local && t.w != nil
	if local {
		// The usual case, without building the loader below.
		if mod, fn, ok := le.acquireIdle(t.w, rec.code, method); ok {
			return mod, fn, true, nil
		}
	}
	load := func() ([]byte, error) { return loadCode(t.o, instrumented, []byte(rec.code)) }
	var mod api.Module
	var fn api.Function
	if local {
		mod, fn, err = le.acquireLocal(ctx, t.w, rec.code, method, load)
	} else {
		mod, fn, err = t.e.Acquire(ctx, rec.code, method, load)
	}
	if errors.Is(err, vm.ErrInstantiate) {
		// Its _initialize fails, in a fixed environment with fixed gas,
		// so on every node: the guest's fault, which the host turns into
		// a trapped frame (a deploy of such code fails, the block goes
		// on), not a node error.
		err = fmt.Errorf("%w: %w", host.ErrUninstantiable, err)
	}
	return mod, fn, err == nil, err
}

func (t txInstances) Release(mod api.Module, failed bool) {
	if le, ok := t.e.(localEngine); ok && t.w != nil {
		le.releaseLocal(t.w, mod, failed)
		return
	}
	t.e.Release(mod, failed)
}

// gasMeter counts the runner's own charges.
type gasMeter struct{ used, limit uint64 }

func (g *gasMeter) charge(n uint64) bool {
	if n > g.limit-g.used {
		g.used = g.limit
		return false
	}
	g.used += n
	return true
}

// lifecycle runs deploy, upgrade and the admin operations.
func (r *WasmRunner) lifecycle(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	p := &tx.Body.Payload
	g := &gasMeter{limit: tx.Body.GasLimit}
	fail := func(st types.Status, err error) Result {
		return Result{Status: st, GasUsed: g.used, Error: err.Error()}
	}
	oog := func() Result { return Result{Status: types.StatusOutOfGas, GasUsed: g.limit, Error: "out of gas"} }
	target := p.Module
	var rec *ModuleRecord
	if p.Kind != types.Deploy {
		var err error
		if rec, err = loadRecord(o, target); err != nil {
			return Result{Fatal: err}
		}
		if rec == nil {
			return Result{Status: types.StatusInvalid, Error: fmt.Sprintf("unknown module %s", target)}
		}
		if !g.charge(GasAdmin) {
			return oog()
		}
		if rec.Admin == (types.Address{}) {
			return fail(types.StatusAborted, ErrImmutable)
		}
		if rec.Admin != env.Sender {
			return fail(types.StatusAborted, ErrNotAdmin)
		}
	}
	switch p.Kind {
	case types.SetAdmin, types.ClearAdmin:
		rec.Admin = p.Admin // zero for ClearAdmin (types.Tx.Validate)
		return r.finish(o, target, rec, g, Result{Status: types.StatusOK})
	case types.Deploy:
		target = InstanceAddress(env.Sender, tx.Body.Nonce)
		rec = &ModuleRecord{Admin: p.Admin}
		if !g.charge(GasDeployBase) {
			return oog()
		}
	}
	if !g.charge(GasCodeByte * uint64(len(p.Code))) {
		return oog()
	}
	prep, err := deploy.Prepare(p.Code, DeployConfig())
	if err != nil {
		return fail(types.StatusAborted, fmt.Errorf("%w: %w", ErrCodeRejected, err))
	}
	rec.Code, rec.Meter = prep.CodeCID.Bytes(), meterVersion(prep)
	code, err := storedCode(prep)
	if err != nil {
		return fail(types.StatusAborted, err)
	}
	for _, w := range code {
		if err := o.Set(w.Key.Module, w.Key.Key, w.Value); err != nil {
			return Result{Fatal: err}
		}
	}
	if err := o.Set(ModulesModule, recordKey(target), types.MustEncode(rec)); err != nil {
		return Result{Fatal: err}
	}
	method := "init"
	if p.Kind == types.Upgrade {
		method = "migrate"
	}
	// init / migrate run on the new code with what gas is left; if they
	// fail the transaction fails and the executor drops every write, so
	// the old code and state stay.
	res, why := r.call(ctx, o, tx, env, target, method, p.Args, g.limit-g.used, true)
	if res.Fatal != nil {
		return res
	}
	if res.Status == types.StatusTrapped && errors.Is(why, host.ErrNoMethod) {
		res = Result{Status: types.StatusOK} // the module has no init / migrate
	}
	res.GasUsed += g.used
	if p.Kind == types.Deploy && res.Status == types.StatusOK {
		res.Return = target[:]
	}
	return res
}

// finish writes rec for an admin operation.
func (r *WasmRunner) finish(o Overlay, a types.Address, rec *ModuleRecord, g *gasMeter, res Result) Result {
	if err := o.Set(ModulesModule, recordKey(a), types.MustEncode(rec)); err != nil {
		return Result{Fatal: err}
	}
	res.GasUsed = g.used
	return res
}
