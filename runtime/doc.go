// Package runtime executes wasm state-transition modules deterministically
// in wazero: validation and instrumentation at deploy, the host ABI, pooled
// instances reset before every transaction, and the declared-access
// parallel scheduler. See ../shared/design/runtime.md.
//
// Sub-packages, in pipeline order:
//   - wasm: binary decoder and encoder (instructions with immediates).
//   - validate: size, import allow-list, feature set, structural limits.
//   - meter: gas, call depth, NaN canonicalization, exported globals.
//   - deploy: code CID + validate + instrument, as one consensus step.
//   - vm: the pinned wazero configuration and snapshot-restored instances.
package runtime
