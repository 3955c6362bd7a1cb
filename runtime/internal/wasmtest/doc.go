// Package wasmtest builds wasm modules for the runtime's tests without
// external tools: a small Builder that emits modules from instructions, and
// GoGuest, which compiles a standard Go guest (GOOS=wasip1, c-shared,
// //go:wasmexport) with the local toolchain once per test process.
package wasmtest
