package p2p

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Counters count the messages of one kind (a topic name or a protocol id).
// Every field is updated atomically; read them with Load.
type Counters struct {
	// In counts messages accepted from peers (delivered to a handler or to
	// gossip subscribers); for requests, requests served.
	In atomic.Uint64
	// Out counts messages sent or published; for requests, requests made.
	Out atomic.Uint64
	// Dropped counts inbound messages over the per-peer rate limit.
	Dropped atomic.Uint64
	// Rejected counts gossip messages the validator rejected or ignored.
	Rejected atomic.Uint64
	// Oversize counts messages or frames above their cap.
	Oversize atomic.Uint64
	// Duplicates counts gossip messages that arrived again after their
	// first copy (same sha256 id) and were dropped by pubsub.
	Duplicates atomic.Uint64
	// Throttled counts gossip messages dropped before validation because
	// the validation queue was full.
	Throttled atomic.Uint64
	// SlowSubscriber counts validated gossip messages a subscription's
	// buffer had no room for.
	SlowSubscriber atomic.Uint64
	// Timeouts counts streams that missed a deadline.
	Timeouts atomic.Uint64
	// Errors counts other stream failures (resets, malformed frames,
	// truncation, handler errors).
	Errors atomic.Uint64
}

// Metrics holds the Counters of every kind a host has seen plus host-wide
// counters. node/ exports them to Prometheus; this package does not import
// it. A Metrics may be shared by several hosts.
type Metrics struct {
	// Gated counts connections refused by the connection gater.
	Gated atomic.Uint64
	// GossipQueueDrops counts gossipsub RPCs dropped because a peer's
	// outbound queue was full.
	GossipQueueDrops atomic.Uint64

	mu    sync.Mutex
	kinds map[string]*Counters
}

// NewMetrics returns empty Metrics.
func NewMetrics() *Metrics { return &Metrics{kinds: make(map[string]*Counters)} }

// Kind returns the counters of kind, creating them on first use. Kinds are
// registered by this package (topics joined, protocols handled or used),
// never by peers, so the map stays bounded by the caller's protocol set.
func (m *Metrics) Kind(kind string) *Counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.kinds[kind]
	if !ok {
		c = new(Counters)
		m.kinds[kind] = c
	}
	return c
}

// KindCounters is a point-in-time copy of one kind's Counters.
type KindCounters struct {
	Kind                                  string
	In, Out, Dropped, Rejected, Oversize  uint64
	Duplicates, Throttled, SlowSubscriber uint64
	Timeouts, Errors                      uint64
}

// Snapshot copies every kind's counters, sorted by kind.
func (m *Metrics) Snapshot() []KindCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]KindCounters, 0, len(m.kinds))
	for k, c := range m.kinds {
		out = append(out, KindCounters{
			Kind: k, In: c.In.Load(), Out: c.Out.Load(), Dropped: c.Dropped.Load(),
			Rejected: c.Rejected.Load(), Oversize: c.Oversize.Load(), Duplicates: c.Duplicates.Load(),
			Throttled: c.Throttled.Load(), SlowSubscriber: c.SlowSubscriber.Load(),
			Timeouts: c.Timeouts.Load(), Errors: c.Errors.Load(),
		})
	}
	slices.SortFunc(out, func(a, b KindCounters) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}
