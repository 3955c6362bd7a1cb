// Package validate decides whether a wasm module may be deployed: a size
// cap, an import allow-list given as configuration (the network's list is
// deploy.Imports: runtime/host's and runtime/wasi's functions; this package
// cannot import them), the feature set (core 2.0 minus SIMD, threads,
// reference types, table mutation, multi-memory, exceptions, tail calls,
// GC), structural limits (Limits), index and nesting rules, names the
// instrumenter reserves ("gas_left", "__kairos…"), and no start section (it
// would run before the host can set gas).
//
// Invariants:
//   - Every rejection wraps exactly one sentinel of this package that names
//     the rule; the message adds the measured value and the limit, e.g.
//     "validate: too many functions (20001 > 20000)".
//   - Check is deterministic and depends only on its input and Config.
//   - Operand-stack typing is not checked here: the wasm engine's own
//     validator runs on the instrumented module at compile time, and the
//     instrumenter only needs the structure checked here (balanced blocks,
//     labels, indices) to produce its output.
package validate
