// Package contracts holds the example and system modules of Kairos, written
// with sdk/guest, their tests, and how they are built. The *_wat folders
// hold modules written by hand in WebAssembly text against docs/abi.md
// (counter_wat; token_wat, the Go token's twin for measuring the runtime
// without a Go runtime in the guest), committed with their .wasm.
package contracts
