//go:build race

package state

// RaceEnabled says the test binary runs under the race detector. The crash
// and kill sweeps exercise pebble and the disk, not concurrency of ours, and
// run 10-30x slower under it, so they shrink (or skip) there; the plain
// `go test` run of `make test` runs them in full.
const RaceEnabled = true
