// Package state is the versioned, content-addressed Merkle state store of
// Kairos, kept in a go-datastore (pebble by default).
//
// Invariants: the root of a version depends only on the set of (key, value)
// pairs it holds; each version is written by one durable batch; every node
// reachable from a retained root is present; a reader below the prune
// horizon gets ErrPruned, never a missing node.
package state
