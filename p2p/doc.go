// Package p2p is the libp2p layer of a Kairos node: host construction,
// discovery (bootstrap peers and a private Kademlia DHT), gossipsub topics,
// length-prefixed direct streams, request/response sync, connection gating,
// resource limits and per-peer inbound rate limits. It is a generic
// transport: messages are opaque bytes (already canonical CBOR from types)
// identified by a kind (a topic name or a protocol id), and every validation
// decision above size and rate is the caller's, through callbacks.
//
// # Usage
//
//	cfg := p2p.NewConfig(validatorKey).WithBootstrap(peers...).WithDHT(true)
//	h, err := p2p.New(cfg)
//	defer h.Close()
//	h.Bootstrap(ctx)
//	txs, _ := h.Join("kairos/txs/1", 64<<10, validateTx)
//	h.HandleDirect("/kairos/votes/1", onVote)
//	h.HandleRequest("/kairos/fetch-cert/1", serveCert)
//	resp, err := h.Request(ctx, peerID, "/kairos/fetch-cert/1", id)
//
// # Invariants
//
//   - Network hygiene: a Config is loopback-only unless WithLoopbackOnly(false)
//     is called. A loopback-only host listens only on loopback addresses
//     (New refuses others), advertises only loopback addresses, and its
//     connection gater refuses to dial or accept any non-loopback address.
//     mDNS, NAT port mapping, relays, hole punching and AutoNAT probing are
//     off unless turned on, and New refuses to turn them on for a
//     loopback-only host. The DHT uses the private protocol prefix /kairos
//     and never the public bootstrap list.
//   - Permissioned sets: when WithAllowedPeers is given, a connection to or
//     from any other peer id is refused at the secured handshake
//     (InterceptSecured) and before dialing (InterceptPeerDial), and the
//     connection manager never trims the allowed peers' connections.
//   - Every length a peer controls is capped before it is allocated: a frame
//     length prefix above the cap resets the stream without allocating
//     (ErrFrameTooLarge); gossip messages above the topic cap are rejected by
//     the validator; responses above MaxResponseBytes are refused on both
//     sides.
//   - Every stream read and write has a deadline (idle, per-frame, request),
//     so a slow or silent peer costs at most one goroutine for a bounded time.
//   - Inbound messages are rate limited per (peer, kind) by a token bucket;
//     a message over the rate is dropped and counted, never queued.
//   - Nothing in this package influences consensus ordering: time is used
//     only for deadlines and rate limits.
//   - Close stops every goroutine the host started (tested with goleak).
//
// # Metrics
//
// Metrics holds atomic Counters per kind (in, out, dropped by rate,
// rejected by the validator, oversize, gossip duplicates, validation-queue
// throttling, slow subscribers, timeouts, errors) plus host-wide counters
// (gated connections, gossip queue drops). node/ exports them; this
// package does not import Prometheus.
//
// # Concurrency
//
// A Host is safe for concurrent use. Handlers and validators are called
// concurrently from libp2p goroutines; the byte slices they receive are
// freshly allocated and owned by the callee.
package p2p
