// Command caller shows cross-module calls: it drives a counter module
// (contracts/counter or contracts/counter_wat) deployed elsewhere.
//
// Methods and encodings (docs/abi.md section 7):
//   - init: counter address; the module to call.
//   - bump: input empty; calls the counter's increment twice, returns the
//     second result (u64) and emits "bumped" with it. A failing callee
//     aborts bump, which discards the first increment too.
//   - try_call: method string; calls that method of the counter with empty
//     input and all available gas, and returns the result code (u32, 0 =
//     ok, see docs/abi.md section 4.6) followed by the callee's result or
//     abort message as bytes. It never aborts on a callee failure: the
//     callee's writes are already discarded and this module's stay.
package main

import (
	"errors"

	"github.com/kairos-network/kairos/sdk/guest"
)

var (
	target = guest.NewValue("target", guest.AddressCodec)
	tries  = guest.NewValue("tries", guest.Uint64Codec)
)

func counter() guest.Address {
	a, ok := target.Get()
	guest.Require(ok, "caller: not initialized")
	return a
}

//go:wasmexport init
func initCaller() { target.Set(guest.DecodeInput(guest.AddressCodec)) }

//go:wasmexport bump
func bump() {
	var out []byte
	for range 2 {
		res, err := guest.Call(counter(), "increment", nil, 0)
		if err != nil {
			guest.Abort("caller: increment failed: " + err.Error())
		}
		out = res
	}
	guest.Emit("bumped", out)
	guest.Return(out)
}

//go:wasmexport try_call
func tryCall() {
	method := guest.DecodeInput(guest.StringCodec)
	// Counting tries shows that the caller's own writes survive a failed
	// callee.
	tries.Set(tries.GetOr(0) + 1)
	res, err := guest.Call(counter(), method, nil, 0)
	code := uint32(guest.CallOK)
	var ce *guest.CallError
	if errors.As(err, &ce) {
		code, res = uint32(ce.Code), []byte(ce.Message)
	}
	guest.Return(guest.NewEncoder().PutUint32(code).PutBytes(res).Bytes())
}

func main() {}
