// Package mempool holds the transactions a validator has received and not
// yet seen executed: it validates them statelessly, deduplicates them by id,
// remembers when each was first seen (the receive time the validator acks
// in consensus) and keeps their payloads durable, because an ack promises
// that the validator holds the payload and can serve it to peers.
//
// # Use
//
//	mp, err := mempool.Open(ctx, datastore, mempool.Config{ChainID: "devnet"})
//	e, isNew, err := mp.Add(ctx, raw, clock.Now()) // e.FirstSeen feeds consensus.TxSeen
//	e, ok := mp.Get(id)                             // serves fetch requests
//	mp.Remove(ctx, ids)                             // after the block is executed and stored
//	mp.Expire(ctx, clock.Now())                     // drop what can no longer execute
//
// # Invariants
//
//   - Only transactions that pass types.DecodeTx with the local clock enter;
//     a rejected one leaves nothing behind (no id, no bytes, no record).
//   - One entry per transaction id; re-adding returns the first entry and
//     its first-seen time, which never changes while the entry lives.
//   - The payload and first-seen time are durable (a synced batch) before
//     Add returns a new entry, so the node never acks what a restart would
//     lose; Open reloads them, dropping the expired. Concurrent Adds share
//     one batch (group commit): one fsync per batch, not per transaction;
//     AddAll queues all its new records at once, so they share a batch.
//   - AddAll gives each payload the outcome of Adds one after another in
//     input order (limits refuse the last ones), without a goroutine each.
//   - A payload is decoded and its signature checked once: one that arrives
//     again while held with the same bytes (gossip after a fetch) is taken
//     as held without either, unless its validity window has passed, when
//     it is refused as DecodeTx would. Stats counts both kinds.
//   - Count, total bytes and entries per sender are capped by named limits
//     (Config); a full pool refuses with ErrFull, ErrBytesFull or
//     ErrSenderFull rather than evicting what the node may have acked.
//
// # Concurrency
//
// A Mempool is safe for concurrent use. Returned entries are shared and
// must not be modified.
package mempool
