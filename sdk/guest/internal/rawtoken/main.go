// Command rawtoken is contracts/token's transfer written on the raw ABI
// (sdk/guest/internal/abi's pointer-level imports) with fixed-size stack
// buffers instead of the SDK's typed helpers: the same keys, values, event
// and abort conditions,
// for runtime/enginetest's BenchmarkGoTransferLayers, which compares it
// with the SDK token to tell what the typed helpers cost from what the Go
// compiler's wasm code and runtime cost. It is not an example to follow:
// modules use sdk/guest.
package main

import (
	"encoding/binary"
	"unsafe"

	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// balanceKey is the SDK's key of a balance: u8(len("bal")) ‖ "bal" ‖ address.
func balanceKey(a *[32]byte) (k [36]byte) {
	k[0], k[1], k[2], k[3] = 3, 'b', 'a', 'l'
	copy(k[4:], a[:])
	return k
}

func balance(k *[36]byte) uint64 {
	var v [8]byte
	switch abi.StateGetPtr(unsafe.Pointer(k), uint32(len(k)), unsafe.Pointer(&v), 8) {
	case -1:
		return 0
	case 8:
		return binary.BigEndian.Uint64(v[:])
	}
	abi.Abort("token: stored balance is not a u64")
	return 0
}

func setBalance(k *[36]byte, v uint64) {
	if v == 0 {
		abi.StateDeletePtr(unsafe.Pointer(k), uint32(len(k)))
		return
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	abi.StateSetPtr(unsafe.Pointer(k), uint32(len(k)), unsafe.Pointer(&b), 8)
}

//go:wasmexport transfer
func transfer() {
	var in [41]byte
	var from [32]byte
	if abi.InputCallerPtr(unsafe.Pointer(&in), uint32(len(in)), unsafe.Pointer(&from)) != 40 {
		abi.Abort("token: transfer takes an address and a u64")
	}
	amount := binary.BigEndian.Uint64(in[32:40])
	var ev [72]byte
	copy(ev[:32], from[:])
	copy(ev[32:72], in[:40])
	k := balanceKey(&from)
	have := balance(&k)
	if have < amount {
		abi.Abort("token: insufficient balance")
	}
	setBalance(&k, have-amount)
	to := [32]byte(in[:32])
	k = balanceKey(&to)
	setBalance(&k, balance(&k)+amount)
	topic := "transfer"
	abi.EmitEventPtr(unsafe.Pointer(unsafe.StringData(topic)), uint32(len(topic)), unsafe.Pointer(&ev), uint32(len(ev)))
}

func main() {}
