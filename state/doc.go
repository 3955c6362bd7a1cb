// Package state is the versioned, content-addressed Merkle state store of
// Kairos, kept in a go-datastore (pebble by default).
//
// # Use
//
//	s, err := state.OpenPebble(dir, state.Options{KeepVersions: 100})
//	root, err := s.Commit(ctx, height, []state.Write{{Key: k, Value: v}}) // height = latest+1
//	root, wait, err := s.CommitAsync(ctx, height+1, ws) // root now; durable when wait() == nil
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
// is the state root and any node fetched by id checks its hashes. A record
// is stored under (born, id): born is the version that wrote it, and a slot
// names a child by both, so a lookup is one Get. An id that comes back
// (A → B → A) is stored again under its new born, as a record of its own.
// A leaf lives in its parent's slot as its state key and value hash; its key
// path and leaf hash are derived from them when a node is decoded, so the
// node's id covers them. A subtree with one leaf is never a node: the leaf
// moves up into the slot.
//
// # Module ids
//
// A node record and a flat index key name a leaf's module by a small
// store-local id (a uvarint) instead of its 32-byte address: the module
// table (modules.go,
// /kairos/m/<id> → address) holds one id per module, up to ModuleIDsMax;
// past it a leaf carries its address inline (id 0), so no commit fails for
// it. The writer that first writes a key of a module assigns its id, in
// sorted address order among the modules it brings, and persists it with
// the records: a commit (or Replace) in its own batch (without atomic
// batches, durably before it), an install or Seed in a synced batch before
// the chunk's records. Open loads the table before any node. A module
// without an id while ids are left has no flat index entries, so a read
// of it needs no datastore lookup; readers resolve ids concurrently with
// the writer that assigns them through a table published whole. Ids never leave the store (roots, proofs, snapshots and root
// records carry addresses), and the tree's hashes never see them: a node
// in memory keeps a leaf's module id in the leaf's entry and its value
// hash and key in its mem (not the address), and gives the leaf back
// whole, address included, to whatever reads it (node.at); a commit
// moves the leaves it does not read as they are (patchSlots).
//
// # Values: the flat index and the history
//
// A live value is stored once, in the flat index. The version d that
// replaces or deletes a leaf L of key k writes L's value as the history
// record (k's key path, d), in the batch that changes the index (the old
// value is the caller's hint, Write.Old, when it hashes to L's value hash;
// else it is read from the index, or from the writes of the version before
// while its write is in flight). A read of version v walks to the leaf,
// then takes the index's value if it hashes to the leaf's value hash, else
// the record of the first version d > v that changed k: k held L from v to
// d-1, so that record holds L's value, also after A → B → A or a deletion
// and re-creation. History records sort by key path, then version, so on
// pebble that record is one seek to (k's path, v+1) away, whatever the
// distance to the latest version (on the other backends, in-memory and
// leveldb, a point read per version from v+1 on). The index is
// read first, so a reader never meets an index newer than the history it
// then reads. A version's stale list names the key paths of the history
// records it wrote, and pruning the version deletes them one by one: only
// versions below it read them (format 3 kept the history by version first,
// one range delete per pruned version, and a seek per version between v and
// d; see RATIONALE.md, "Why is the history keyed by key path").
//
// # Datastore layout
//
//	/kairos/n/<born>/<id>                node record ('N'); born is 8 bytes big-endian
//	/kairos/h/<key path>/<version>       value of the key's leaf the version replaced or deleted (history)
//	/kairos/kv/<module id>/k<key>        latest value (flat index); the id a uvarint, or 0 and the address
//	/kairos/r/<height>                   root slot of a version
//	/kairos/c/<height>                   change set: (key, old, new), CBOR; only without atomic batches
//	/kairos/s/<stale_since>              stale list: (born, id) of the node records the version stopped using,
//	                                     key paths of the history records it wrote
//	/kairos/pin/<height>                 persistent pins (retained snapshot versions)
//	/kairos/m/<id>                       module table: the address of module id <id>
//	/kairos/latest, /kairos/min, /kairos/prunedone, /kairos/format
//	/kairos/snapimport/...               a snapshot import's staging area: manifest, chunk/<i> (a verified
//	                                     chunk's bytes), installing, progress
//
// Borns, ids, modules and keys are raw bytes with '.' and '/' escaped
// (keys.go), which keeps byte order. So node records sort by born first:
// each version's records come after all older ones, and pebble's flushes
// and compactions of them move whole files instead of merging random keys.
// History records sort by key path first, for the one-seek read above;
// they are written and deleted at random keys like the flat index.
// Open refuses a store of another format (ErrFormat); format 1 keyed nodes
// by id alone, format 2 kept each value in a value record too, format 3
// keyed the history by version first and held each module's address in
// node records and flat index keys. There is no migration: a store of an older format is
// replaced (state sync).
//
// # Invariants
//
//   - The root of a version depends only on its set of (key, value) pairs:
//     not on write order, batch splits, GOMAXPROCS or the backend.
//   - Each version is written by one durable batch (synced). On backends
//     whose batches are not atomic (Options.AtomicBatches false) the change
//     set is made durable before the batch and the latest pointer after it,
//     and Open undoes a torn commit: the flat index from the change set,
//     the node records by deleting the version's key prefix, the history
//     records by the change set's keys.
//   - Every node reachable from a retained root (versions min..latest) is
//     present, and so is the value of every leaf it holds: in the flat
//     index, or in the history record of the first version above it that
//     changed the leaf's key. Every history record of a version above the
//     prune progress is named by its version's stale list. Prune persists
//     the new minimum first, refuses readers below it with ErrPruned, and
//     deletes the records named by the stale lists up to it: a record no
//     longer used at version v is used by no later version (a commit
//     reuses only records of the version before it and writes new ones
//     under its own born), so no delete needs a check, and Prune never
//     touches the keys a concurrent Commit writes. On pebble its delete
//     chunks are not synced: the version's synced progress mark makes them
//     durable, and a version whose mark is lost is pruned again.
//   - Every module id that a durable node record names is in the module
//     table: a commit's ids are in its batch, an install's are synced
//     before its records. The ids a torn commit wrote may stay; no record
//     names them after recovery, and they are never reassigned. A record
//     naming an id the table lacks is ErrCorrupt (Audit: missing).
//   - An open View pins its version; Prune never moves the horizon past a
//     pinned version, so a View never meets a missing node.
//   - A missing or mismatching node is ErrCorrupt, never a panic. A Commit
//     that fails while writing leaves the store refusing commits
//     (ErrNeedsReopen) until Open has recovered it.
//
// # Concurrency
//
// Commit calls are serialized by the caller (blocks execute in order).
// CommitAsync returns once the tree is updated and writes the version in
// the background, so that the next block's update runs while it is
// written and synced; the versions still reach the datastore one at a time
// in height order, and a version is visible to readers (and durable) only
// when its write is over. At most one write is outstanding when
// CommitAsync returns; every other writer (Install, Seed, Replace), Audit
// and Close first wait for it. A failed write fails every later version.
// On pebble, Get answers a key it has read twice from a bounded cache of
// latest values (valuecache.go), which every writer of the flat index
// keeps exact: a commit forgets the keys it changes, Install, Seed and
// Replace empty it, and nothing read during a write is cached.
// Get, Iterate, Latest, View, Prove and View methods may run on any
// goroutine, also during Commit and Prune. Prune and Audit serialize
// themselves. Slices passed to Commit must not change until it returns
// (to CommitAsync, until its wait returns); returned slices belong to the
// caller.
package state
