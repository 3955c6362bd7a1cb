// Package runtime executes wasm state-transition modules deterministically
// in wazero: validation and instrumentation at deploy, the host ABI, pooled
// instances reset before every transaction, and the declared-access
// parallel scheduler. See ../shared/design/runtime.md.
package runtime
