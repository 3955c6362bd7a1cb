// Package meter instruments a validated module for deterministic execution:
// gas, call depth, NaN canonicalization and exported globals. The output is
// consensus-critical; Version names the exact transformation and is stored
// with every instrumented module.
//
// What Instrument adds:
//   - Gas: a mutable i64 global exported as "gas_left". Every function body
//     is cut into metered segments that start at function entry, after
//     loop, if, else, end, br_if, br, br_table, return, unreachable and
//     after every call. Each segment is charged the sum of Cost over its
//     instructions before it runs: gas_left -= cost; if gas_left < 0 then
//     unreachable. memory.grow is charged GrowPageGas per requested page and
//     memory.copy/fill/init one gas per BulkBytesPerGas bytes, computed from
//     the operand at run time by injected code — or, for a constant length
//     of at most FoldBulkMax bytes, added to the segment's cost (the same
//     gas; an overspending segment still ends out of gas). The host sets
//     gas_left before a call; an `unreachable` trap with gas_left < 0 is
//     out-of-gas.
//   - Call depth: a mutable i32 global ("__kairos_depth") incremented on
//     entry to every defined function and decremented on every exit path
//     (the body is wrapped in a block so branches to the function label fall
//     into the epilogue; return is preceded by the decrement). Past
//     MaxCallDepth the function sets "__kairos_depth_exceeded" to 1 and
//     traps, long before either wazero engine's own limit.
//   - NaN canonicalization: after every instruction that can produce a NaN
//     with an engine-chosen payload (float arithmetic, min/max, rounding,
//     sqrt, promote/demote), a NaN result is replaced by the canonical
//     positive quiet NaN. Bit operations (abs, neg, copysign, reinterpret,
//     loads) are exact in every engine and are left alone.
//   - Every global the module had is exported as "__kairos_g<index>" so a
//     host can snapshot and restore an instance.
//
// Invariants: Instrument is a pure function of the module (same input, same
// output bytes); it adds no functions or imports, so function indices are
// unchanged; injected code only touches the new globals and new scratch
// locals appended after the function's own locals; with plentiful gas the
// instrumented module computes what the original computes, except that NaN
// payloads are canonical (FuzzInstrumentSemantics checks that).
//
// Track (track.go) is a second, node-local pass over Instrument's output
// for runtime/vm's restores, not part of the consensus format: every write
// to linear memory marks its 4 KiB page in a funcref table added after the
// guest's: stores and memory.fill/copy/init inline, after they succeed (so
// in bounds), a run of stores at one local plus constants in straight-line
// code once, after its last store (runs.go: Go's stack writes); the host
// functions that write guest memory through added wrappers, after the
// call, clamped to memory so marking never traps. A mark of a page also
// marks its group of 64 pages in a second table, so DirtyExport reads the
// group table and the pages of marked groups only: a Go guest's restore
// with nothing dirty reads 12 entries instead of 752. The second page of a
// span of at most a page (a run, a constant-length bulk operation) is
// marked without its group: the walk also reads the page after each marked
// group and marks its group when it is marked. A constant-length
// memory.copy or memory.fill of a multiple of 8 bytes up to InlineCopyMax
// or InlineFillMax becomes word loads and stores with the same effect and the same traps
// (the compiler engine calls the Go runtime's memmove for a bulk operation).
// Invariants: the bytes a call that ended normally changed all lie in
// marked pages, or within 7 bytes past one (a store's reach; a trapped
// call's instance is discarded, and a trap inside a run leaves its earlier
// writes unmarked), and a marked page's group is marked or it is the first
// page of its group and the previous group is marked — FuzzTrack checks
// both (its walk reads pages through groups); Track adds no
// gas and no call depth, so results and gas are those of the untracked
// code; no guest instruction can reach the table or the mark (wasm.Decode
// rejects reference and table instructions, validate a second table, and
// the guest's calls, table entries and exports of writing host functions
// are redirected to the helpers); a module whose writes Track cannot
// account for (an imported memory, an unknown host function) is refused
// with ErrUntracked, never tracked partially.
package meter
