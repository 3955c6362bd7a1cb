package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"golang.org/x/time/rate"
)

// newResourceManager builds the libp2p resource manager from a fixed limit
// set: libp2p's default scaling table plus its service limits (identify,
// ping, …), scaled to the configured memory and file-descriptor budget
// rather than to the machine (AutoScale), so every node enforces the same
// connection, stream and memory limits whatever it runs on. With the
// defaults (512 MiB, 1024 fds) that is, among others, at most ~1000
// concurrent system connections and a few hundred inbound streams per peer;
// the loopback subnet is exempt from libp2p's per-IP connection limits,
// which is what a one-machine devnet needs.
func newResourceManager(c Config) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.Scale(c.resourceMemory, c.resourceFDs)))
}

// rateKey names one token bucket.
type rateKey struct {
	peer peer.ID
	kind string
}

// rateLimiter keeps a token bucket per (peer, kind) for inbound messages.
// Buckets of a peer are forgotten when its last connection closes, so the
// map is bounded by connected peers × registered kinds, and both are
// bounded (resource manager, the caller's protocol set).
type rateLimiter struct {
	perSecond rate.Limit
	burst     int

	mu      sync.Mutex
	buckets map[rateKey]*rate.Limiter
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{perSecond: rate.Limit(perSecond), burst: burst, buckets: make(map[rateKey]*rate.Limiter)}
}

// allow takes one token from the bucket of (p, kind).
func (r *rateLimiter) allow(p peer.ID, kind string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := rateKey{p, kind}
	b, ok := r.buckets[k]
	if !ok {
		b = rate.NewLimiter(r.perSecond, r.burst)
		r.buckets[k] = b
	}
	return b.Allow()
}

// forget drops every bucket of p.
func (r *rateLimiter) forget(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.buckets {
		if k.peer == p {
			delete(r.buckets, k)
		}
	}
}

// size reports the number of buckets (for tests).
func (r *rateLimiter) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
