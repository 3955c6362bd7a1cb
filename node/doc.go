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
//   - The transaction publisher (txgossip.go) gossips the transactions
//     clients submitted in batches (one message per GossipBatchDelay, or
//     at MaxGossipBatchTxs / MaxGossipBatchBytes, and before every own
//     header); receivers check a batch's signatures together and hold its
//     valid transactions even when they reject the message for an
//     invalid one.
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
//   - Restart = restore + replay: a new core continues from the last
//     persisted ordering state (/node/ostate, with its checkpoint
//     certificate) and replays the consensus log (/node/log) left after
//     compaction, re-releasing the blocks after that state; the executor
//     skips heights at or below the state's latest version. Without a
//     persisted state it replays from genesis. The mempool is reloaded and
//     its payloads reported again with their first-seen times.
//   - Compaction (compact.go): at executed heights that are multiples of
//     the genesis parameter consensus.Params.CompactEvery (so every
//     validator can serve that snapshot), once a checkpoint certificate matches this node's block,
//     root and ordering state, the ordering state is persisted;
//     then log records of rounds below the previous persisted state's gc
//     round are deleted (the latest own header stays), and blocks,
//     transaction records (with their receipts) at or below that height minus
//     RetainBlocks. Checkpoint certificates stay. Certificates below the
//     core's gc round are served to peers from the log.
//   - The pool holds no executed transaction for long: a block's are
//     removed after its commit, and one arriving again (late gossip, a
//     resubmission, a replayed core's fetch, a crash before the removal)
//     is dropped when its receipt exists; peers fetch executed bodies from
//     the transaction records.
//   - Empty disk (statesync.go): before its core starts, the node asks
//     the peers for their last compacted checkpoint; it installs the state
//     snapshot of the highest one (certificate with a quorum, ordering
//     state hashing to the certified value, manifest root equal to the
//     certified root, chunks from several peers in turn, each checked
//     against the manifest's hash and built into the state as it arrives
//     (state.Importer.InstallFromChecked), so an interrupted sync resumes from
//     its last durable batch) and starts the core from
//     that ordering state; if answers of weight > F report none, the
//     network is young and the core starts at genesis, fetching the DAG
//     from round 1. Either way it first asks peers how far it had signed
//     (answers of weight Q − own weight).
//   - Intact disk behind the peers' latest compacted checkpoint
//     (catchup.go): before its core starts the node fetches the blocks up
//     to it, executes them checking the root at every checkpoint height (blocks between checkpoint
//     heights are taken on their parent links to the certified one), and
//     starts the core from the checkpoint's ordering state, so an absence
//     longer than gc_depth plus the peers' log retention is bridged (up
//     to RetainBlocks blocks). Otherwise the log replay does. Both paths
//     run on the driver before its first step.
//   - While running (catchup.go, watchLag): a node that holds
//     certificates above its executed height but executes nothing for
//     two LagCheckIntervals asks for the peers' compacted checkpoint; if
//     it is above, the node catches up to it the same way on the driver,
//     with the executor held idle (executorState.run), and replaces its
//     core with one restored from that ordering state and its log, as a
//     restart would; the driver then steps Start and reports the pool.
//   - Blocks execute in height order against the latest state. Block and
//     transaction records (a receipt inside its transaction's) are written before the block's state
//     commit, so a crash in between re-executes the block (identically).
//     The root record follows the state commit (the root is its result);
//     blocks and receipts become visible with it. Every height reported
//     to clients (Status, Receipt, State at 0) is this served height, not
//     the state's latest version, so a reported height is always fetchable.
//   - Future nonces (exec.ExecuteBlockDeferred): a transaction ordered
//     ahead of its sender's nonce gap waits in the state's deferred set
//     (exec.DeferredModule, so restart, state sync and compaction carry
//     it) and executes in a later block once the gap closes, or expires
//     (ValidUntil, or exec.DefaultDeferLimits.MaxAge after its timestamp).
//     Its block writes its transaction record without a receipt (Receipt
//     is ErrDeferred, the API status "deferred"); the height that settles
//     it rewrites the record with its receipt, and lists it in that
//     height's /node/htx record, so its events stream at that height and
//     pruning deletes its records with that height, not its first one.
//   - Genesis check (genesis.go): every node serves the hash of its
//     committee (chain, validators, consensus.Params) and asks each peer
//     for theirs once; peers of weight above F with another hash halt it
//     with ErrGenesisMismatch, fewer are logged.
//   - An idle chain still makes blocks: the ordering layer releases an
//     empty block whenever the watermark crosses a multiple of the
//     genesis EmptyBlockInterval, so checkpoints, compaction and the
//     expiry of deferred transactions do not wait for traffic.
//   - After each block at a multiple of the genesis CheckpointInterval
//     the node signs a checkpoint vote (height, block id,
//     state root, ordering state hash) and sends it to every validator. A
//     certificate of Q matching votes is stored; if its root, block id or
//     ordering state hash differs from this node's at that height, the
//     node halts with ErrStateDiverged.
//   - Every queue a peer can grow has a named limit (MaxInbox, MaxOutbox,
//     MaxFetches, MaxFetchTxs, MaxFetchResponseBytes,
//     MaxPendingCheckpoints, MaxGroupSteps, MaxDeferredRecords,
//     MaxDeferredBytes, MaxTrackedTxs); a message at a full queue is
//     dropped and counted (consensus re-sends and fetches what it misses).
//   - Latency histograms (latency.go, kairos_tx_stage_seconds and the
//     driver's): local observation only. Their times come from time.Now's
//     monotonic clock, are read only by the histograms and never reach the
//     core, ordering or execution, whose inputs keep Clock.Now stamps.
//   - Everything listens on 127.0.0.1 only (p2p's loopback default).
//
// # Datastore
//
// The node shares the state store's pebble datastore (state uses /kairos):
// /node/format (the records' format: open refuses another, ErrFormat),
// /node/log, /node/block, /node/root, /node/tx (with receipts), /node/cp,
// /node/cplatest and /node/mempool (see store.go), /node/htx (see
// executor.go), /node/ostate (the ordering state with its certificate)
// and /node/prunedto (see compact.go).
package node
