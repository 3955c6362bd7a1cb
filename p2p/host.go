package p2p

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// mdnsServiceName is the mDNS service tag, so Kairos nodes only find each
// other and not every libp2p node on the LAN.
const mdnsServiceName = "kairos"

// Host is a running libp2p host with Kairos' gossip topics, direct streams
// and request/response protocols. Build it with New; stop it with Close.
type Host struct {
	cfg     Config
	host    host.Host
	ps      *pubsub.PubSub
	dht     *dht.IpfsDHT // nil unless Config.WithDHT
	mdns    mdns.Service // nil unless Config.WithMDNS
	metrics *Metrics
	limiter *rateLimiter
	notifee *network.NotifyBundle

	ctx    context.Context // cancelled by Close; stops pubsub and the DHT
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines started by this package

	// The caller's handlers (direct, request, gossip validators) run on
	// libp2p's goroutines, which Close does not wait for. They enter
	// through enter/leave: Close stops new ones and waits for those
	// running, so once it returns the caller may release what they use
	// (a node closes its datastore; pebble panics when used after that).
	hmu      sync.Mutex
	hstopped bool // under hmu
	inflight sync.WaitGroup

	// mu guards the fields below. Join holds it while waiting for
	// pubsub's event loop, so nothing called from that loop (the tracer)
	// may take it; the tracer reads joined instead.
	mu     sync.Mutex
	closed bool
	topics map[string]*Topic
	out    map[outKey]*outStream
	joined sync.Map // topic name -> *Counters, for the tracer
}

// New validates cfg and starts a host listening on its addresses.
func New(cfg Config) (*Host, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	listen := make([]ma.Multiaddr, 0, len(cfg.listenAddrs))
	for _, s := range cfg.listenAddrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %v", ErrConfig, s, err)
		}
		listen = append(listen, a)
	}
	if cfg.loopbackOnly {
		if err := checkLoopback(listen); err != nil {
			return nil, err
		}
		for _, b := range cfg.bootstrap {
			if err := checkLoopback(b.Addrs); err != nil {
				return nil, fmt.Errorf("bootstrap peer %s: %w", b.ID, err)
			}
		}
	}
	key, err := crypto.UnmarshalEd25519PrivateKey(cfg.key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	m := cfg.metrics
	if m == nil {
		m = NewMetrics()
	}
	rm, err := newResourceManager(cfg)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen...),
		// Naming transports and security replaces libp2p's defaults
		// (websocket, webtransport, webrtc are not wanted).
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.ConnectionGater(newGater(cfg, self, m)),
		libp2p.ResourceManager(rm),
		// libp2p would register into prometheus' global registry, which
		// fails for a second host in one process (devnet, tests).
		libp2p.DisableMetrics(),
	}
	if cfg.loopbackOnly {
		opts = append(opts, libp2p.AddrsFactory(loopbackAddrs))
	}
	if cfg.relay {
		opts = append(opts, libp2p.EnableRelay(), libp2p.EnableAutoRelayWithStaticRelays(cfg.bootstrap))
	} else {
		opts = append(opts, libp2p.DisableRelay())
	}
	if cfg.natPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if cfg.holePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if cfg.autoNAT {
		opts = append(opts, libp2p.EnableAutoNATv2())
	} else {
		// A forced reachability stops the AutoNAT client from probing.
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	lh, err := libp2p.New(opts...)
	if err != nil {
		_ = rm.Close() // idempotent; libp2p closes it on some failures only
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg: cfg, host: lh, metrics: m, ctx: ctx, cancel: cancel,
		limiter: newRateLimiter(cfg.ratePerSecond, cfg.rateBurst),
		topics:  make(map[string]*Topic),
		out:     make(map[outKey]*outStream),
	}
	// The connection manager trims connections above its high-water
	// mark; validators of a permissioned set must never be the ones cut.
	for _, id := range cfg.allowedPeers {
		lh.ConnManager().Protect(id, "kairos-validator")
	}
	h.notifee = &network.NotifyBundle{DisconnectedF: h.disconnected}
	lh.Network().Notify(h.notifee)
	if err := h.start(); err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// start brings up gossipsub, the DHT and mDNS on the libp2p host.
func (h *Host) start() error {
	var err error
	h.ps, err = pubsub.NewGossipSub(h.ctx, h.host,
		// Payloads are signed transactions and certificates: a second,
		// libp2p-level signature per message only costs CPU, and without
		// an author and sequence number the id must come from the data.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return string(MessageID(m.Data)) }),
		// A publisher sends its own messages to every subscribed peer,
		// not only to its mesh: validator sets are small, and a fresh
		// transaction then reaches everyone in one hop, also while the
		// mesh is still forming (at start, after reconnects).
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerOutboundQueueSize(h.cfg.peerOutbound),
		pubsub.WithValidateQueueSize(h.cfg.validateQueue),
		pubsub.WithMaxMessageSize(h.cfg.maxGossipBytes),
		pubsub.WithLogger(h.cfg.logger),
		pubsub.WithRawTracer(tracer{h}),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	if h.cfg.dht {
		opts := []dht.Option{
			dht.Mode(dht.ModeServer),
			dht.ProtocolPrefix(DHTProtocolPrefix),
			dht.BootstrapPeers(h.cfg.bootstrap...),
			// Peer routing is all we use the DHT for; no provider or
			// value records are stored for peers.
			dht.DisableProviders(),
			dht.DisableValues(),
		}
		if h.cfg.loopbackOnly {
			opts = append(opts, dht.AddressFilter(loopbackAddrs))
		}
		if h.dht, err = dht.New(h.host, opts...); err != nil {
			return fmt.Errorf("p2p: dht: %w", err)
		}
	}
	if h.cfg.reconnect > 0 && len(h.cfg.bootstrap) > 0 {
		h.wg.Add(1)
		go h.reconnectLoop()
	}
	if h.cfg.mdns {
		h.mdns = mdns.NewMdnsService(h.host, mdnsServiceName, mdnsNotifee{h})
		if err := h.mdns.Start(); err != nil {
			return fmt.Errorf("p2p: mdns: %w", err)
		}
	}
	return nil
}

// reconnectLoop redials lost bootstrap peers every reconnect interval
// until Close. libp2p's dial backoff keeps an unreachable peer from being
// hammered.
func (h *Host) reconnectLoop() {
	defer h.wg.Done()
	tick := time.NewTicker(h.cfg.reconnect)
	defer tick.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-tick.C:
		}
		for _, b := range h.cfg.bootstrap {
			if b.ID == h.ID() || h.host.Network().Connectedness(b.ID) == network.Connected {
				continue
			}
			ctx, cancel := context.WithTimeout(h.ctx, h.cfg.requestTimeout)
			if err := h.Connect(ctx, b); err != nil {
				h.cfg.logger.Debug("p2p: redial failed", "peer", b.ID, "err", err)
			}
			cancel()
		}
	}
}

// mdnsNotifee connects to peers found by mDNS.
type mdnsNotifee struct{ h *Host }

func (n mdnsNotifee) HandlePeerFound(pi peer.AddrInfo) {
	if pi.ID == n.h.host.ID() || !n.h.goAdd() {
		return
	}
	go func() {
		defer n.h.wg.Done()
		ctx, cancel := context.WithTimeout(n.h.ctx, n.h.cfg.requestTimeout)
		defer cancel()
		if err := n.h.Connect(ctx, pi); err != nil {
			n.h.cfg.logger.Debug("p2p: mdns connect failed", "peer", pi.ID, "err", err)
		}
	}()
}

// goAdd registers a goroutine unless the host is closed.
func (h *Host) goAdd() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// MessageID is the gossip message id: sha256 of the data. The same bytes
// published twice, by anyone, are one message.
func MessageID(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// ID returns the host's peer id (derived from the validator key).
func (h *Host) ID() peer.ID { return h.host.ID() }

// Addrs returns the host's advertised listen addresses.
func (h *Host) Addrs() []ma.Multiaddr { return h.host.Addrs() }

// AddrInfo returns the id and addresses other hosts need to dial this one.
func (h *Host) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

// Metrics returns the host's counters.
func (h *Host) Metrics() *Metrics { return h.metrics }

// Peers returns the connected peers, sorted.
func (h *Host) Peers() []peer.ID {
	ps := h.host.Network().Peers()
	slices.SortFunc(ps, func(a, b peer.ID) int { return strings.Compare(string(a), string(b)) })
	return ps
}

// Connect dials pi (subject to the gater) and remembers its addresses.
func (h *Host) Connect(ctx context.Context, pi peer.AddrInfo) error {
	if h.cfg.loopbackOnly {
		if err := checkLoopback(pi.Addrs); err != nil {
			return err
		}
	}
	return h.host.Connect(ctx, pi)
}

// Bootstrap connects to the configured bootstrap peers and, with the DHT
// on, fills the routing table from them. It fails only if there were
// bootstrap peers and none could be reached.
func (h *Host) Bootstrap(ctx context.Context) error {
	var errs []error
	tried := 0
	for _, b := range h.cfg.bootstrap {
		if b.ID == h.ID() { // a shared validator list includes ourselves
			continue
		}
		tried++
		if err := h.Connect(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("bootstrap peer %s: %w", b.ID, err))
		}
	}
	if tried > 0 && len(errs) == tried {
		return errors.Join(errs...)
	}
	if h.dht != nil {
		return h.dht.Bootstrap(ctx)
	}
	return nil
}

// FindPeer looks id up: in the peerstore first, then in the DHT.
func (h *Host) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	if h.dht == nil {
		return peer.AddrInfo{}, ErrNoDHT
	}
	return h.dht.FindPeer(ctx, id)
}

// RoutingTableSize returns the number of peers in the DHT routing table
// (0 without the DHT).
func (h *Host) RoutingTableSize() int {
	if h.dht == nil {
		return 0
	}
	return h.dht.RoutingTable().Size()
}

// disconnected forgets per-peer state once the last connection to a peer
// closes.
func (h *Host) disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	if n.Connectedness(p) == network.Connected {
		return
	}
	h.limiter.forget(p)
	h.dropOutStreams(p)
}

// Close stops everything the host started: subscriptions, pubsub, the DHT,
// mDNS, open streams, the libp2p host and its resource manager. It is
// idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.hmu.Lock()
	h.hstopped = true
	h.hmu.Unlock()
	topics := make([]*Topic, 0, len(h.topics))
	for _, t := range h.topics {
		topics = append(topics, t)
	}
	h.mu.Unlock()

	var errs []error
	for _, t := range topics {
		t.close()
	}
	if h.mdns != nil {
		errs = append(errs, h.mdns.Close())
	}
	if h.dht != nil {
		errs = append(errs, h.dht.Close())
	}
	h.cancel()
	h.dropOutStreams("")
	h.host.Network().StopNotify(h.notifee)
	errs = append(errs, h.host.Close())
	h.wg.Wait()
	h.inflight.Wait()
	return errors.Join(errs...)
}

// enter reports whether a caller's handler may run (the host is not
// closing); if so the caller must call leave when the handler returns.
// Entering again from inside a handler (a local publish validated inline)
// is fine: it only counts.
func (h *Host) enter() bool {
	h.hmu.Lock()
	defer h.hmu.Unlock()
	if h.hstopped {
		return false
	}
	h.inflight.Add(1)
	return true
}

func (h *Host) leave() { h.inflight.Done() }

// deadline returns the earlier of ctx's deadline and now+d.
func deadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// PeerID returns the libp2p peer id of a validator's ed25519 public key,
// e.g. to build the permissioned set for WithAllowedPeers from the
// validator set.
func PeerID(pub ed25519.PublicKey) (peer.ID, error) {
	k, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return peer.IDFromPublicKey(k)
}
