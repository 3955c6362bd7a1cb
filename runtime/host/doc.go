// Package host implements the Kairos host ABI, version 1 (docs/abi.md): the
// "kairos" host module for wazero and the per-transaction frame machinery
// behind it (write buffers, events, iterators, access checks, gas, calls
// between modules).
//
// Use: register the host module in a wazero runtime with Instantiate (and
// the virtual WASI with wasi.Instantiate), deploy modules through
// runtime/deploy with Funcs() and wasi.Funcs() as the import allow-list,
// then execute a transaction with Run, giving it a Tx: the state to read
// (State, a pinned version), the engine's instance supplier (Instances),
// the declared access list, sender, time, height, gas limit, tx id.
// An engine runs a fresh instance's _initialize itself, outside Run, with
// gas InitGasMax and ctx = wasi.WithState(ctx, &st) for st :=
// wasi.InitState(); kairos functions trap there (ErrNoFrame). Run gives
// every frame its own WASI state (wasi.FrameState), so an engine that
// reuses instances restores memory and globals only.
//
// Invariants:
//   - A host function follows the order of docs/abi.md section 4.1: charge
//     GasHostCall; check every range (64-bit arithmetic, whole output
//     capacity), limit and handle; check the declared access; charge the
//     size-dependent rest; only then act. So a call that breaks two rules
//     gets the same status on every node, and nothing is observable before
//     the last check passed.
//   - Gas lives in the instrumented module's gas_left global; host charges
//     decrement it (a kairos function works on a copy, stored back when it
//     returns or stops the frame, before any code can read it). A charge
//     larger than what is left stops the frame with out_of_gas without
//     changing it.
//   - Guest failures never become Go errors: a host function records the
//     outcome in its frame and panics with a stopPanic, which wazero turns
//     into the export call's error; the frame is classified from the
//     record (or, for a plain wasm trap, from gas_left and the depth flag).
//     Run returns a Go error only for node failures (State I/O, an engine
//     handing out an uninstrumented instance).
//   - The host never writes to State. Each frame buffers its writes; a
//     callee's buffer is merged into its caller's when it ends normally and
//     dropped otherwise, so failed frames leave nothing. Reads look through
//     the buffers of every frame on the stack, newest first.
//   - Iterators merge the State's iterator with a snapshot of the buffered
//     writes under the prefix taken at open: later writes are not seen.
//   - Determinism: nothing depends on map order (write sets, recorded
//     access lists and pending-write snapshots are sorted), time or
//     randomness outside Tx.
//   - Reuse: Run takes its run state, frames and write buffers from a
//     pool and returns them afterwards; a Result shares no mutable memory
//     with them, so no transaction sees anything of an earlier one. With
//     a Tx.Arena, a Result's copies are carved from chunks it shares with
//     the arena's other Results, but no byte is handed out twice unless
//     its holder gave it back: Arena.Release takes the last Result's
//     Writes array and keys (never values, events or return data).
//
// Concurrency: one Run per goroutine; a Tx, its State and its Instances are
// used by that goroutine only. Host functions of different runs never
// share mutable state (a pooled run is used by one Run at a time).
package host
