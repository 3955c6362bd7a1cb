package host

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/types"
)

type frameKey struct{}

// frameCtx is the context a frame's guest runs under: it answers frameKey
// and carries the frame's WASI state itself (a wasi.Holder), so entering a
// frame allocates no context and a host call finds its frame at the first
// step.
type frameCtx struct {
	context.Context
	f *frame
}

// WASIState implements wasi.Holder. The state is built at the frame's
// first WASI call: most frames make none (no Go token method does), and
// building the 88-byte wasi.FrameState on every frame, then copying it in,
// cost ~10 ns a frame, mostly a store-forwarding stall. Built later, it is
// the same state: it depends only on the transaction and the frame's index.
func (c *frameCtx) WASIState() *wasi.State {
	f := c.f
	if !f.wasiSet {
		f.wasi = wasi.FrameState(f.run.tx.ID, f.index, f.run.tx.Time)
		f.wasi.Debug = f.run.tx.Debug
		f.wasiSet = true
	}
	return &f.wasi
}

func (c *frameCtx) Value(key any) any {
	if key == (frameKey{}) {
		return c.f
	}
	return c.Context.Value(key)
}

// frameOf is the frame of the guest calling a host function, or nil.
func frameOf(ctx context.Context) *frame {
	if c, ok := ctx.(*frameCtx); ok {
		return c.f
	}
	f, _ := ctx.Value(frameKey{}).(*frame)
	return f
}

// frame is one executing module instance. Frames are reused, through the
// pooled run, for later frames at the same depth: reset clears one.
type frame struct {
	run          *run
	ctx          context.Context // of the caller, for nested frames
	mod          api.Module
	mem          api.Memory
	caller, self types.Address
	input        []byte
	ret          []byte
	writes       writeSet
	events       []types.Event
	events0      int // run.events when the frame started
	iters        [IteratorsOpenMax]*iterator
	callResult   []byte
	index        uint32 // the frame's index in the run (its WASI seed)
	wasi         wasi.State
	wasiSet      bool     // wasi holds this frame's state (WASIState)
	stop         *outcome // why a host function stopped the frame
	end          outcome  // how the frame ended (exec)
	nodeErr      error    // a State error: the whole run fails
	fctx         frameCtx
	// buf is the guest's memory while a kairos function runs, taken when
	// it is entered (takeMemory): only the guest's memory.grow can move or
	// resize it, and no code of this instance runs until the function
	// returns (a callee of kairos.call runs in another instance;
	// reentrancy is refused). Checks and copies are then slice operations
	// instead of four or five api.Memory calls per function.
	buf []byte
	// The gas_left global of instance gmod, kept across reuse: finding
	// it costs an export lookup and an interface conversion per frame,
	// and a pooled engine hands the same instance out again and again.
	gmod api.Module
	gas  api.MutableGlobal
	// left is gas_left while a kairos function runs: loaded when it is
	// entered, stored back when it returns or stops the frame, so its
	// charges cost no global accesses (no guest code runs in between).
	left int64
}

// takeMemory sets f.buf to all of the guest's memory (nil for a module
// without one). The buffer taken by an earlier kairos function of the
// frame is kept when the size is unchanged: memory cannot shrink, and only
// memory.grow, which changes the size, moves it.
func (f *frame) takeMemory() {
	if f.mem == nil {
		return
	}
	if n := f.mem.Size(); n != uint32(len(f.buf)) || f.buf == nil {
		f.buf, _ = f.mem.Read(0, n)
	}
}

// reset clears f for reuse, keeping the write buffer's backing array and
// the cached globals. The events slice is not reused: a Result or a
// caller's events hold it. A frame whose run is nil is clean (new, or
// reset and not started since): exec and release skip it, so a pooled
// frame is cleared once per use, not twice.
//
// Field by field, not *f = frame{...}: the frame is ~520 bytes, and
// building and copying all of it cost ~50 ns a transaction. What is not
// cleared here holds no reference (caller, self, events0, index, left) or
// is set before any use (wasi, by WASIState once wasiSet is cleared);
// TestFrameResetClearsEveryField fails when
// a field is added without a decision here.
func (f *frame) reset() {
	f.writes.reset()
	f.run, f.ctx, f.mod, f.mem, f.stop, f.nodeErr = nil, nil, nil, nil, nil, nil
	f.end = outcome{}
	f.input, f.ret, f.events, f.callResult, f.buf = nil, nil, nil, nil, nil
	f.iters = [IteratorsOpenMax]*iterator{}
	f.wasi.Debug, f.wasi.Stop, f.wasiSet = nil, nil, false
	f.fctx = frameCtx{}
}

// gasGlobal returns mod's gas_left global, nil when mod is not
// instrumented. The meter's depth counter is not the host's: Instances
// hands out instances in their post-_initialize state, where it is 0.
func (f *frame) gasGlobal(mod api.Module) api.MutableGlobal {
	if f.gmod != mod {
		g, ok := mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal)
		if !ok {
			return nil
		}
		f.gmod, f.gas = mod, g
	}
	return f.gas
}

// stopPanic unwinds the guest after a host function recorded f.stop; the
// frame is classified from the record, not from this value.
type stopPanic struct{ err error }

func (s stopPanic) Error() string { return s.err.Error() }
func (s stopPanic) Unwrap() error { return s.err }

// fail stops the frame with status and the error naming the rule.
func (f *frame) fail(status types.Status, err error) {
	code := int32(CallTrapped)
	switch status {
	case types.StatusOutOfGas:
		code = CallOutOfGas
	case types.StatusAborted:
		code = CallAborted
	}
	f.stopWith(outcome{status, err, code, nil})
}

// stopWith records how the frame ends and unwinds the guest.
func (f *frame) stopWith(o outcome) {
	f.stop = &o
	f.gas.Set(uint64(f.left))
	panic(stopPanic{o.err})
}

func (f *frame) trap(err error) { f.fail(types.StatusTrapped, err) }

// nodeError stops the frame and, through every caller, the run: the
// transaction cannot be executed (it is not a receipt status).
func (f *frame) nodeError(err error) {
	f.nodeErr = err
	f.fail(types.StatusTrapped, err)
}

// charge takes gas from gas_left (f.left), or stops the frame with
// out_of_gas.
func (f *frame) charge(gas uint64) {
	if f.left < 0 || uint64(f.left) < gas {
		f.fail(types.StatusOutOfGas, ErrOutOfGas)
	}
	f.left -= int64(gas)
}

// check stops the frame unless [ptr, ptr+n) lies in memory (docs/abi.md
// section 2; 64-bit arithmetic cannot overflow for 32-bit operands).
func (f *frame) check(ptr uint32, n uint64) {
	if uint64(ptr)+n > uint64(len(f.buf)) {
		f.trap(fmt.Errorf("%w: [%d, +%d) outside %d bytes", ErrBadPointer, ptr, n, len(f.buf)))
	}
}

// view is guest memory [ptr, ptr+n), already checked; it aliases memory.
func (f *frame) view(ptr, n uint32) []byte { return f.buf[ptr : ptr+n : ptr+n] }

// give finishes a two-call-pattern function: data has been looked up,
// dst checked; it charges extra plus the copied bytes, copies and returns
// the total length.
func (f *frame) give(dst, capacity uint32, data []byte, extra uint64) uint64 {
	n := min(uint32(len(data)), capacity)
	f.charge(extra + uint64(n)*GasByte)
	copy(f.buf[dst:], data[:n])
	return uint64(uint32(len(data)))
}

// Access control.

type accessKey struct {
	module types.Address
	key    string
	prefix bool
}

// allow checks (or, in simulation, records) an access of this frame's
// module: key with mode, or with iterate every key under the prefix key.
func (f *frame) allow(key []byte, mode types.AccessMode, iterate bool) {
	r := f.run
	if r.access != nil {
		k := accessKey{f.self, string(key), iterate}
		r.access[k] = max(r.access[k], mode)
		return
	}
	// Try the entry that granted the last access first: a transaction's
	// accesses mostly fall under one or two entries, and trying one entry
	// early does not change whether some entry grants it.
	h := r.grant
	if h < len(r.tx.Access) && granted(&r.tx.Access[h], &f.self, key, mode, iterate) {
		return
	}
	for i := range r.tx.Access {
		if i != h && granted(&r.tx.Access[i], &f.self, key, mode, iterate) {
			r.grant = i
			return
		}
	}
	what := "read"
	switch {
	case iterate:
		what = "iteration"
	case mode == types.Write:
		what = "write"
	}
	f.fail(types.StatusAccessViolation, fmt.Errorf("%w: undeclared %s of %s/%s", ErrAccess, what, f.self, strconv.Quote(string(key))))
}

// granted reports whether a grants mode on key of module, or with
// iterate on every key under the prefix key (only a prefix entry can).
func granted(a *types.Access, module *types.Address, key []byte, mode types.AccessMode, iterate bool) bool {
	return (a.Prefix || !iterate) && a.Covers(*module, key, mode)
}

// allowCall checks (or records) that the access list names module.
func (f *frame) allowCall(module types.Address) {
	r := f.run
	if r.access != nil {
		k := accessKey{module: module}
		r.access[k] = max(r.access[k], types.Read)
		return
	}
	for _, a := range r.tx.Access {
		if a.Module == module {
			return
		}
	}
	f.fail(types.StatusAccessViolation, fmt.Errorf("%w: undeclared call to module %s", ErrAccess, module))
}

// accessed is the recorded access list: each (module, key, prefix) once
// with the strongest mode. The entry that only records a called module
// (empty exact key, which covers no key) is kept only for modules with no
// other entry.
func (r *run) accessed() []types.Access {
	if r.access == nil {
		return nil
	}
	used := map[types.Address]bool{}
	for k := range r.access {
		if k.key != "" || k.prefix {
			used[k.module] = true
		}
	}
	var out []types.Access
	for k, m := range r.access {
		if k.key == "" && !k.prefix && used[k.module] {
			continue
		}
		out = append(out, types.Access{Module: k.module, Key: []byte(k.key), Prefix: k.prefix, Mode: m})
	}
	slices.SortFunc(out, func(a, b types.Access) int {
		if c := bytes.Compare(a.Module[:], b.Module[:]); c != 0 {
			return c
		}
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if a.Prefix == b.Prefix {
			return 0
		}
		if a.Prefix {
			return 1
		}
		return -1
	})
	return out
}

// Iterators.

type kv struct {
	key, val []byte
	deleted  bool
}

// iterator merges the State's iterator with a snapshot of the buffered
// writes taken at open, so later writes are not seen.
type iterator struct {
	base     Iterator
	overlay  []kv
	next     int  // index of the next overlay entry
	peeked   bool // base holds an unconsumed entry
	baseDone bool
	state    int8 // 0 before the first next, 1 on an entry, 2 exhausted
	key, val []byte
}

func (it *iterator) advance() (bool, error) {
	for {
		if !it.peeked && !it.baseDone {
			if it.base.Next() {
				it.peeked = true
			} else {
				it.baseDone = true
				if err := it.base.Err(); err != nil {
					return false, err
				}
			}
		}
		haveO := it.next < len(it.overlay)
		if !it.peeked && !haveO {
			return false, nil
		}
		c := 1 // which side is smaller: -1 base, 1 overlay, 0 equal
		if it.peeked && haveO {
			c = bytes.Compare(it.base.Key(), it.overlay[it.next].key)
		} else if it.peeked {
			c = -1
		}
		if c < 0 {
			it.key = append(it.key[:0], it.base.Key()...)
			it.val = append(it.val[:0], it.base.Value()...)
			it.peeked = false
			return true, nil
		}
		o := it.overlay[it.next]
		it.next++
		if c == 0 {
			it.peeked = false
		}
		if !o.deleted {
			it.key = append(it.key[:0], o.key...)
			it.val = append(it.val[:0], o.val...)
			return true, nil
		}
	}
}

func (f *frame) closeIters() {
	for i, it := range f.iters {
		if it != nil {
			if err := it.base.Close(); err != nil && f.nodeErr == nil {
				f.nodeErr = err
			}
			f.iters[i] = nil
		}
	}
}

// iter returns the open iterator h or stops the frame.
func (f *frame) iter(h uint32) *iterator {
	if h >= IteratorsOpenMax || f.iters[h] == nil {
		f.trap(fmt.Errorf("%w %d", ErrBadIterator, int32(h)))
	}
	return f.iters[h]
}
