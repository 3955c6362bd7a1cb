// Package simexec runs the consensus simulator (consensus/sim) with a real
// executor behind every validator, so that S2 — equal height ⇒ equal state
// root — is checked at every height of every seed, under the simulator's
// faults.
//
// The package has only tests. consensus may not import state or runtime, so
// the wiring lives here: the simulated clients submit real signed
// types.Tx values (the simulator's transaction ids are their ids), and each
// validator executes its released blocks with runtime/exec's native runner
// against its own in-memory state.Store. Validators use different worker
// counts (1 or 2), which makes every seed a parallel-versus-serial
// metamorphic test as well.
//
// A validator's store survives a crash, like a node's durable state, and
// is replaced by an empty one when its disk is wiped; the simulator then
// executes the re-emitted blocks from height 1 again. Each transaction has
// its own sender with nonce 1, so every receipt must be StatusOK: a
// transaction executed twice would be StatusInvalid (S5), and every body
// is decoded with its signature checked against the block time.
package simexec
