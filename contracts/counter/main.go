// Command counter is the smallest Kairos module: one u64 in state.
//
// Methods (encodings of docs/abi.md section 7):
//   - increment: input empty; adds 1, emits "incremented" (u64 new value),
//     returns the new value (u64).
//   - get: input empty; returns the value (u64), 0 if never incremented.
//
// contracts/counter_wat is the same module in WebAssembly text: same
// state key, event and results, so the two can be run side by side.
package main

import "github.com/kairos-network/kairos/sdk/guest"

// count lives under state key "\x05count".
var count = guest.NewValue("count", guest.Uint64Codec)

//go:wasmexport increment
func increment() {
	n := count.GetOr(0)
	guest.Require(n < ^uint64(0), "counter: overflow")
	n++
	count.Set(n)
	out := guest.Encode(guest.Uint64Codec, n)
	guest.Emit("incremented", out)
	guest.Return(out)
}

//go:wasmexport get
func get() { guest.Return(guest.Encode(guest.Uint64Codec, count.GetOr(0))) }

func main() {}
