// Package state is the versioned, content-addressed Merkle state store of
// Kairos, kept in a go-datastore (pebble by default).
//
// # Use
//
//	s, err := state.OpenPebble(dir, state.Options{KeepVersions: 100})
//	root, err := s.Commit(ctx, height, []state.Write{{Key: k, Value: v}}) // height = latest+1
//	v, err := s.Get(ctx, k)                 // latest value, flat index
//	view, err := s.View(ctx, height)        // pinned reader of a retained version
//	v, err = view.Get(ctx, k)
//	proof, err := view.Prove(ctx, k1, k2)   // one proof, shared siblings
//	err = view.Leaves(ctx, fn)              // every leaf in key path order (snapshots)
//	view.Close()
//	err = types.Verify(root, proof)         // what a client does, with only the root
//	stats, err := s.Prune(ctx)              // keep the last K versions
//	rep, err := s.Audit(ctx)                // mark and sweep: leaked / missing nodes
//	kinds, err := s.Usage(ctx)              // bytes per record kind (benchmarks)
//
// # Tree
//
// A binary sparse Merkle tree over 256-bit key paths (hashing and proof
// verification live in package types, so that clients need only types). It
// is stored as physical nodes of 4 binary levels (16 slots). A node's id is
// the binary Merkle hash of the subtree it stands for, so the root node's id
// is the state root and any node fetched by id checks its hashes. A leaf
// lives in its parent's slot as (key path, leaf hash); its key and value are
// in a value record stored under the leaf hash, and every read of a value
// checks that the record's key has the slot's key path and that key path and
// value hash to the leaf hash (Audit checks every leaf). A subtree with one
// leaf is never a node: the leaf moves up into the slot.
//
// # Datastore layout
//
//	/kairos/n/<id>                       node ('N') or value record ('V'), each with its born version
//	/kairos/kv/<module>/k<key>           latest value (flat index)
//	/kairos/r/<height>                   root slot of a version
//	/kairos/c/<height>                   change set: (key, old, new), CBOR; only without atomic batches
//	/kairos/s/<stale_since>              stale index: ids the version stopped using
//	/kairos/pin/<height>                 persistent pins (retained snapshot versions)
//	/kairos/latest, /kairos/min, /kairos/prunedone
//
// Ids, modules and keys are raw bytes with '.' and '/' escaped (keys.go),
// which keeps byte order.
//
// # Invariants
//
//   - The root of a version depends only on its set of (key, value) pairs:
//     not on write order, batch splits, GOMAXPROCS or the backend.
//   - Each version is written by one durable batch (synced). On backends
//     whose batches are not atomic (Options.AtomicBatches false) the change
//     set is made durable before the batch and the latest pointer after it,
//     and Open undoes a torn commit from the change set.
//   - Every node reachable from a retained root (versions min..latest) is
//     present. Prune persists the new minimum first, refuses readers below
//     it with ErrPruned, and never deletes a node whose stored born is not
//     older than its stale_since (a node id can come back: A → B → A).
//     It reads that born only when the in-memory filters of the ids each
//     version wrote (written.go) cannot rule a rewrite out. On pebble its
//     delete chunks are not synced: the version's synced progress mark
//     makes them durable, and a version whose mark is lost is pruned again.
//   - An open View pins its version; Prune never moves the horizon past a
//     pinned version, so a View never meets a missing node.
//   - A missing or mismatching node is ErrCorrupt, never a panic. A Commit
//     that fails while writing leaves the store refusing commits
//     (ErrNeedsReopen) until Open has recovered it.
//
// # Concurrency
//
// Commit calls are serialized by the caller (blocks execute in order). Get,
// Iterate, Latest, View, Prove and View methods may run on any goroutine,
// also during Commit and Prune. Prune and Audit serialize themselves.
// Slices passed to Commit must not change until it returns; returned slices
// belong to the caller.
package state
