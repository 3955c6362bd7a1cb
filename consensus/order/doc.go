// Package order is the fair-ordering layer of TDAG: a pure function from the
// sequence of committed sub-DAGs to a sequence of blocks whose transactions
// are sorted by a consensus timestamp.
//
// Each committed header carries acks ("validator j first received tx at
// TRecv"). A transaction's timestamp is QuantileF1 of its acks once acks of
// weight >= Q are committed: the lowest value vouched for by more than F
// weight, so it lies within the range of honest receive times. Transactions
// are released only below a stability watermark B_k, so no transaction that
// is assigned later can sort before one already released.
//
// Invariants (tested in order_test.go, checked again by consensus/sim):
//   - the output depends only on the committed sequence: no clock, no
//     randomness, no map iteration order reaches it (maps are only scanned
//     for a minimum or collected and sorted);
//   - the released log is strictly increasing in (ts, txid);
//   - the watermark never decreases;
//   - every timestamp lies within the range of honest acks.
//
// The clamp acks[id][j] = max(t, T[j]+1) is what makes the watermark sound
// against a Byzantine validator that commits an old-looking ack late: its
// ack can never be older than its own latest committed header. The tests
// show the released log becoming unsorted without it.
//
// Memory is bounded: released ids are remembered only for Params.Retain
// below the watermark (long enough that honest validators never ack them
// again, since a transaction's validity window is shorter). Expired ids are
// forgotten at once rather than barred, so that one Byzantine ack with an
// ancient time cannot censor a transaction (see Apply).
package order
