//go:build wasip1

package guest

import (
	"math/bits"
	"unsafe"
)

// Fixed-size moves for the fast paths, written for the Go compiler's wasm
// code, where every instruction is metered: putBE64 and getBE64 store and
// load a big-endian u64 as one little-endian (wasm's order) word with its
// bytes reversed — one memory access and a dozen register operations,
// where encoding/binary's eight byte accesses cost ~70 instructions — and
// copyAddress moves an address as four words, where the compiler calls
// runtime.memmove (~60 instructions with the call) for a 32-byte copy
// between pointers it cannot tell apart. mem_other.go has the portable
// forms for the native harness.

func putBE64(p unsafe.Pointer, v uint64) { *(*uint64)(p) = bits.ReverseBytes64(v) }

func getBE64(p unsafe.Pointer) uint64 { return bits.ReverseBytes64(*(*uint64)(p)) }

func copyAddress(dst, src unsafe.Pointer) {
	d, s := (*[4]uint64)(dst), (*[4]uint64)(src)
	d[0], d[1], d[2], d[3] = s[0], s[1], s[2], s[3]
}
