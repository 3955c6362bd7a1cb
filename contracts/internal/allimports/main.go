// Command allimports is not an example: it calls every function of
// sdk/guest once so that its wasm build imports every "kairos" function,
// and contracts/abi_test.go can check all the SDK's //go:wasmimport
// signatures against docs/abi.md, not only those the examples use.
package main

import "github.com/kairos-network/kairos/sdk/guest"

var addrIn = guest.NewArgs(guest.AddressCodec)

//go:wasmexport all
func all() {
	in := guest.Input()
	guest.StateSet([]byte("k"), in)
	v, _ := guest.StateGet([]byte("k"))
	guest.StateDelete([]byte("k"))
	guest.StateIterate(nil, func(k, v []byte) bool { return false })
	guest.Emit("all", v)
	d := guest.Sha256([]byte(guest.Caller().String() + guest.Self().String()))
	_ = guest.VerifyEd25519(d, in, [64]byte{})
	_, _ = guest.Call(guest.Self(), "all", nil, int64(guest.BlockHeight())+guest.TxTimeUnixNano())
	guest.Log("all")
	var c guest.Address
	_ = addrIn.DecodeCaller(&c)
	guest.Return(d[:])
	guest.Abort("all")
}

func main() {}
