package wasi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
)

// ModuleName is the import module the functions are registered under.
const ModuleName = validate.WASIModule

// Gas constants of ABI version 1 that WASI calls pay (docs/abi.md section
// 6). They equal the host module's GasHostCall and GasByte; a host test
// keeps them equal.
const (
	GasCall = 50
	GasByte = 1
)

// Limits and fixed values of the virtual WASI.
const (
	// ClockStep is how far the clock advances per clock_time_get (ns).
	ClockStep = 1000
	// DebugLenMax bounds what one fd_write hands to the debug sink
	// (docs/abi.md truncates like debug_log).
	DebugLenMax = 1024
	// SeedLen is the random seed: a tx id (32 bytes) and a u32 frame index.
	SeedLen = 36
)

// errno values of WASI preview 1 used here.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoNotsup  = 58
)

// Stops. A WASI function that cannot return panics with one of these
// (wrapped); the same error is recorded in State.Stop.
var (
	ErrOutOfGas   = errors.New("wasi: out of gas")
	ErrBadPointer = errors.New("wasi: bad pointer")
	ErrExit       = errors.New("wasi: exit")
	ErrNoState    = errors.New("wasi: called outside a frame")
	ErrNotMetered = errors.New("wasi: module has no gas_left global")
)

// State is the deterministic WASI state of one frame (or of one
// _initialize). Copy it to snapshot it; assign the copy to restore it.
type State struct {
	Base   int64         // clock base: the tx time, 0 in _initialize
	Reads  uint64        // clock_time_get calls so far
	Seed   [SeedLen]byte // random seed: tx id ‖ u32be(frame index); zero in _initialize
	Random uint64        // bytes of the random stream consumed so far
	// Debug, when set, receives what the guest writes to stdout/stderr
	// (truncated to DebugLenMax per call). The slice is only valid during
	// the call. nil discards, as consensus execution does.
	Debug func(p []byte)
	// Stop is the reason the last WASI call stopped the frame, nil if none.
	Stop error
}

// InitState is the fixed environment of _initialize (docs/abi.md 8.1).
func InitState() State { return State{} }

// FrameState is the state a frame starts with: clock base txTime, seed
// txID ‖ u32be(frame) where frame counts the tx's frames from 0.
func FrameState(txID [32]byte, frame uint32, txTime int64) State {
	s := State{Base: txTime}
	copy(s.Seed[:], txID[:])
	binary.BigEndian.PutUint32(s.Seed[32:], frame)
	return s
}

type stateKey struct{}

// WithState returns ctx carrying st; WASI calls of a guest running under
// ctx use and update *st.
func WithState(ctx context.Context, st *State) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

// Holder is a context that carries a frame's State itself: WASI calls of
// a guest running under one use its WASIState, without the
// context.WithValue (an allocation) WithState costs every frame.
// runtime/host's frame context is one.
type Holder interface {
	context.Context
	WASIState() *State
}

// stateOf is the State of the frame running under ctx, or nil.
func stateOf(ctx context.Context) *State {
	if h, ok := ctx.(Holder); ok {
		return h.WASIState()
	}
	st, _ := ctx.Value(stateKey{}).(*State)
	return st
}

// randomDomain separates the stream from any other sha256 use.
const randomDomain = "kairos/wasi-random\x00"

// RandomBlock returns block n (32 bytes) of the stream of seed.
func RandomBlock(seed *[SeedLen]byte, n uint64) [32]byte {
	var in [len(randomDomain) + SeedLen + 8]byte
	copy(in[:], randomDomain)
	copy(in[len(randomDomain):], seed[:])
	binary.BigEndian.PutUint64(in[len(randomDomain)+SeedLen:], n)
	return sha256.Sum256(in[:])
}

// call is the per-call context of one WASI function.
type call struct {
	st  *State
	mod api.Module
	mem api.Memory
}

func (c *call) stop(err error) {
	c.st.Stop = err
	panic(err)
}

// charge takes gas from gas_left or stops the frame.
func (c *call) charge(gas uint64) {
	g, ok := c.mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal)
	if !ok {
		c.stop(ErrNotMetered)
	}
	left := int64(g.Get())
	if left < 0 || uint64(left) < gas {
		c.stop(ErrOutOfGas)
	}
	g.Set(uint64(left - int64(gas)))
}

// check stops the frame unless [ptr, ptr+n) is inside memory.
func (c *call) check(ptr uint32, n uint64) {
	var size uint64
	if c.mem != nil {
		size = uint64(c.mem.Size())
	}
	if uint64(ptr)+n > size {
		c.stop(fmt.Errorf("%w: [%d, +%d) outside %d bytes", ErrBadPointer, ptr, n, size))
	}
}

func (c *call) u32(ptr uint32) uint32 {
	v, _ := c.mem.ReadUint32Le(ptr)
	return v
}

type fn struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	do      func(c *call, stack []uint64)
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func ps(t ...api.ValueType) []api.ValueType { return t }

func ret(stack []uint64, errno uint32) { stack[0] = uint64(errno) }

// funcs is the table of docs/abi.md section 8, in its order.
var funcs = []fn{
	{"args_sizes_get", ps(i32, i32), ps(i32), writeZeros},
	{"args_get", ps(i32, i32), ps(i32), writeNothing},
	{"environ_sizes_get", ps(i32, i32), ps(i32), writeZeros},
	{"environ_get", ps(i32, i32), ps(i32), writeNothing},
	{"clock_time_get", ps(i32, i64, i32), ps(i32), clockTimeGet},
	{"random_get", ps(i32, i32), ps(i32), randomGet},
	{"sched_yield", nil, ps(i32), func(c *call, s []uint64) { c.charge(GasCall); ret(s, errnoSuccess) }},
	{"poll_oneoff", ps(i32, i32, i32, i32), ps(i32), pollOneoff},
	{"proc_exit", ps(i32), nil, func(c *call, s []uint64) {
		c.charge(GasCall)
		c.stop(fmt.Errorf("%w %d", ErrExit, uint32(s[0])))
	}},
	{"fd_write", ps(i32, i32, i32, i32), ps(i32), fdWrite},
	{"fd_read", ps(i32, i32, i32, i32), ps(i32), fdRead},
	{"fd_close", ps(i32), ps(i32), errnoOnly(errnoBadf)},
	{"fd_fdstat_get", ps(i32, i32), ps(i32), fdFdstatGet},
	{"fd_fdstat_set_flags", ps(i32, i32), ps(i32), errnoOnly(errnoNotsup)},
	{"fd_filestat_get", ps(i32, i32), ps(i32), errnoOnly(errnoBadf)},
	{"fd_prestat_get", ps(i32, i32), ps(i32), errnoOnly(errnoBadf)},
	{"fd_prestat_dir_name", ps(i32, i32, i32), ps(i32), errnoOnly(errnoBadf)},
	{"path_open", ps(i32, i32, i32, i32, i32, i64, i64, i32, i32), ps(i32), errnoOnly(errnoBadf)},
	{"path_filestat_get", ps(i32, i32, i32, i32, i32), ps(i32), errnoOnly(errnoBadf)},
}

func errnoOnly(errno uint32) func(*call, []uint64) {
	return func(c *call, s []uint64) { c.charge(GasCall); ret(s, errno) }
}

// writeZeros: argc/environ count and buffer size, both 0.
func writeZeros(c *call, s []uint64) {
	c.charge(GasCall)
	a, b := uint32(s[0]), uint32(s[1])
	c.check(a, 4)
	c.check(b, 4)
	c.charge(8 * GasByte)
	c.mem.WriteUint32Le(a, 0)
	c.mem.WriteUint32Le(b, 0)
	ret(s, errnoSuccess)
}

// writeNothing: args_get/environ_get with zero entries touch no memory;
// their pointers are empty ranges.
func writeNothing(c *call, s []uint64) {
	c.charge(GasCall)
	c.check(uint32(s[0]), 0)
	c.check(uint32(s[1]), 0)
	ret(s, errnoSuccess)
}

func clockTimeGet(c *call, s []uint64) {
	c.charge(GasCall)
	p := uint32(s[2])
	c.check(p, 8)
	c.charge(8 * GasByte)
	c.st.Reads++
	c.mem.WriteUint64Le(p, uint64(c.st.Base)+ClockStep*c.st.Reads)
	ret(s, errnoSuccess)
}

func randomGet(c *call, s []uint64) {
	c.charge(GasCall)
	p, n := uint32(s[0]), uint32(s[1])
	c.check(p, uint64(n))
	c.charge(uint64(n) * GasByte)
	dst, _ := c.mem.Read(p, n)
	for len(dst) > 0 {
		blk := RandomBlock(&c.st.Seed, c.st.Random/32)
		k := copy(dst, blk[c.st.Random%32:])
		dst = dst[k:]
		c.st.Random += uint64(k)
	}
	ret(s, errnoSuccess)
}

// Sizes of the poll_oneoff records (WASI preview 1 ABI).
const (
	subscriptionLen = 48
	eventLen        = 32
	eventClock      = 0
)

func pollOneoff(c *call, s []uint64) {
	c.charge(GasCall)
	in, out, n, neventsPtr := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	c.check(in, uint64(n)*subscriptionLen)
	c.check(out, uint64(n)*eventLen)
	c.check(neventsPtr, 4)
	c.charge((uint64(n)*(subscriptionLen+eventLen) + 4) * GasByte)
	for i := range n {
		sub := in + i*subscriptionLen
		ev := out + i*eventLen
		userdata, _ := c.mem.ReadUint64Le(sub)
		tag, _ := c.mem.ReadByte(sub + 8)
		var rec [eventLen]byte
		binary.LittleEndian.PutUint64(rec[0:], userdata)
		if tag != eventClock {
			binary.LittleEndian.PutUint16(rec[8:], errnoBadf)
		}
		rec[10] = tag
		c.mem.Write(ev, rec[:])
	}
	c.mem.WriteUint32Le(neventsPtr, n)
	ret(s, errnoSuccess)
}

// iovecs checks an iovec array and every buffer it names, and returns the
// total buffer length.
func (c *call) iovecs(iovs, n uint32) uint64 {
	c.check(iovs, uint64(n)*8)
	var total uint64
	for i := range n {
		p, l := c.u32(iovs+8*i), c.u32(iovs+8*i+4)
		c.check(p, uint64(l))
		total += uint64(l)
	}
	return total
}

func fdWrite(c *call, s []uint64) {
	c.charge(GasCall)
	fd, iovs, n, nwritten := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	if fd != 1 && fd != 2 {
		ret(s, errnoBadf)
		return
	}
	total := c.iovecs(iovs, n)
	c.check(nwritten, 4)
	c.charge((uint64(n)*8 + total + 4) * GasByte)
	if c.st.Debug != nil {
		var buf []byte
		for i := uint32(0); i < n && len(buf) < DebugLenMax; i++ {
			b, _ := c.mem.Read(c.u32(iovs+8*i), c.u32(iovs+8*i+4))
			buf = append(buf, b[:min(len(b), DebugLenMax-len(buf))]...)
		}
		c.st.Debug(buf)
	}
	c.mem.WriteUint32Le(nwritten, uint32(total))
	ret(s, errnoSuccess)
}

func fdRead(c *call, s []uint64) {
	c.charge(GasCall)
	fd, iovs, n, nread := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	if fd != 0 {
		ret(s, errnoBadf)
		return
	}
	c.iovecs(iovs, n)
	c.check(nread, 4)
	c.charge((uint64(n)*8 + 4) * GasByte)
	c.mem.WriteUint32Le(nread, 0)
	ret(s, errnoSuccess)
}

// fdstatLen is the size of a WASI fdstat record.
const fdstatLen = 24

func fdFdstatGet(c *call, s []uint64) {
	c.charge(GasCall)
	fd, p := uint32(s[0]), uint32(s[1])
	if fd > 2 {
		ret(s, errnoBadf)
		return
	}
	c.check(p, fdstatLen)
	c.charge(fdstatLen * GasByte)
	var rec [fdstatLen]byte
	rec[0] = 2 // character device; flags and both rights stay 0
	c.mem.Write(p, rec[:])
	ret(s, errnoSuccess)
}

// Funcs is the allow-list entry of every virtual WASI function, for the
// deploy validator's Config.Imports.
func Funcs() []validate.HostFunc {
	out := make([]validate.HostFunc, len(funcs))
	for i, f := range funcs {
		out[i] = validate.NewHostFunc(ModuleName, f.name, f.params, f.results)
	}
	return out
}

// Instantiate registers the virtual WASI in rt under ModuleName.
func Instantiate(ctx context.Context, rt wazero.Runtime) (api.Module, error) {
	b := rt.NewHostModuleBuilder(ModuleName)
	for _, f := range funcs {
		do := f.do
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			st := stateOf(ctx)
			if st == nil {
				panic(ErrNoState)
			}
			do(&call{st: st, mod: mod, mem: mod.Memory()}, stack)
		}), f.params, f.results).Export(f.name)
	}
	return b.Instantiate(ctx)
}
