// Package api serves a node's HTTP/JSON interface, versioned under /v1:
//
//	POST /v1/txs                              submit {"tx": "<hex canonical bytes>"} → 202 {"id"}
//	GET  /v1/txs/{id}                         pending, or executed with height and receipt
//	GET  /v1/blocks/{height}                  an executed block and the state root after it
//	GET  /v1/blocks/{height}/wait?timeout=    the same, answered as soon as the block is
//	                                          served, or 404 wait_timeout (wait.go)
//	GET  /v1/state/{module}/{key}?height=&prove=1  value (hex key) and Merkle proof
//	GET  /v1/status                           the node's progress
//	GET  /v1/checkpoints/latest               the highest checkpoint certificate
//	POST /v1/simulate                         run a (possibly unsigned) tx on the latest state:
//	                                          receipt and the exact access list; writes nothing
//	GET  /v1/modules/{address}                a module instance: code CID, admin, code size
//	GET  /v1/events?from=height:index         Server-Sent Events of executed blocks, in chain
//	                                          order; each id is the cursor that resumes after it
//	GET  /metrics                             Prometheus (when the backend has a Collector)
//
// # Invariants
//
//   - Every error is JSON {"code", "message"} with a stable code (see the
//     Code* constants); the HTTP status follows from the code.
//   - No input makes a handler panic: bodies are capped (MaxBodyBytes) and
//     decoded strictly, path parameters are parsed before use, and a panic
//     that escapes anyway is turned into code "internal" (and logged) by
//     the recovery wrapper, never a crashed server.
//   - The API only reads the node and submits transactions; it never
//     touches consensus state. Simulation runs on the store's latest
//     version through the executor and keeps no writes.
//   - The event sequence is a function of the chain: events of block h in
//     transaction order, then of h+1, so a cursor means the same position
//     on every honest node, and a stream resumed from a cursor neither
//     skips nor repeats. Open streams are capped (MaxEventStreams).
//   - A block wait holds a request until the node serves the height, at
//     most MaxWait; held waits are capped (MaxWaiters).
//
// Servers built by Handler are meant for 127.0.0.1 in devnets; exposing one
// publicly needs a reverse proxy with its own limits.
package api
