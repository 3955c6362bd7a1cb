// Package p2p is the libp2p layer of a Kairos node: host, discovery, gossip
// topics, direct streams, request/response sync, connection gating and rate
// limits. Tests and the devnet listen on and dial only 127.0.0.1.
package p2p
