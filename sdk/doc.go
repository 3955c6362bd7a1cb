// Package sdk is the Go client SDK for Kairos applications: keys, building
// and signing transactions, simulation, submission, and proof-verified
// queries. It never imports the node (enforced by internal/depcheck): it
// speaks the node's HTTP API (node/api) as any wallet would, and mirrors
// the few formats it must check itself.
//
// Invariants:
//
//   - A private key never leaves the process: transactions are signed
//     locally and only their canonical bytes are sent.
//   - A value returned by Query is trusted only through a chain of checks
//     the SDK performs itself: the latest checkpoint certificate must carry
//     valid ed25519 signatures of validators of the Committee given to the
//     client, weighing at least its quorum, and the Merkle proof of the
//     value must verify (types.Verify) against the certified state root at
//     the certified height. The API server is not trusted.
//   - Every answer read from the API is bounded (MaxResponseBytes) and a
//     malformed answer is an error wrapping ErrResponse, never a panic.
//
// The mirrored formats (checkpoint votes' signing hash, the accounts and
// instance addresses) are checked against the node's own code by the
// integration tests in node/devnet, which may import both.
package sdk
