// Package loadgen drives a running devnet through its HTTP APIs, as many
// wallets would, and measures what a client sees: the committed rate and
// the latency from a transaction's scheduled send time to its block being
// visible on the API it was sent to.
//
// Invariants and choices:
//   - Open loop: transaction k is due at start + k/rate whatever happened
//     to earlier ones, and its latency counts from that due time, so a slow
//     node cannot hide its queueing by slowing the generator down
//     (coordinated omission).
//   - Pipelined nonces: sender s owns nonces n+1, n+2, … and sends the next
//     without waiting for the previous receipt. Each sender is pinned to one
//     API and submits its transactions one after another, so the node sees
//     them in nonce order; the senders are spread evenly over the APIs.
//     With Gen.Batch, a sender still waits for its previous submission's
//     answer, so its transactions stay in nonce order inside and across
//     the batches of its API (POST /v1/txs/batch, see batch.go).
//     The node does not promise to execute them in that order: a
//     transaction's timestamp is a quantile of the validators' acks, so two
//     transactions of one sender closer together than the spread of those
//     acks can be ordered n+1 before n, and n+1 then fails "bad nonce".
//     Those show up as failed, with the first reason in Result.FirstProblem.
//   - Workload: transfers of 1 unit of the native token (exec.TokenModule,
//     no wasm build) from each sender to its own sink address, so senders
//     never touch each other's keys. Senders are funded by a mint first.
//   - Receipts: one block watcher per API asks for the next block with
//     GET /v1/blocks/{height}/wait, which the node answers as soon as it
//     stored that block (one request per block, not one per pending
//     transaction, and no poll period added to a latency); a transaction's
//     latency ends when the block holding it reaches the client. At the end
//     every transaction's receipt is read with GET /v1/txs/{id} and must be
//     "ok" to count as committed.
//
// Time is read with time.Now here: the generator is a client, nothing it
// measures feeds consensus.
package loadgen
