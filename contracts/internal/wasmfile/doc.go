// Package wasmfile reads the parts of a wasm binary that the ABI rules of
// docs/abi.md talk about: types, imports, function types, memories,
// exports and the start section. It uses only the standard library, so the
// contract tests check built modules without wabt or a runtime.
//
// It is a reader for tests, not a validator: code, data and custom sections
// are skipped unread. It never panics and never allocates more than the
// input can describe (every vector count is bounded by the bytes left).
package wasmfile
