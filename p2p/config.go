package p2p

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Default limits. Each is a named constant so that the limit a peer can
// push against is visible in one place (STYLE.md rule 5).
const (
	// DefaultMaxFrameBytes caps one direct-stream message or request.
	DefaultMaxFrameBytes = 4 << 20
	// DefaultMaxResponseBytes caps one response (a batch of certificates,
	// transactions, a block or a checkpoint chunk).
	DefaultMaxResponseBytes = 16 << 20
	// DefaultMaxGossipBytes caps one gossip message at the pubsub layer;
	// each topic has its own, smaller or equal, cap checked by the validator.
	// It is the largest valid transaction (a code transaction,
	// types.DefaultTxLimits.MaxCodeTxBytes, 4 MiB) plus GossipEnvelopeBytes:
	// the transaction topic uses it as its cap, and a cap below the largest
	// valid transaction would leave every big deploy to the fetch path
	// (TestGossipCapCoversLargestTx keeps the two aligned). pubsub reads
	// the length prefix of an RPC and rejects it before allocating.
	DefaultMaxGossipBytes = 4<<20 + GossipEnvelopeBytes
	// GossipEnvelopeBytes is the room left for pubsub's own framing of a
	// message (sender, sequence number, signature, topic, RPC fields)
	// around the largest payload.
	GossipEnvelopeBytes = 64 << 10
	// DefaultIdleTimeout is how long an inbound direct stream may stay
	// silent between frames before it is closed.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultFrameTimeout bounds reading or writing one frame once started.
	DefaultFrameTimeout = 10 * time.Second
	// DefaultRequestTimeout bounds a whole request when the caller's context
	// has no earlier deadline, and a handler on the serving side.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultRatePerSecond and DefaultRateBurst size the per-(peer, kind)
	// token bucket for inbound messages.
	DefaultRatePerSecond = 2000
	DefaultRateBurst     = 4000
	// DefaultPeerOutboundQueue and DefaultValidateQueue raise gossipsub's
	// queues (32 by default): consensus.md measured losses at 5 000 msg/s
	// with the defaults and none with larger queues.
	DefaultPeerOutboundQueue = 1024
	DefaultValidateQueue     = 1024
	// DefaultSubscriptionBuffer is how many validated messages a
	// subscription holds for a slow reader before it drops (pubsub's
	// default is 32).
	DefaultSubscriptionBuffer = 1024
	// DefaultResourceMemoryBytes and DefaultResourceFDs are the fixed inputs
	// of the libp2p resource-manager limit set (see resources.go). They are
	// fixed rather than scaled to the machine so every node enforces the
	// same limits.
	DefaultResourceMemoryBytes = 512 << 20
	DefaultResourceFDs         = 1024
	// DefaultReconnectInterval is how often a host redials bootstrap peers
	// it has lost (a restarted validator, a dropped connection).
	DefaultReconnectInterval = 10 * time.Second
	// DHTProtocolPrefix keeps our DHT apart from the public IPFS DHT.
	DHTProtocolPrefix = "/kairos"
)

// DefaultListenAddrs listen on loopback only, TCP and QUIC, on ports chosen
// by the kernel.
var DefaultListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// Config describes a Host. It is immutable: every WithX method returns a
// modified copy, so a Config can be shared and reused safely. The zero
// Config is not usable; start from NewConfig.
type Config struct {
	key          ed25519.PrivateKey
	listenAddrs  []string
	loopbackOnly bool
	bootstrap    []peer.AddrInfo
	allowedPeers []peer.ID // nil: any peer may connect

	dht          bool
	mdns         bool
	natPortMap   bool
	relay        bool
	holePunching bool
	autoNAT      bool

	maxFrameBytes    int
	maxResponseBytes int
	maxGossipBytes   int
	idleTimeout      time.Duration
	frameTimeout     time.Duration
	requestTimeout   time.Duration
	reconnect        time.Duration // 0: never redial
	ratePerSecond    float64
	rateBurst        int
	peerOutbound     int
	validateQueue    int
	subBuffer        int
	resourceMemory   int64
	resourceFDs      int

	logger  *slog.Logger
	metrics *Metrics
}

// NewConfig returns the default configuration for a host whose identity is
// key (the validator's ed25519 key): loopback only, listening on
// DefaultListenAddrs, no bootstrap peers (lost ones are redialed every
// DefaultReconnectInterval), no DHT, no mDNS, no NAT port
// mapping, no relay, no hole punching, no AutoNAT, any peer id accepted, and
// the Default* limits.
func NewConfig(key ed25519.PrivateKey) Config {
	return Config{
		key:              key,
		listenAddrs:      slices.Clone(DefaultListenAddrs),
		loopbackOnly:     true,
		maxFrameBytes:    DefaultMaxFrameBytes,
		maxResponseBytes: DefaultMaxResponseBytes,
		maxGossipBytes:   DefaultMaxGossipBytes,
		idleTimeout:      DefaultIdleTimeout,
		frameTimeout:     DefaultFrameTimeout,
		requestTimeout:   DefaultRequestTimeout,
		reconnect:        DefaultReconnectInterval,
		ratePerSecond:    DefaultRatePerSecond,
		rateBurst:        DefaultRateBurst,
		peerOutbound:     DefaultPeerOutboundQueue,
		validateQueue:    DefaultValidateQueue,
		subBuffer:        DefaultSubscriptionBuffer,
		resourceMemory:   DefaultResourceMemoryBytes,
		resourceFDs:      DefaultResourceFDs,
		logger:           slog.New(slog.DiscardHandler),
	}
}

// WithListenAddrs replaces the listen multiaddrs.
func (c Config) WithListenAddrs(addrs ...string) Config {
	c.listenAddrs = slices.Clone(addrs)
	return c
}

// WithLoopbackOnly sets whether the host is confined to loopback addresses
// (default true). Only a production node on a real network turns it off.
func (c Config) WithLoopbackOnly(on bool) Config {
	c.loopbackOnly = on
	return c
}

// WithBootstrap sets the peers Bootstrap connects to and seeds the DHT with.
func (c Config) WithBootstrap(peers ...peer.AddrInfo) Config {
	c.bootstrap = slices.Clone(peers)
	return c
}

// WithAllowedPeers makes the network permissioned: only these peer ids may
// connect, in either direction. The host's own id need not be listed.
// Calling it with no ids removes the restriction.
func (c Config) WithAllowedPeers(ids ...peer.ID) Config {
	if len(ids) == 0 {
		c.allowedPeers = nil
	} else {
		c.allowedPeers = slices.Clone(ids)
	}
	return c
}

// WithDHT runs a Kademlia DHT in server mode under DHTProtocolPrefix,
// seeded only with the bootstrap peers.
func (c Config) WithDHT(on bool) Config { c.dht = on; return c }

// WithMDNS turns on mDNS discovery on the local network. Refused for a
// loopback-only host.
func (c Config) WithMDNS(on bool) Config { c.mdns = on; return c }

// WithNATPortMap turns on UPnP/NAT-PMP port mapping. Refused for a
// loopback-only host.
func (c Config) WithNATPortMap(on bool) Config { c.natPortMap = on; return c }

// WithRelay turns on circuit-relay dialing and automatic relays (static
// relays are the bootstrap peers). Refused for a loopback-only host.
func (c Config) WithRelay(on bool) Config { c.relay = on; return c }

// WithHolePunching turns on hole punching (needs relays). Refused for a
// loopback-only host.
func (c Config) WithHolePunching(on bool) Config { c.holePunching = on; return c }

// WithAutoNAT turns on AutoNAT reachability probing. When off, the host
// declares itself privately reachable and never probes. Refused for a
// loopback-only host.
func (c Config) WithAutoNAT(on bool) Config { c.autoNAT = on; return c }

// WithMaxFrameBytes caps one direct message or request.
func (c Config) WithMaxFrameBytes(n int) Config { c.maxFrameBytes = n; return c }

// WithMaxResponseBytes caps one response.
func (c Config) WithMaxResponseBytes(n int) Config { c.maxResponseBytes = n; return c }

// WithMaxGossipBytes caps one gossip message for every topic.
func (c Config) WithMaxGossipBytes(n int) Config { c.maxGossipBytes = n; return c }

// WithTimeouts sets the idle, per-frame and request timeouts.
func (c Config) WithTimeouts(idle, frame, request time.Duration) Config {
	c.idleTimeout, c.frameTimeout, c.requestTimeout = idle, frame, request
	return c
}

// WithReconnectInterval sets how often lost bootstrap peers are redialed;
// zero turns redialing off.
func (c Config) WithReconnectInterval(d time.Duration) Config { c.reconnect = d; return c }

// WithRateLimit sets the inbound token bucket per (peer, kind).
func (c Config) WithRateLimit(perSecond float64, burst int) Config {
	c.ratePerSecond, c.rateBurst = perSecond, burst
	return c
}

// WithQueues sets gossipsub's per-peer outbound and validation queue sizes
// and each subscription's buffer.
func (c Config) WithQueues(peerOutbound, validate, subscription int) Config {
	c.peerOutbound, c.validateQueue, c.subBuffer = peerOutbound, validate, subscription
	return c
}

// WithResources sets the memory and file-descriptor budget from which the
// resource-manager limits are derived.
func (c Config) WithResources(memoryBytes int64, fds int) Config {
	c.resourceMemory, c.resourceFDs = memoryBytes, fds
	return c
}

// WithLogger sets the logger (default: discard).
func (c Config) WithLogger(l *slog.Logger) Config { c.logger = l; return c }

// WithMetrics makes the host count into m (default: a fresh Metrics).
func (c Config) WithMetrics(m *Metrics) Config { c.metrics = m; return c }

// validate checks the rules that New relies on. It does not look at the
// network.
func (c Config) validate() error {
	if len(c.key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: need an ed25519 private key of %d bytes, have %d", ErrConfig, ed25519.PrivateKeySize, len(c.key))
	}
	if len(c.listenAddrs) == 0 {
		return fmt.Errorf("%w: no listen addresses", ErrConfig)
	}
	if c.loopbackOnly {
		for _, on := range []struct {
			name string
			on   bool
		}{{"mDNS", c.mdns}, {"NAT port mapping", c.natPortMap}, {"relay", c.relay}, {"hole punching", c.holePunching}, {"AutoNAT", c.autoNAT}} {
			if on.on {
				return fmt.Errorf("%w: %s on a loopback-only host", ErrConfig, on.name)
			}
		}
	}
	if c.holePunching && !c.relay {
		return fmt.Errorf("%w: hole punching needs relays", ErrConfig)
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"max frame bytes", int64(c.maxFrameBytes)}, {"max response bytes", int64(c.maxResponseBytes)},
		{"max gossip bytes", int64(c.maxGossipBytes)}, {"idle timeout", int64(c.idleTimeout)},
		{"frame timeout", int64(c.frameTimeout)}, {"request timeout", int64(c.requestTimeout)},
		{"rate burst", int64(c.rateBurst)}, {"peer outbound queue", int64(c.peerOutbound)},
		{"validate queue", int64(c.validateQueue)}, {"subscription buffer", int64(c.subBuffer)}, {"resource memory", c.resourceMemory},
		{"resource fds", int64(c.resourceFDs)},
	} {
		if n.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, have %d", ErrConfig, n.name, n.v)
		}
	}
	if c.reconnect < 0 {
		return fmt.Errorf("%w: negative reconnect interval", ErrConfig)
	}
	if c.ratePerSecond <= 0 {
		return fmt.Errorf("%w: rate must be positive", ErrConfig)
	}
	if c.logger == nil {
		return fmt.Errorf("%w: nil logger", ErrConfig)
	}
	return nil
}
