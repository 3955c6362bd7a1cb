// Package sim runs N validators' real consensus cores in one goroutine over
// a seeded event queue ordered by (virtual time, sequence number), with a
// simulated network, clocks, disks, clients and Byzantine validators, and
// checks the invariants of RELIABILITY.md after every step.
//
// Everything that varies comes from the seed: latencies, losses, fault
// schedules, clock offsets, which validator misbehaves and how. A failing
// run prints its seed and the command that replays it; Run with the same
// Config always produces the same Result, including its TraceHash, which
// the tests check by rerunning a sample of seeds.
//
// What is simulated and how:
//   - network: per-message latency (a base plus an exponential tail), loss,
//     duplication, reordering (from the latency tail), symmetric, one-way
//     and flapping partitions, isolation of the current anchor;
//   - clocks: per-node offset (within Δ/2 for honest nodes, beyond Δ for a
//     skewed one), drift in ppm and jumps; the core only sees local time;
//   - disks: Persist records; a crash drops everything after the last Sync;
//     a wipe drops everything (the amnesia guard must then hold);
//   - mempools: clients submit to 1, f+1 or all validators, which gossip
//     the payload; payloads survive restarts, not wipes;
//   - Byzantine validator (at most F weight): an equivocating twin (a
//     second core with the same key), withheld/early/late/ancient acks,
//     corrupted signatures, replays, oversized and malformed messages.
//
// Signatures use a keyed-hash scheme by default (same accept/reject
// behaviour for every key the simulation owns, far cheaper than ed25519);
// Config.Ed25519 switches to real keys. See RATIONALE.md.
//
// Invariants checked: S1 agreement on committed sub-DAGs and blocks (also
// across restarts, which replay from disk), S3 no honest equivocation of
// headers or votes across restarts, S4 at most one certificate per
// (author, round), S5 no tx released twice, S6 log strictly increasing in
// (ts, txid), S7 watermark never decreases, S8 timestamps within committed
// honest acks, S9 ordering linearizability against committed honest acks,
// and each honest author's certificates committed in strictly increasing
// round order (what S8 relies on).
// After the faults stop: L1 commits resume at every honest node, L2 every
// tx an honest validator saw is released everywhere, L3 every honest node
// (restarted ones too) reaches the highest honest height and sub-DAG count
// of the end, within a bounded settle time after it (see settle), L4 core
// queues stay within bounds. S2 (equal height ⇒ equal state root) is
// checked when Config.Executor is set: consensus may not import the
// executor, so internal/simexec wires a real one.
//
// With Config.Restore, restarts continue from an ordering state instead of
// replaying the log from genesis (a crashed node from its own, over a log
// compacted to that state's gc round; a wiped one from an honest peer's),
// peers serve round ranges below their gc round from their logs, and every
// honest node's ordering state after each block must be equal (S1).
package sim
