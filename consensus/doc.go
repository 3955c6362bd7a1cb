// Package consensus implements TDAG: a certified DAG (Narwhal-style) with the
// Bullshark commit rule and a fair-ordering layer (consensus/order) that
// sorts transactions by a consensus timestamp derived from validators'
// receive times. The protocol is specified in the design's consensus.md.
//
// # Shape
//
// Core is a pure state machine: Step(Event) []Action. It starts no
// goroutines, does no I/O, never reads the wall clock and never uses global
// randomness; time arrives in every event as the node's local clock
// reading. The driver (node/ in production, consensus/sim in tests)
// performs the actions in order: Send/Broadcast messages, Persist records
// (a synced Persist completes before any later send), SetTimer, Fetch
// certificates/payloads/the amnesia answer from peers, and consume
// Committed sub-DAGs and Released blocks.
//
// Wire types (Header, Vote, Certificate, CheckpointVote, wrapped in Message)
// use canonical CBOR through types.Encode/Decode and are signed with
// ed25519 over sha256(domain tag ‖ chain id ‖ epoch ‖ canonical bytes),
// one tag per kind. Times are int64 unix nanoseconds. Committee derives
// W, F = floor((W-1)/3) and Q = W - F from the validator weights.
//
// # Invariants the core keeps
//
//   - One vote per (author, round), persisted (synced) before it is sent;
//     one own header per round, persisted before broadcast and re-sent,
//     never re-created, after a restart (S3).
//   - A validator whose log holds nothing it signed (an empty disk, or a
//     wiped one that crashed again before the answer, its fetched
//     certificates persisted) signs nothing until peers report the highest
//     round it signed at, and never at or below that plus a margin.
//   - A certificate enters the DAG only after all its parents and its self
//     parent (above the gc round; a header names its self parent's round so
//     that every node can tell); at most one certificate per (author,
//     round) is accepted (S4). The self parent is a DAG edge, so an honest
//     author's certificates commit in round order and the ordering layer's
//     clamp never raises an honest ack (S8); own certificates are synced
//     before they are broadcast so a restart cannot skip one in the chain.
//   - Own headers are at least MinRoundDelay apart, IdleRoundDelay while
//     the node has nothing to order (no unacked, in-flight or unreleased
//     transaction); pacing never changes what is committed.
//   - Commits are a deterministic function of the DAG: the anchor of even
//     round r commits when round r+1 certificates referencing it weigh
//     >= F+1; skipped anchors with a path from it are committed first; each
//     sub-DAG is sorted by (round, author). Any insertion order of the same
//     certificates, with restarts in between, gives the same sequence (S10).
//   - Restart = replay of the persisted log (certificates, votes, own
//     header): commits and blocks are re-emitted identically from index 1,
//     so the driver deduplicates by sub-DAG index and block height.
//   - Every Released block carries the OrderingState after it (last
//     anchor, sub-DAG index, gc round, the committed certificates at or
//     above the gc round, the ordering layer's state): a pure function of
//     the committed sequence, equal at every honest node, whose hash goes
//     into the block's checkpoint vote. A core built with Config.Restore
//     continues from such a state (a compacted log only needs the records
//     at or above its gc round; a synced node needs none) and releases the
//     same later blocks as one that replayed everything. Its hash is
//     always sha2-256 of its canonical encoding (certificates and state
//     sync check it); OrderingState.Hash only avoids building the bytes.
//   - Every queue a peer or client can grow has a named limit (MaxPending,
//     MaxRoundsAhead, MaxUnacked, MaxAcks, MaxMessageBytes, MaxFetchCerts);
//     everything below the gc round is dropped.
//
// Bad input never panics: decoding and checks return errors wrapping the
// sentinels ErrMalformed, ErrTooLarge, ErrUnknown, ErrBadSignature,
// ErrNoQuorum; the core counts rejected messages in Stats.
package consensus
