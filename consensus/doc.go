// Package consensus implements TDAG: a certified DAG (Narwhal-style) with the
// Bullshark commit rule and a fair-ordering layer that sorts transactions by
// a consensus timestamp derived from validators' receive times.
//
// The protocol is a pure state machine: it starts no goroutines, does no
// I/O, never reads the wall clock and never uses global randomness. The
// node drives it in production and consensus/sim drives it in tests.
// See ../shared/design/consensus.md.
package consensus
