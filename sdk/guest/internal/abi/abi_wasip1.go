//go:build wasip1

package abi

import "unsafe"

// The imports of module "kairos", with the signatures of docs/abi.md
// section 4. Pointers are passed as unsafe.Pointer so that the buffers stay
// alive during the call; lengths are u32. //go:noescape is true of every
// one (the host copies what it reads and writes only during the call), and
// it lets callers pass stack and package-level buffers without the
// compiler moving them to the heap: an allocation in a guest costs
// hundreds of metered instructions (RATIONALE.md, "Why does the Go SDK
// read and encode state through package-level buffers?").
//
// The *Ptr imports are exported: the SDK's fixed-size fast paths call them
// with stack arrays directly, one Go call fewer per host call than the
// slice wrappers below (abi_native.go has the same functions over Host).

//go:wasmimport kairos input_read
//go:noescape
func InputReadPtr(dst unsafe.Pointer, dstCap uint32) int32

//go:wasmimport kairos return_data
//go:noescape
func returnData(p unsafe.Pointer, n uint32)

//go:wasmimport kairos state_get
//go:noescape
func StateGetPtr(k unsafe.Pointer, kn uint32, dst unsafe.Pointer, dstCap uint32) int32

//go:wasmimport kairos state_set
//go:noescape
func StateSetPtr(k unsafe.Pointer, kn uint32, v unsafe.Pointer, vn uint32)

//go:wasmimport kairos state_delete
//go:noescape
func StateDeletePtr(k unsafe.Pointer, kn uint32)

//go:wasmimport kairos state_iter_open
//go:noescape
func stateIterOpen(p unsafe.Pointer, pn uint32) int32

//go:wasmimport kairos state_iter_next
func stateIterNext(h int32) int32

//go:wasmimport kairos state_iter_key
//go:noescape
func stateIterKey(h int32, dst unsafe.Pointer, dstCap uint32) int32

//go:wasmimport kairos state_iter_value
//go:noescape
func stateIterValue(h int32, dst unsafe.Pointer, dstCap uint32) int32

//go:wasmimport kairos state_iter_close
func stateIterClose(h int32)

//go:wasmimport kairos emit_event
//go:noescape
func EmitEventPtr(t unsafe.Pointer, tn uint32, d unsafe.Pointer, dn uint32)

//go:wasmimport kairos caller
//go:noescape
func caller(dst unsafe.Pointer)

//go:wasmimport kairos self_address
//go:noescape
func selfAddress(dst unsafe.Pointer)

//go:wasmimport kairos tx_time
func txTime() int64

//go:wasmimport kairos block_height
func blockHeight() int64

//go:wasmimport kairos call
//go:noescape
func call(addr unsafe.Pointer, m unsafe.Pointer, mn uint32, in unsafe.Pointer, inn uint32, gas int64) int32

//go:wasmimport kairos call_result
//go:noescape
func callResult(dst unsafe.Pointer, dstCap uint32) int32

//go:wasmimport kairos sha256
//go:noescape
func sha256(src unsafe.Pointer, n uint32, dst unsafe.Pointer)

//go:wasmimport kairos ed25519_verify
//go:noescape
func ed25519Verify(pub unsafe.Pointer, msg unsafe.Pointer, mn uint32, sig unsafe.Pointer) int32

//go:wasmimport kairos abort
//go:noescape
func abort(p unsafe.Pointer, n uint32)

//go:wasmimport kairos debug_log
//go:noescape
func debugLog(p unsafe.Pointer, n uint32)

//go:wasmimport kairos input_caller
//go:noescape
func InputCallerPtr(dst unsafe.Pointer, dstCap uint32, caller unsafe.Pointer) int32

// OnInstall exists for the native backend's harness; in wasm every frame
// starts from the instance's restored snapshot, so there is nothing to do.
func OnInstall(func()) {}

// firstBufLen is the buffer the two-call pattern starts with: most values
// fit, so most reads cost one host call.
const firstBufLen = 256

// ptr returns the address of b's first byte, or nil for an empty slice
// (the host accepts any in-bounds pointer with length 0).
func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func sptr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// twoCall runs the two-call size pattern: read into a first buffer, and
// again into an exact one if the total was larger. It returns nil, false
// when the host answers -1 (absent).
func twoCall(read func(dst []byte) int32) ([]byte, bool) {
	buf := make([]byte, firstBufLen)
	n := read(buf)
	if n < 0 {
		return nil, false
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = read(buf)
	}
	return buf[:n], true
}

func Input() []byte {
	b, _ := twoCall(func(dst []byte) int32 { return InputReadPtr(ptr(dst), uint32(len(dst))) })
	return b
}

// InputRead copies as much of the input as fits into dst and returns the
// input's full length: one host call, no allocation.
func InputRead(dst []byte) int { return int(InputReadPtr(ptr(dst), uint32(len(dst)))) }

func SetReturn(b []byte) { returnData(ptr(b), uint32(len(b))) }

func StateGet(key []byte) ([]byte, bool) {
	return twoCall(func(dst []byte) int32 {
		return StateGetPtr(ptr(key), uint32(len(key)), ptr(dst), uint32(len(dst)))
	})
}

// StateRead copies as much of key's value as fits into dst and returns the
// value's full length, or -1 when key is absent: one host call, no
// allocation.
func StateRead(key, dst []byte) int {
	return int(StateGetPtr(ptr(key), uint32(len(key)), ptr(dst), uint32(len(dst))))
}

func StateSet(key, val []byte) { StateSetPtr(ptr(key), uint32(len(key)), ptr(val), uint32(len(val))) }

func StateDelete(key []byte) { StateDeletePtr(ptr(key), uint32(len(key))) }

func IterOpen(prefix []byte) int32 { return stateIterOpen(ptr(prefix), uint32(len(prefix))) }

func IterNext(h int32) bool { return stateIterNext(h) == 1 }

func IterKey(h int32) []byte {
	b, _ := twoCall(func(dst []byte) int32 { return stateIterKey(h, ptr(dst), uint32(len(dst))) })
	return b
}

func IterValue(h int32) []byte {
	b, _ := twoCall(func(dst []byte) int32 { return stateIterValue(h, ptr(dst), uint32(len(dst))) })
	return b
}

func IterClose(h int32) { stateIterClose(h) }

func EmitEvent(topic string, data []byte) {
	EmitEventPtr(sptr(topic), uint32(len(topic)), ptr(data), uint32(len(data)))
}

func Caller() (a [32]byte) {
	caller(unsafe.Pointer(&a))
	return a
}

func Self() (a [32]byte) {
	selfAddress(unsafe.Pointer(&a))
	return a
}

func TxTime() int64 { return txTime() }

func BlockHeight() int64 { return blockHeight() }

func Call(addr [32]byte, method string, input []byte, gas int64) (int32, []byte) {
	code := call(unsafe.Pointer(&addr), sptr(method), uint32(len(method)), ptr(input), uint32(len(input)), gas)
	res, _ := twoCall(func(dst []byte) int32 { return callResult(ptr(dst), uint32(len(dst))) })
	return code, res
}

func Sha256(b []byte) (d [32]byte) {
	sha256(ptr(b), uint32(len(b)), unsafe.Pointer(&d))
	return d
}

func Ed25519Verify(pub *[32]byte, msg []byte, sig *[64]byte) bool {
	return ed25519Verify(unsafe.Pointer(pub), ptr(msg), uint32(len(msg)), unsafe.Pointer(sig)) == 1
}

func Abort(msg string) {
	abort(sptr(msg), uint32(len(msg)))
	// The host never returns from abort; if a broken host did, trap
	// rather than continue with a failed precondition.
	panic("kairos: abort returned")
}

func DebugLog(msg string) { debugLog(sptr(msg), uint32(len(msg))) }
