// Package wasi is the deterministic virtual WASI of docs/abi.md section 8:
// the 19 functions of wasi_snapshot_preview1 that a standard Go guest
// (GOOS=wasip1, -buildmode=c-shared) may import, answered from the
// transaction and never from the machine. Fixed empty args and environment,
// a counter clock based on the transaction time, a public random stream
// derived from the transaction id, no filesystem, stdout/stderr discarded
// (or handed to a debug sink in simulation and tests).
//
// Use: Instantiate once per wazero runtime, before the guest modules. Each
// frame (and each _initialize) runs with a *State in its context
// (WithState); the state is a plain value, so an engine that reuses an
// instance restores it by copying (State is snapshot and reset together
// with memory and globals; see InitState and FrameState).
//
// Invariants:
//   - Every result depends only on the State and guest memory, never on
//     time, randomness or the host's file descriptors.
//   - Every call charges GasHostCall before anything else, then checks its
//     pointers (bounds rule of docs/abi.md section 2), then charges GasByte
//     per byte read or written in guest memory, then does its work; a
//     failure stops the frame with a sentinel panic recorded in State.Stop,
//     so the host classifies it without parsing wazero's error text.
//   - Gas is taken from the instrumented module's "gas_left" global; a
//     module without it (not instrumented) is stopped, never run for free.
package wasi
