// Package statebench generates the deterministic state workload used by the
// state benchmarks, the crash and kill tests and the demo, and measures the
// pebble floor: the same bytes written as plain key-value pairs, one synced
// batch per block, so every state figure is printed beside the cost of the
// storage engine underneath it.
//
// Invariants: Workload.Writes(h) depends only on the Workload fields and h
// (no clock, no global randomness), so a crashed or killed writer can be
// checked against a reference recomputed from the workload; the keys of one
// block are distinct and sorted, so a block is a well-formed write set.
package statebench
