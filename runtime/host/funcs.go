package host

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/types"
)

// ModuleName is the import module of the host functions.
const ModuleName = "kairos"

type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	do      func(f *frame, s []uint64)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func vt(t ...api.ValueType) []api.ValueType { return t }

// funcs is the table of docs/abi.md section 4, in its order. Every
// function follows section 4.1: charge GasHostCall; check ranges, limits
// and handles (trapped); check access (access_violation); charge the
// size-dependent rest (out_of_gas); only then do the work.
var funcs = []hostFunc{
	{"input_read", vt(i32, i32), vt(i32), inputRead},
	{"return_data", vt(i32, i32), nil, returnData},
	{"state_get", vt(i32, i32, i32, i32), vt(i32), stateGet},
	{"state_set", vt(i32, i32, i32, i32), nil, stateSet},
	{"state_delete", vt(i32, i32), nil, stateDelete},
	{"state_iter_open", vt(i32, i32), vt(i32), iterOpen},
	{"state_iter_next", vt(i32), vt(i32), iterNext},
	{"state_iter_key", vt(i32, i32, i32), vt(i32), func(f *frame, s []uint64) { iterEntry(f, s, true) }},
	{"state_iter_value", vt(i32, i32, i32), vt(i32), func(f *frame, s []uint64) { iterEntry(f, s, false) }},
	{"state_iter_close", vt(i32), nil, iterClose},
	{"emit_event", vt(i32, i32, i32, i32), nil, emitEvent},
	{"caller", vt(i32), nil, func(f *frame, s []uint64) { writeAddress(f, s, &f.caller) }},
	{"self_address", vt(i32), nil, func(f *frame, s []uint64) { writeAddress(f, s, &f.self) }},
	{"tx_time", nil, vt(i64), func(f *frame, s []uint64) { f.charge(GasHostCall); s[0] = uint64(f.run.tx.Time) }},
	{"block_height", nil, vt(i64), func(f *frame, s []uint64) { f.charge(GasHostCall); s[0] = uint64(f.run.tx.Height) }},
	{"call", vt(i32, i32, i32, i32, i32, i64), vt(i32), callModule},
	{"call_result", vt(i32, i32), vt(i32), callResult},
	{"sha256", vt(i32, i32, i32), nil, sha256Func},
	{"ed25519_verify", vt(i32, i32, i32, i32), vt(i32), ed25519Verify},
	{"abort", vt(i32, i32), nil, abort},
	{"debug_log", vt(i32, i32), nil, debugLog},
	{"input_caller", vt(i32, i32, i32), vt(i32), inputCaller},
}

func inputRead(f *frame, s []uint64) {
	f.charge(GasHostCall)
	dst, capacity := uint32(s[0]), uint32(s[1])
	f.check(dst, uint64(capacity))
	s[0] = f.give(dst, capacity, f.input, 0)
}

// inputCaller is input_read and caller in one host call (docs/abi.md
// section 4.2): nearly every method starts with both, and the exit from
// the guest, not the copying, is most of a cheap host call's cost. It
// charges one GasHostCall and the bytes of both halves; both ranges are
// checked before anything is charged past GasHostCall or written. The
// input is copied first, so where the ranges overlap the address wins.
func inputCaller(f *frame, s []uint64) {
	f.charge(GasHostCall)
	dst, capacity, cp := uint32(s[0]), uint32(s[1]), uint32(s[2])
	f.check(dst, uint64(capacity))
	f.check(cp, addressLen)
	s[0] = f.give(dst, capacity, f.input, addressLen*GasByte)
	copy(f.buf[cp:], f.caller[:])
}

func returnData(f *frame, s []uint64) {
	f.charge(GasHostCall)
	p, n := uint32(s[0]), uint32(s[1])
	f.check(p, uint64(n))
	if n > ReturnLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrReturnTooLong, n))
	}
	f.charge(uint64(n) * GasByte)
	f.ret = append(f.ret[:0:0], f.view(p, n)...)
}

// key checks a key range and its length and returns it (aliasing memory).
func (f *frame) key(p, n uint32) []byte {
	f.check(p, uint64(n))
	if n == 0 || n > KeyLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrKeyLength, n))
	}
	return f.view(p, n)
}

func stateGet(f *frame, s []uint64) {
	f.charge(GasHostCall)
	kp, kn, dst, capacity := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	key := f.key(kp, kn)
	f.check(dst, uint64(capacity))
	f.allow(key, types.Read, false)
	v, ok := f.lookup(key)
	if !ok {
		f.charge(GasStateRead + uint64(kn)*GasByte)
		s[0] = api.EncodeI32(-1)
		return
	}
	s[0] = f.give(dst, capacity, v, GasStateRead+uint64(kn)*GasByte)
}

func stateSet(f *frame, s []uint64) {
	f.charge(GasHostCall)
	kp, kn, vp, vn := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	key := f.key(kp, kn)
	f.check(vp, uint64(vn))
	if vn > ValueLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrValueTooLong, vn))
	}
	f.allow(key, types.Write, false)
	f.charge(GasStateWrite + uint64(kn+vn)*GasStateWriteByte)
	f.put(key, f.view(vp, vn), false)
}

func stateDelete(f *frame, s []uint64) {
	f.charge(GasHostCall)
	kp, kn := uint32(s[0]), uint32(s[1])
	key := f.key(kp, kn)
	f.allow(key, types.Write, false)
	f.charge(GasStateWrite + uint64(kn)*GasByte)
	f.put(key, nil, true)
}

func iterOpen(f *frame, s []uint64) {
	f.charge(GasHostCall)
	p, n := uint32(s[0]), uint32(s[1])
	f.check(p, uint64(n))
	if n > KeyLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrPrefixTooLong, n))
	}
	h := -1
	for i := range f.iters {
		if f.iters[i] == nil {
			h = i
			break
		}
	}
	if h < 0 {
		f.trap(ErrTooManyIterators)
	}
	prefix := append([]byte{}, f.view(p, n)...)
	f.allow(prefix, types.Read, true)
	f.charge(GasIterOpen + uint64(n)*GasByte)
	base, err := f.run.tx.State.Iterate(f.self, prefix)
	if err != nil {
		f.nodeError(err)
	}
	f.iters[h] = &iterator{base: base, overlay: f.pending(prefix)}
	s[0] = uint64(h)
}

func iterNext(f *frame, s []uint64) {
	f.charge(GasHostCall)
	it := f.iter(uint32(s[0]))
	f.charge(GasIterNext)
	s[0] = 0
	if it.state == 2 {
		return
	}
	ok, err := it.advance()
	if err != nil {
		f.nodeError(err)
	}
	if !ok {
		it.state = 2
		return
	}
	it.state = 1
	s[0] = 1
}

func iterEntry(f *frame, s []uint64, key bool) {
	f.charge(GasHostCall)
	h, dst, capacity := uint32(s[0]), uint32(s[1]), uint32(s[2])
	it := f.iter(h)
	if it.state != 1 {
		f.trap(fmt.Errorf("%w (handle %d)", ErrNoEntry, h))
	}
	f.check(dst, uint64(capacity))
	data := it.val
	if key {
		data = it.key
	}
	s[0] = f.give(dst, capacity, data, 0)
}

func iterClose(f *frame, s []uint64) {
	f.charge(GasHostCall)
	h := uint32(s[0])
	it := f.iter(h)
	f.iters[h] = nil
	if err := it.base.Close(); err != nil {
		f.nodeError(err)
	}
}

func emitEvent(f *frame, s []uint64) {
	f.charge(GasHostCall)
	tp, tn, dp, dn := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	f.check(tp, uint64(tn))
	f.check(dp, uint64(dn))
	if topic := f.view(tp, tn); !validTopic(topic) {
		f.trap(fmt.Errorf("%w %q", ErrBadTopic, topic[:min(len(topic), EventTopicLenMax+1)]))
	}
	if dn > EventDataLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrEventTooLong, dn))
	}
	if f.run.events >= EventsPerTxMax {
		f.trap(ErrTooManyEvents)
	}
	f.charge(GasEvent + uint64(tn+dn)*GasEventByte)
	f.run.events++
	a := f.run.tx.Arena
	data := a.bytes(int(dn))
	copy(data, f.view(dp, dn))
	var e *types.Event
	f.events, e = a.appendEvent(f.events)
	e.Module, e.Topic, e.Data = f.self, f.run.topic(f.view(tp, tn)), data
}

// topicsCacheMax bounds the run's cache of event topics: a contract emits
// a handful of distinct topics, and a lookup scans the whole cache.
const topicsCacheMax = 8

// topic returns b as a string, reusing an earlier event's: most events
// repeat one of a contract's few topics, and a Result may share the
// immutable string.
func (r *run) topic(b []byte) string {
	for _, t := range r.topics {
		if t == string(b) {
			return t
		}
	}
	t := string(b)
	if len(r.topics) < topicsCacheMax {
		r.topics = append(r.topics, t)
	}
	return t
}

func writeAddress(f *frame, s []uint64, a *types.Address) {
	f.charge(GasHostCall)
	p := uint32(s[0])
	f.check(p, addressLen)
	f.charge(addressLen * GasByte)
	copy(f.buf[p:], a[:])
}

func callModule(f *frame, s []uint64) {
	f.charge(GasHostCall)
	ap, mp, mn, ip, in, gas := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), int64(s[5])
	f.check(ap, addressLen)
	f.check(mp, uint64(mn))
	f.check(ip, uint64(in))
	if in > InputLenMax {
		f.trap(fmt.Errorf("%w: call input of %d bytes", ErrInputTooLong, in))
	}
	var addr types.Address
	copy(addr[:], f.view(ap, addressLen))
	f.allowCall(addr)
	f.charge(GasCall + uint64(addressLen+uint64(mn)+uint64(in))*GasByte)
	f.callResult = nil
	method := "" // a name longer than any method is no method (code 5)
	if mn <= MethodNameLenMax {
		method = string(f.view(mp, mn))
	}
	input := append([]byte{}, f.view(ip, in)...)
	s[0] = uint64(f.call(addr, method, input, gas))
}

// call runs a callee frame (docs/abi.md section 4.6) and returns its code.
// Codes in table order: no module, no method, depth, reentrancy.
func (f *frame) call(addr types.Address, method string, input []byte, gas int64) int32 {
	r := f.run
	var failed *outcome
	mod, fn, err := r.prepare(f.ctx, addr, method, &failed)
	if err != nil {
		f.nodeError(err)
	}
	if mod == nil {
		return failed.code
	}
	if ReservedMethod(method) || len(r.frames) >= CallDepthMax || r.onStack(addr) {
		r.tx.Instances.Release(mod, false)
		switch {
		case ReservedMethod(method):
			return CallNoMethod
		case len(r.frames) >= CallDepthMax:
			return CallDepth
		}
		return CallReentrant
	}
	avail := f.left
	fwd := avail - avail/64
	if gas > 0 && gas <= fwd {
		fwd = gas
	}
	callee, left, err := r.exec(f.ctx, mod, fn, f.self, addr, input, fwd)
	if err != nil {
		f.nodeError(err)
	}
	o := &callee.end
	f.left = avail - fwd + left
	switch o.status {
	case types.StatusOK:
		f.merge(callee)
		f.events = append(f.events, callee.events...)
		f.callResult = callee.ret
	case types.StatusAborted:
		f.callResult = o.msg
	case types.StatusAccessViolation:
		// Not a code: the client's access list is wrong (section 4.6).
		f.fail(types.StatusAccessViolation, o.err)
	}
	return o.code
}

func (r *run) onStack(addr types.Address) bool {
	for _, fr := range r.frames {
		if fr.self == addr {
			return true
		}
	}
	return false
}

func callResult(f *frame, s []uint64) {
	f.charge(GasHostCall)
	dst, capacity := uint32(s[0]), uint32(s[1])
	f.check(dst, uint64(capacity))
	s[0] = f.give(dst, capacity, f.callResult, 0)
}

func sha256Func(f *frame, s []uint64) {
	f.charge(GasHostCall)
	p, n, dst := uint32(s[0]), uint32(s[1]), uint32(s[2])
	f.check(p, uint64(n))
	f.check(dst, sha256.Size)
	if n > HashInputLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrHashInputTooLong, n))
	}
	f.charge(GasSha256 + uint64(n)*GasSha256Byte + sha256.Size*GasByte)
	sum := sha256.Sum256(f.view(p, n))
	copy(f.buf[dst:], sum[:])
}

func ed25519Verify(f *frame, s []uint64) {
	f.charge(GasHostCall)
	pub, mp, mn, sig := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	f.check(pub, ed25519.PublicKeySize)
	f.check(mp, uint64(mn))
	f.check(sig, ed25519.SignatureSize)
	if mn > HashInputLenMax {
		f.trap(fmt.Errorf("%w: %d bytes", ErrHashInputTooLong, mn))
	}
	f.charge(GasEd25519Verify + uint64(ed25519.PublicKeySize+mn+ed25519.SignatureSize)*GasByte)
	s[0] = 0
	if ed25519.Verify(f.view(pub, ed25519.PublicKeySize), f.view(mp, mn), f.view(sig, ed25519.SignatureSize)) {
		s[0] = 1
	}
}

func abort(f *frame, s []uint64) {
	f.charge(GasHostCall)
	p, n := uint32(s[0]), min(uint32(s[1]), AbortMsgLenMax)
	f.check(p, uint64(n))
	f.charge(uint64(n) * GasByte)
	f.stopWith(outcome{types.StatusAborted, ErrAborted, CallAborted, append([]byte{}, f.view(p, n)...)})
}

func debugLog(f *frame, s []uint64) {
	f.charge(GasHostCall)
	p, n := uint32(s[0]), min(uint32(s[1]), DebugLogLenMax)
	f.check(p, uint64(n))
	f.charge(uint64(n) * GasByte)
	if d := f.run.tx.Debug; d != nil {
		d(f.view(p, n))
	}
}

// Funcs is the allow-list entry of every kairos host function, for the
// deploy validator's Config.Imports.
func Funcs() []validate.HostFunc {
	out := make([]validate.HostFunc, len(funcs))
	for i, h := range funcs {
		out[i] = validate.NewHostFunc(ModuleName, h.name, h.params, h.results)
	}
	return out
}

// Instantiate registers the kairos host module in rt. Each function finds
// its frame in the context the host passes to the guest; called without
// one (during _initialize) it traps with ErrNoFrame.
func Instantiate(ctx context.Context, rt wazero.Runtime) (api.Module, error) {
	b := rt.NewHostModuleBuilder(ModuleName)
	for _, h := range funcs {
		b.NewFunctionBuilder().WithGoFunction(kairosFunc(h.do), h.params, h.results).Export(h.name)
	}
	return b.Instantiate(ctx)
}

// kairosFunc is a kairos function as wazero calls it: an api.GoFunction
// (the function needs no api.Module, so wazero does not look up the
// caller's, and no closure sits between its dispatcher and the code).
type kairosFunc func(f *frame, s []uint64)

// Call implements api.GoFunction: it finds the frame, takes gas_left and
// the guest's memory for the function and stores gas_left back.
func (do kairosFunc) Call(ctx context.Context, stack []uint64) {
	f := frameOf(ctx)
	if f == nil {
		panic(ErrNoFrame)
	}
	f.left = int64(f.gas.Get())
	f.takeMemory()
	do(f, stack)
	f.gas.Set(uint64(f.left))
}
