//go:build !wasip1

package guest

import (
	"encoding/binary"
	"unsafe"
)

// The portable forms of mem_wasip1.go's moves (it says why wasm has its
// own).

func putBE64(p unsafe.Pointer, v uint64) { binary.BigEndian.PutUint64((*[8]byte)(p)[:], v) }

func getBE64(p unsafe.Pointer) uint64 { return binary.BigEndian.Uint64((*[8]byte)(p)[:]) }

func copyAddress(dst, src unsafe.Pointer) { *(*Address)(dst) = *(*Address)(src) }
