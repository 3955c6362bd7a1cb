// Package guest is the SDK for writing Kairos modules in Go.
//
// A module is a `package main` whose methods are exported with
// //go:wasmexport (signature func()), built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o m.wasm .
//
// Methods read their input with Args (Args.DecodeCaller when they also
// need Caller: one host call for both), or Input and a Decoder, keep data
// in state through Map and Value, emit events (Event), call other modules
// with Call, and set their result with Return. A failed precondition calls Abort: the
// transaction ends with status "aborted", every write and event is
// discarded and the message goes to the receipt.
//
// The same code runs natively under `go test` against the in-memory fake
// host of package guesttest, which keeps the semantics of docs/abi.md
// (overlays discarded on failure, limits, cross-module calls between
// registered modules) but ignores gas.
//
// Invariants:
//   - Everything a module sees comes from the host: no clock, randomness or
//     environment of the machine reaches it, so execution is deterministic.
//   - Encodings are the documented byte layout of docs/abi.md section 7:
//     big-endian fixed-width integers, raw 32-byte addresses, u32-length-
//     prefixed bytes. Decoders reject short input and trailing bytes.
//   - State keys of Map and Value are u8(len(name)) ‖ name ‖ key fields, so
//     the key spaces of two names never overlap.
//   - The package imports nothing that needs WASI beyond the Go runtime's
//     own ten imports (docs/abi.md section 8), and nothing of the project.
//   - Map, Value, DecodeInput, EmitWith and ReturnWith allocate nothing
//     for fields of fixed size: they build keys, read values and input,
//     encode and decode in package-level buffers that never leave them
//     (byte fields are decoded as copies), so a typical method runs without
//     the Go allocator, which in wasm costs metered instructions and dirty
//     pages the host restores before the next transaction. Prefer them
//     to StateGet, Decode(c, Input()) and Emit(topic, NewEncoder()...) in
//     hot methods; those return or keep buffers and so allocate.
//   - A Map whose key and value codecs are both fixed-size field codecs
//     (Uint64Codec, Int64Codec, Uint32Codec, BoolCodec, AddressCodec), and a
//     Value of one, get and set through stack arrays without codec calls
//     (fixed.go), storing the same bytes; a stored value that does not
//     decode takes the generic path, so it aborts with the same message.
//     Likewise Args decodes an input of fixed-size fields (Pairs of them,
//     nested) without codec calls, and Event.Fields encodes fixed-size
//     event fields in a stack array: both resolve what they can at package
//     initialization (NewArgs, NewEvent), because in wasm a transaction
//     pays for every Go call and type assertion in metered instructions.
//   - Map, Value and Args are one pointer to their definition (made once,
//     in NewMap, NewValue or NewArgs), so passing one or calling a method
//     copies a word. Map's Get, Set and SetOrDelete and Args.Decode keep
//     the address-to-u64 case (balances, transfer inputs) in straight-line
//     code and every other case in a function of its own.
//   - EventFields appends at min(n, EventFieldsLenMax) into a buffer with
//     room for one more field, so appending takes no branch; Emit aborts
//     when n passed the limit.
//   - In wasm, the package's init allocates one object of every size class
//     up to 256 bytes, so the snapshot every transaction starts from has a
//     span with free slots for each and a method's small allocations take
//     the allocator's fast path (warm_wasip1.go).
package guest
