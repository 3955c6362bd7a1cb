//go:build !wasip1

package abi

import (
	"sync/atomic"
	"unsafe"
)

// Host is the native stand-in for the "kairos" host module: one method per
// host function of docs/abi.md, with Go slices instead of pointers. It is
// as wide as the ABI on purpose (one implementation exists, the test
// harness); it is not a seam for other uses.
//
// Methods are called from the goroutine running the module code, one call
// at a time. Abort and any rule violation must not return: the
// implementation panics with its own value and recovers it where the frame
// started.
type Host interface {
	Input() []byte
	SetReturn(b []byte)
	StateGet(key []byte) ([]byte, bool)
	StateSet(key, val []byte)
	StateDelete(key []byte)
	IterOpen(prefix []byte) int32
	IterNext(h int32) bool
	IterKey(h int32) []byte
	IterValue(h int32) []byte
	IterClose(h int32)
	EmitEvent(topic string, data []byte)
	Caller() [32]byte
	Self() [32]byte
	TxTime() int64
	BlockHeight() int64
	Call(addr [32]byte, method string, input []byte, gas int64) (int32, []byte)
	Sha256(b []byte) [32]byte
	Ed25519Verify(pub *[32]byte, msg []byte, sig *[64]byte) bool
	Abort(msg string)
	DebugLog(msg string)
}

var (
	installed atomic.Pointer[Host]
	onInstall []func()
)

// OnInstall registers f to run at every Install, that is before every
// top-level frame of the harness, when no module code is running: the SDK
// clears its buffers' busy flag there (a frame that aborted never
// released them). Call it from package initialization only.
func OnInstall(f func()) { onInstall = append(onInstall, f) }

// Install makes h the host of every ABI call until the returned function
// is called. Installing over another host panics: two harnesses at once
// would interleave their state.
func Install(h Host) (uninstall func()) {
	if !installed.CompareAndSwap(nil, &h) {
		panic("abi: a host is already installed")
	}
	for _, f := range onInstall {
		f()
	}
	return func() { installed.Store(nil) }
}

func host() Host {
	h := installed.Load()
	if h == nil {
		panic("kairos guest: no host installed (run module code through sdk/guest/guesttest)")
	}
	return *h
}

func Input() []byte                       { return host().Input() }
func SetReturn(b []byte)                  { host().SetReturn(b) }
func StateGet(key []byte) ([]byte, bool)  { return host().StateGet(key) }
func StateSet(key, val []byte)            { host().StateSet(key, val) }
func StateDelete(key []byte)              { host().StateDelete(key) }
func IterOpen(prefix []byte) int32        { return host().IterOpen(prefix) }
func IterNext(h int32) bool               { return host().IterNext(h) }
func IterKey(h int32) []byte              { return host().IterKey(h) }
func IterValue(h int32) []byte            { return host().IterValue(h) }
func IterClose(h int32)                   { host().IterClose(h) }
func EmitEvent(topic string, data []byte) { host().EmitEvent(topic, data) }
func Caller() [32]byte                    { return host().Caller() }
func Self() [32]byte                      { return host().Self() }
func TxTime() int64                       { return host().TxTime() }
func BlockHeight() int64                  { return host().BlockHeight() }
func Sha256(b []byte) [32]byte            { return host().Sha256(b) }
func DebugLog(msg string)                 { host().DebugLog(msg) }
func Ed25519Verify(pub *[32]byte, msg []byte, sig *[64]byte) bool {
	return host().Ed25519Verify(pub, msg, sig)
}
func Call(addr [32]byte, method string, input []byte, gas int64) (int32, []byte) {
	return host().Call(addr, method, input, gas)
}

// InputRead copies as much of the input as fits into dst and returns the
// input's full length.
func InputRead(dst []byte) int {
	b := host().Input()
	copy(dst, b)
	return len(b)
}

// StateRead copies as much of key's value as fits into dst and returns the
// value's full length, or -1 when key is absent.
func StateRead(key, dst []byte) int {
	v, ok := host().StateGet(key)
	if !ok {
		return -1
	}
	copy(dst, v)
	return len(v)
}

func Abort(msg string) {
	host().Abort(msg)
	panic("kairos guest: Host.Abort returned")
}

// The pointer-level functions of abi_wasip1.go's exported imports, over the
// slice functions above (a nil pointer with length 0 is an empty slice).

func bytesAt(p unsafe.Pointer, n uint32) []byte { return unsafe.Slice((*byte)(p), n) }

func InputReadPtr(dst unsafe.Pointer, dstCap uint32) int32 {
	return int32(InputRead(bytesAt(dst, dstCap)))
}

// InputCallerPtr is InputReadPtr then the caller's address at caller, in
// the host's order (docs/abi.md section 4.2: the address is written last).
func InputCallerPtr(dst unsafe.Pointer, dstCap uint32, caller unsafe.Pointer) int32 {
	n := InputReadPtr(dst, dstCap)
	*(*[32]byte)(caller) = Caller()
	return n
}

func StateGetPtr(k unsafe.Pointer, kn uint32, dst unsafe.Pointer, dstCap uint32) int32 {
	return int32(StateRead(bytesAt(k, kn), bytesAt(dst, dstCap)))
}

func StateSetPtr(k unsafe.Pointer, kn uint32, v unsafe.Pointer, vn uint32) {
	StateSet(bytesAt(k, kn), bytesAt(v, vn))
}

func StateDeletePtr(k unsafe.Pointer, kn uint32) { StateDelete(bytesAt(k, kn)) }

func EmitEventPtr(t unsafe.Pointer, tn uint32, d unsafe.Pointer, dn uint32) {
	EmitEvent(unsafe.String((*byte)(t), tn), bytesAt(d, dn))
}
