// Package node wires a Kairos validator together: mempool (node/mempool),
// consensus driver, p2p transport, block executor, checkpoints, metrics and
// the HTTP API (node/api). node/config reads a validator's TOML home
// (`kairos node`), node/devnet runs a local network in one process
// (`kairos devnet`).
//
// # Use
//
//	n, err := node.New(node.Config{Committee: comm, Key: key, Dir: dir, Native: natives, Bootstrap: peers})
//	id, err := n.SubmitTx(ctx, raw)
//	rc, height, err := n.Receipt(id)
//	defer n.Close()
//
// # Runner
//
// Without Config.Runner the node builds exec.NewRunner(Native, engine)
// with one exec.PooledEngine per node (bounded by Config.Pool, default
// exec.DefaultPoolConfig; wazero's compilation cache under Dir/wasm so a
// restart does not recompile deployed modules). Deploy, upgrade, admin
// and calls of wasm modules all run there; the engine is closed after the
// loops stop, so no block executes on a closed engine.
//
// # Goroutines and ownership
//
//   - The driver (drive) is the only goroutine that touches the consensus
//     core. Every input reaches it through the inbox as a closure stamped
//     with Clock.Now when taken; fetch answers for peers run on it through
//     calls. It keeps the one timer the core asks for.
//   - One sender per peer writes that peer's outbox to a direct stream, so
//     a slow peer delays only itself; a publisher gossips certificates.
//   - The executor takes released blocks in height order.
//   - Fetches run in at most MaxFetches goroutines.
//
// # Invariants
//
//   - Persist before send: the driver steps the inputs already queued (up
//     to MaxGroupSteps) into one batch of records and commits it (synced)
//     before the Sends, Broadcasts and Fetches those steps produced, when
//     it holds a record that must be durable first (own header, vote, own
//     certificate); a failed commit halts the node (ErrPersist) with
//     nothing sent. Peers' certificates alone do not force a commit: they
//     wait in the open batch for the next one (at most MaxDeferredRecords
//     and MaxDeferredBytes), so the log on disk is always a prefix and a
//     crash loses at most certificates, which are fetched again. Calls
//     (fetch answers) run between groups.
//   - Restart = replay: the consensus log (/node/log) is replayed into a
//     new core, which re-releases every block from height 1; the executor
//     skips heights at or below the state's latest version. The mempool is
//     reloaded and its payloads reported again with their first-seen times.
//   - The pool holds no executed transaction for long: a block's are
//     removed after its commit, and one arriving again (late gossip, a
//     resubmission, a replayed core's fetch, a crash before the removal)
//     is dropped when its receipt exists; peers fetch executed bodies from
//     the transaction records.
//     A wiped node asks peers how far it had signed (answers of weight
//     Q − own weight), fetches the DAG from round 1 and re-executes; this
//     works while peers still hold round 1 (gc_depth), state sync does not
//     exist yet.
//   - Blocks execute in height order against the latest state. Block,
//     transaction and receipt records are written before the block's state
//     commit, so a crash in between re-executes the block (identically).
//     The root record follows the state commit (the root is its result);
//     blocks and receipts become visible with it. Every height reported
//     to clients (Status, Receipt, State at 0) is this served height, not
//     the state's latest version, so a reported height is always fetchable.
//   - After each block the node signs a checkpoint vote (height, block id,
//     state root) and sends it to every validator. A certificate of Q
//     matching votes is stored; if its root or block id differs from this
//     node's at that height, the node halts with ErrStateDiverged.
//   - Every queue a peer can grow has a named limit (MaxInbox, MaxOutbox,
//     MaxFetches, MaxFetchTxs, MaxFetchResponseBytes,
//     MaxPendingCheckpoints, MaxGroupSteps, MaxDeferredRecords,
//     MaxDeferredBytes); a message at a full queue is dropped and
//     counted (consensus re-sends and fetches what it misses).
//   - Everything listens on 127.0.0.1 only (p2p's loopback default).
//
// # Datastore
//
// The node shares the state store's pebble datastore (state uses /kairos):
// /node/log, /node/block, /node/root, /node/tx, /node/receipt, /node/cp,
// /node/cplatest and /node/mempool (see store.go).
package node
