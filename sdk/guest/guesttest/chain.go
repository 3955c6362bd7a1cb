//go:build !wasip1

package guesttest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// Status is the outcome of a call, as in a receipt.
type Status string

// The receipt statuses of docs/abi.md section 3. The harness never
// produces StatusOutOfGas (it does not model gas); StatusAccessViolation
// comes only from CallDeclared.
const (
	StatusOK              Status = "ok"
	StatusOutOfGas        Status = "out_of_gas"
	StatusTrapped         Status = "trapped"
	StatusAborted         Status = "aborted"
	StatusAccessViolation Status = "access_violation"
)

// Module maps method names to the module's exported functions. The key
// "init" is the constructor run by Deploy.
type Module map[string]func()

// Event is one emitted event.
type Event struct {
	Module guest.Address
	Topic  string
	Data   []byte
}

// Result is the receipt of Call: Return is the result for StatusOK,
// Message the abort message or the broken rule otherwise; Events are those
// of a successful call.
type Result struct {
	Status  Status
	Return  []byte
	Message string
	Events  []Event
}

// Chain is an in-memory host: the committed state of every module and the
// transaction context. It is not safe for concurrent use.
type Chain struct {
	modules map[guest.Address]Module
	state   map[string][]byte // committed: string(module ‖ key) → value
	time    int64
	height  int64
	logs    []string

	// Per-transaction context, valid during Call.
	frames   []*frame
	events   int      // events emitted by frames still alive in this tx
	declared []Access // nil: accesses are not checked
}

// New returns an empty chain at height 1 and time 1 s after the epoch.
func New() *Chain {
	return &Chain{modules: map[guest.Address]Module{}, state: map[string][]byte{}, time: 1e9, height: 1}
}

// SetTime sets the consensus time of the next calls (Unix ns).
func (c *Chain) SetTime(unixNano int64) { c.time = unixNano }

// Time returns the consensus time of the next calls.
func (c *Chain) Time() int64 { return c.time }

// SetHeight sets the block height of the next calls.
func (c *Chain) SetHeight(h uint64) { c.height = int64(h) }

// Logs returns the guest.Log messages so far.
func (c *Chain) Logs() []string { return c.logs }

// State returns the committed value of a module's key.
func (c *Chain) State(module guest.Address, key []byte) ([]byte, bool) {
	v, ok := c.state[skey(module, key)]
	return v, ok
}

// SetState writes a committed value directly, for test setup.
func (c *Chain) SetState(module guest.Address, key, val []byte) {
	c.state[skey(module, key)] = append([]byte{}, val...)
}

// Deploy registers m at addr and, if m has an "init" method, runs it with
// input as deployer's transaction. If init fails the module is removed
// again, as a failed deploy leaves nothing behind.
func (c *Chain) Deploy(addr guest.Address, m Module, deployer guest.Address, input []byte) Result {
	if _, dup := c.modules[addr]; dup {
		panic("guesttest: a module is already deployed at " + addr.String())
	}
	c.modules[addr] = m
	if m["init"] == nil {
		return Result{Status: StatusOK}
	}
	r := c.run(deployer, addr, "init", input)
	if r.Status != StatusOK {
		delete(c.modules, addr)
	}
	return r
}

// Upgrade replaces the code of the module at addr with m and, if m has a
// "migrate" method, runs it with input as admin's transaction before the
// new code serves calls. If migrate fails the old code stays. The harness
// does not track admins: admin is whoever the test says.
func (c *Chain) Upgrade(addr guest.Address, m Module, admin guest.Address, input []byte) Result {
	old, ok := c.modules[addr]
	if !ok {
		panic("guesttest: no module to upgrade at " + addr.String())
	}
	c.modules[addr] = m
	if m["migrate"] == nil {
		return Result{Status: StatusOK}
	}
	r := c.run(admin, addr, "migrate", input)
	if r.Status != StatusOK {
		c.modules[addr] = old
	}
	return r
}

// Call runs method of the module at to as a transaction from sender.
func (c *Chain) Call(sender, to guest.Address, method string, input []byte) Result {
	if _, ok := c.modules[to]; !ok {
		return Result{Status: StatusTrapped, Message: "host: no module at " + to.String()}
	}
	if !guest.ValidMethodName(method) || guest.ReservedMethod(method) || c.modules[to][method] == nil {
		return Result{Status: StatusTrapped, Message: "host: no such method " + strconv.Quote(method)}
	}
	return c.run(sender, to, method, input)
}

var installLock sync.Mutex

// run executes one top-level frame as a transaction.
func (c *Chain) run(sender, to guest.Address, method string, input []byte) Result {
	installLock.Lock()
	defer installLock.Unlock()
	defer abi.Install((*fakeHost)(c))()
	c.events = 0
	f := c.push(sender, to, input)
	st, msg := c.exec(c.modules[to][method])
	c.frames = nil
	if st != StatusOK {
		return Result{Status: st, Message: msg}
	}
	for k, w := range f.writes {
		if w.deleted {
			delete(c.state, k)
		} else {
			c.state[k] = w.val
		}
	}
	return Result{Status: StatusOK, Return: f.ret, Events: f.events}
}

// write is one pending state change of a frame.
type write struct {
	val     []byte
	deleted bool
}

type frame struct {
	caller, self guest.Address
	input        []byte
	ret          []byte
	writes       map[string]write
	events       []Event
	iters        map[int32]*iter
}

type iter struct {
	keys, vals [][]byte
	pos        int // index of the current entry + 1; 0 before the first next
}

func (c *Chain) push(caller, self guest.Address, input []byte) *frame {
	f := &frame{caller: caller, self: self, input: append([]byte{}, input...),
		writes: map[string]write{}, iters: map[int32]*iter{}}
	c.frames = append(c.frames, f)
	return f
}

func (c *Chain) top() *frame {
	if len(c.frames) == 0 {
		panic(trap{"host: kairos function called outside a call"})
	}
	return c.frames[len(c.frames)-1]
}

// abortSignal and trap are the panics that end a frame; exec recovers them.
type abortSignal struct{ msg string }
type trap struct{ reason string }

// exec runs fn in the frame on top of the stack and classifies how it
// ended. The frame stays on the stack; the caller merges or drops it.
func (c *Chain) exec(fn func()) (st Status, msg string) {
	defer func() {
		if r := recover(); r != nil {
			switch r := r.(type) {
			case abortSignal:
				st, msg = StatusAborted, r.msg
			case trap:
				st, msg = StatusTrapped, r.reason
			case accessViolation:
				st, msg = StatusAccessViolation, r.reason
			default:
				// A Go panic in a wasm guest reaches the host as an
				// unreachable trap.
				st, msg = StatusTrapped, fmt.Sprintf("guest panic: %v", r)
			}
		}
	}()
	fn()
	return StatusOK, ""
}

func skey(module guest.Address, key []byte) string { return string(module[:]) + string(key) }

// lookup reads a key through the frames of the current tx, newest first,
// then the committed state.
func (c *Chain) lookup(k string) ([]byte, bool) {
	for i := len(c.frames) - 1; i >= 0; i-- {
		if w, ok := c.frames[i].writes[k]; ok {
			return w.val, !w.deleted
		}
	}
	v, ok := c.state[k]
	return v, ok
}

func checkKey(key []byte) {
	if len(key) == 0 || len(key) > guest.KeyLenMax {
		panic(trap{"host: key length " + strconv.Itoa(len(key)) + " outside 1.." + strconv.Itoa(guest.KeyLenMax)})
	}
}

// The abi.Host methods: the fake ABI.

func (x *fakeHost) Input() []byte { return append([]byte{}, (*Chain)(x).top().input...) }

func (x *fakeHost) SetReturn(b []byte) {
	c := (*Chain)(x)
	if len(b) > guest.ReturnLenMax {
		panic(trap{"host: return data too long"})
	}
	c.top().ret = append([]byte{}, b...)
}

func (x *fakeHost) StateGet(key []byte) ([]byte, bool) {
	c := (*Chain)(x)
	checkKey(key)
	c.checkAccess(c.top().self, key, false, false)
	v, ok := c.lookup(skey(c.top().self, key))
	return append([]byte{}, v...), ok
}

func (x *fakeHost) StateSet(key, val []byte) {
	c := (*Chain)(x)
	checkKey(key)
	if len(val) > guest.ValueLenMax {
		panic(trap{"host: value too long"})
	}
	f := c.top()
	c.checkAccess(f.self, key, false, true)
	f.writes[skey(f.self, key)] = write{val: append([]byte{}, val...)}
}

func (x *fakeHost) StateDelete(key []byte) {
	c := (*Chain)(x)
	checkKey(key)
	f := c.top()
	c.checkAccess(f.self, key, false, true)
	f.writes[skey(f.self, key)] = write{deleted: true}
}

func (x *fakeHost) IterOpen(prefix []byte) int32 {
	c := (*Chain)(x)
	if len(prefix) > guest.KeyLenMax {
		panic(trap{"host: prefix too long"})
	}
	f := c.top()
	if len(f.iters) >= guest.IteratorsOpenMax {
		panic(trap{"host: too many open iterators"})
	}
	c.checkAccess(f.self, prefix, true, false)
	// Snapshot every visible key under the prefix.
	p := skey(f.self, prefix)
	seen := map[string]bool{}
	var keys []string
	consider := func(k string) {
		if !seen[k] && len(k) >= len(p) && k[:len(p)] == p {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for k := range c.state {
		consider(k)
	}
	for _, fr := range c.frames {
		for k := range fr.writes {
			consider(k)
		}
	}
	sort.Strings(keys)
	it := &iter{}
	for _, k := range keys {
		if v, ok := c.lookup(k); ok {
			it.keys = append(it.keys, []byte(k[guest.AddressLen:]))
			it.vals = append(it.vals, append([]byte{}, v...))
		}
	}
	h := int32(0)
	for f.iters[h] != nil {
		h++
	}
	f.iters[h] = it
	return h
}

func (c *Chain) iter(h int32) *iter {
	it := c.top().iters[h]
	if it == nil {
		panic(trap{"host: bad iterator handle " + strconv.Itoa(int(h))})
	}
	return it
}

func (x *fakeHost) IterNext(h int32) bool {
	c := (*Chain)(x)
	it := c.iter(h)
	if it.pos <= len(it.keys) {
		it.pos++
	}
	return it.pos <= len(it.keys)
}

func (c *Chain) current(h int32) int {
	it := c.iter(h)
	if it.pos == 0 || it.pos > len(it.keys) {
		panic(trap{"host: iterator has no current entry"})
	}
	return it.pos - 1
}

func (x *fakeHost) IterKey(h int32) []byte {
	c := (*Chain)(x)
	i := c.current(h)
	return append([]byte{}, c.iter(h).keys[i]...)
}

func (x *fakeHost) IterValue(h int32) []byte {
	c := (*Chain)(x)
	i := c.current(h)
	return append([]byte{}, c.iter(h).vals[i]...)
}

func (x *fakeHost) IterClose(h int32) {
	c := (*Chain)(x)
	c.iter(h)
	delete(c.top().iters, h)
}

func (x *fakeHost) EmitEvent(topic string, data []byte) {
	c := (*Chain)(x)
	if !guest.ValidEventTopic(topic) {
		panic(trap{"host: bad event topic " + strconv.Quote(topic)})
	}
	if len(data) > guest.EventDataLenMax {
		panic(trap{"host: event data too long"})
	}
	if c.events >= guest.EventsPerTxMax {
		panic(trap{"host: too many events"})
	}
	c.events++
	f := c.top()
	f.events = append(f.events, Event{Module: f.self, Topic: topic, Data: append([]byte{}, data...)})
}

func (x *fakeHost) Caller() [32]byte   { return (*Chain)(x).top().caller }
func (x *fakeHost) Self() [32]byte     { return (*Chain)(x).top().self }
func (x *fakeHost) TxTime() int64      { (*Chain)(x).top(); return x.time }
func (x *fakeHost) BlockHeight() int64 { (*Chain)(x).top(); return x.height }

func (x *fakeHost) Sha256(b []byte) [32]byte {
	if len(b) > guest.HashInputLenMax {
		panic(trap{"host: hash input too long"})
	}
	return sha256.Sum256(b)
}

func (x *fakeHost) Ed25519Verify(pub *[32]byte, msg []byte, sig *[64]byte) bool {
	if len(msg) > guest.HashInputLenMax {
		panic(trap{"host: message too long"})
	}
	return ed25519.Verify(pub[:], msg, sig[:])
}

func (x *fakeHost) Abort(msg string) {
	if len(msg) > guest.AbortMsgLenMax {
		msg = msg[:guest.AbortMsgLenMax]
	}
	panic(abortSignal{msg})
}

func (x *fakeHost) DebugLog(msg string) {
	c := (*Chain)(x)
	if len(msg) > guest.DebugLogLenMax {
		msg = msg[:guest.DebugLogLenMax]
	}
	c.logs = append(c.logs, msg)
}

// Call runs a nested frame (docs/abi.md section 4.6). Gas is not modelled.
func (x *fakeHost) Call(addr [32]byte, method string, input []byte, _ int64) (int32, []byte) {
	c := (*Chain)(x)
	code, res := c.call(c.top(), addr, method, input)
	return code, append([]byte{}, res...)
}

func (c *Chain) call(parent *frame, addr guest.Address, method string, input []byte) (int32, []byte) {
	if len(input) > guest.InputLenMax {
		panic(trap{"host: call input too long"})
	}
	c.checkCallee(addr)
	m, ok := c.modules[addr]
	if !ok {
		return guest.CallNoModule, nil
	}
	fn := m[method]
	if !guest.ValidMethodName(method) || guest.ReservedMethod(method) || fn == nil {
		return guest.CallNoMethod, nil
	}
	if len(c.frames) >= guest.CallDepthMax {
		return guest.CallDepth, nil
	}
	for _, f := range c.frames {
		if f.self == addr {
			return guest.CallReentrant, nil
		}
	}
	events := c.events
	f := c.push(parent.self, addr, input)
	st, msg := c.exec(fn)
	c.frames = c.frames[:len(c.frames)-1]
	switch st {
	case StatusOK:
		for k, w := range f.writes {
			parent.writes[k] = w
		}
		parent.events = append(parent.events, f.events...)
		return guest.CallOK, f.ret
	case StatusAborted:
		c.events = events
		return guest.CallAborted, []byte(msg)
	case StatusAccessViolation:
		// Not a code for the caller: it stops the whole transaction.
		panic(accessViolation{msg})
	default:
		c.events = events
		return guest.CallTrapped, nil
	}
}

// fakeHost is the Chain seen as the ABI host; a separate method set keeps
// the host's Call apart from Chain.Call.
type fakeHost Chain

var _ abi.Host = (*fakeHost)(nil)

// Addr returns a test address derived from a name, for readable tests.
func Addr(name string) guest.Address { return sha256.Sum256([]byte("guesttest/" + name)) }
