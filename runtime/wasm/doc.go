// Package wasm decodes and encodes the WebAssembly binary format for the
// subset Kairos executes: core 2.0 minus SIMD, threads, reference types,
// exceptions, tail calls and table mutation. Function bodies are decoded
// into instructions with their immediates so that later passes (validation,
// metering) can read and rewrite them.
//
// Invariants:
//   - Decode never panics, never allocates from a length it has not checked
//     against the bytes that remain, and always terminates: every loop
//     consumes input. Hostile bytes give an error wrapping ErrMalformed or
//     ErrUnsupported, never a partial module.
//   - Encode writes the canonical form: minimal LEB128 everywhere and no empty
//     sections. For a canonical input Encode(Decode(b)) == b. Toolchains
//     that pad LEB128 (the Go linker pads to 5 bytes for relocation) decode
//     to the same Module as their canonical re-encoding, and
//     Encode∘Decode is idempotent.
//   - Custom sections are kept with their position (the id of the section
//     they follow) and re-emitted there.
//   - The few reference-type instructions and the funcref global type that
//     the runtime's own passes emit (OpTableGet ... OpTableFill, FuncRef,
//     for meter.Track) are encode-only: Decode rejects them like every
//     reference type, so no guest can use them.
//
// The package checks the binary grammar and the feature subset, not index
// ranges or types; that is package validate's job.
package wasm
