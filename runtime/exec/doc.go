// Package exec executes one ordered block of transactions against a parent
// state version, in parallel by the access each transaction declares, with
// a result byte-identical to executing the block serially.
//
// # Use
//
//	x := exec.New(runner, exec.Options{Workers: 2})
//	res, err := x.ExecuteBlock(ctx, parent, block, txs) // txs[i] is the body of block.Txs[i]
//	root, err := store.Commit(ctx, block.Height, res.Writes)
//	sim, err := x.Simulate(ctx, latest, env, tx)        // result, gas and the access list used
//
// The per-transaction work is behind Runner, so the scheduler is tested on
// its own: NativeRunner runs Go-coded modules (the test and benchmark set
// Token, Counter, Scan); WasmRunner runs calls and the module lifecycle in
// wasm through the host ABI of runtime/host, on the instances of an Engine
// (PooledEngine: compiled code in a bounded LRU, idle instances restored
// to their post-_initialize snapshot, each executor worker keeping the
// ones it released for its next transactions without the pool's lock;
// tests compare it with a fresh instance per frame); MuxRunner, the node's runner, sends calls of the
// native modules to a NativeRunner and the rest to a WasmRunner. A runner
// sees the state through an Overlay, whose prefix Iterator streams the
// parent's keys merged with the pending writes, so no prefix is ever
// materialized whole.
//
// # Schedule
//
// Each transaction's access list (plus its implicit write of the sender's
// account key, see below, and for a call the implicit read of the called
// module's record) is turned into a conflict DAG: a transaction
// depends on the latest earlier writer of everything it reads or writes,
// and, when it writes, on every earlier reader since that writer. Exact
// keys are indexed by their slot, their rank among the block's distinct
// exact keys (numbered by a parallel radix sort, not a map; calls of one
// module in a row put its record key in the sort once); prefixes by a map
// per prefix length plus the sorted list of the block's keys, so building
// the DAG costs O(A log A) for A access entries when prefixes are few,
// never a scan over all pairs.
// A lifecycle transaction (deploy, upgrade, set or clear admin) is a
// barrier: it waits for every transaction since the previous barrier and
// every later transaction waits for it, because it changes which code runs
// at an address, which cross-module calls read without declaring it.
// Ready transactions run on a fixed pool of workers: those without
// dependencies are claimed in chunks from a cursor, those released later
// pass through a queue behind them, and a worker that releases dependents
// runs the first of them itself, so a chain does not hop between workers.
// Each runs on a private overlay: its own writes,
// then the published writes of earlier transactions of the block, then
// the parent version (through a prefetch of every exact key the block
// declares, done before execution by the serial path too, read while the
// keys are numbered, and laid out by entry in execution order so that a
// transaction reads its values next to the previous one's; see feed). The
// entries are listed once per block and shared by the prefetch, the
// numbering, the DAG, the block layers (arrays by slot), the overlays (a transaction
// finds the slot of a key it declared among its own few entries) and the
// merge. Their arrays, and the entries' key strings, live in a scratch
// the executor reuses for its next block (see scratch): nothing of a
// block that outlives it (its result) may refer to them. A block whose DAG has no edge skips the
// version store and the ready queue: no transaction can see another's
// writes, so each worker runs a contiguous range of the block (claiming
// chunks from its front, and from the others' ranges once its own is
// done). The numbering pass over the sorted keys already
// shows most such blocks (no barrier, no prefix, no key written by one
// transaction and used by another), and then the DAG is not built. In other blocks the same holds per transaction: one
// without dependencies reads no published version, and the writes of one
// without dependents are not published. The merge needs no sort: one pass
// in block order keeps each slot's last value, and the written slots are
// emitted in slot order, which is key order (by the workers, over ranges
// of slots); only keys without a slot (written under a declared prefix)
// are sorted, and merged in.
//
// Every parallel phase of a block (listing the entries with the senders,
// the prefetch beside the rest of the numbering with up to two workers and
// after it with more, execution, merge) is run by the calling goroutine
// and the block's crew of Workers-1 helpers, started once in prepare and
// stopped before the scratch is handed back (see gate.go). A phase's
// parts are claimed, never assigned, and a helper joins only while the
// caller is still on the phase, so each part's result may depend only on
// the part, and the caller alone must be able to finish any phase.
//
// # Invariants
//
//   - Parallel = serial: receipts, gas, events and the write set are equal
//     byte for byte for every worker count. Why reads are right: every
//     earlier transaction that declared a write overlapping a key a
//     transaction reads is an ancestor in the DAG (writers of one entry form
//     a chain and overlapping entries are linked), so it has finished and
//     published; a transaction that wrote without declaring has its writes
//     discarded (access_violation); a later writer depends on the reader, so
//     it cannot have published yet. Hence the newest published version of a
//     key is exactly the value the serial order gives.
//   - The write set of a block is merged in block order and sorted by
//     (module, key); a deleted key is a Write with a nil value.
//   - Time, randomness and scheduling never reach results: the block time
//     and timestamps come from the block, the worker that runs a
//     transaction is irrelevant, and map iteration is always sorted.
//   - Guest failures are receipt statuses. ExecuteBlock returns an error only
//     for a node problem (state read failure, cancelled context, a block
//     that does not match its bodies); the caller must not commit then.
//
// # Accounts, nonces and replay protection
//
// The system module AccountsModule keeps, under the sender's 32-byte
// account address, the nonce of the sender's last executed transaction
// (8 bytes big-endian; absent = 0). Every transaction implicitly writes
// that key, so transactions of one sender are always ordered among
// themselves. At its place in the block a transaction is StatusInvalid
// when its ValidUntil is before the block time, or when its nonce is not
// exactly the account nonce + 1 (so a replay, a duplicate and a gap are all
// refused, and nonces start at 1). Before execution (in ExecuteBlock and
// ExecuteSerial alike) each sender's transactions are permuted among the
// positions that sender holds in the block into ascending nonce order
// (equal nonces keep their block order); other senders' positions do not
// move, so the fair order between senders is untouched. The fair order can
// put a sender's nonce n+1 before n when both arrive within the ack spread,
// and the strict rule would then refuse n+1 and every later nonce.
// TxEnv.Index is the execution position; BlockResult.Receipts and Events
// stay in the block's order (the node stores receipt i under
// block.Txs[i]). An invalid transaction uses no gas, writes nothing and
// does not consume its nonce, so the sender can submit the right nonce
// again. A transaction that passes both checks consumes its
// nonce whatever its status: a failed or out-of-gas transaction discards
// its own writes and events but still advances the nonce, so it cannot be
// replayed. A runner may also answer StatusInvalid (an unknown module);
// that is treated like a failed check. There is no fee yet; a fee debit
// will live under the same account key, so it adds no new conflicts.
//
// # Modules
//
// The system module ModulesModule keeps each instance's ModuleRecord (code
// CID, admin — zero admin = immutable forever —, and the instrumenter
// version of its code) under its address, the original code under the CID
// and the instrumented code under (CID, instrumenter version), so
// snapshots carry code and a newer instrumenter never changes what a
// deployed instance runs.
// A deploy creates InstanceAddress(sender, nonce) with Payload.Admin,
// validates and instruments the code (runtime/deploy) and runs its
// optional init; an upgrade (admin only) stores the new code, points the
// record at it and runs the new code's optional migrate in the same
// transaction. A failing init or migrate fails the transaction, and since
// a failed transaction's writes are all dropped, the old code and state
// stay. Code is stored in chunks of types.StateValueMax bytes.
//
// # Concurrency
//
// An Executor may run several blocks at once (it keeps no per-block
// state). The parent StateView is read from several goroutines: it must be
// safe for concurrent use (state.Store and state.View are). A Runner is
// called from several goroutines at once, one transaction per call.
package exec
