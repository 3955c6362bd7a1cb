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
//     the operand at run time by injected code. The host sets gas_left
//     before a call; an `unreachable` trap with gas_left < 0 is out-of-gas.
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
package meter
