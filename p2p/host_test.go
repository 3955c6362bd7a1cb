package p2p

import (
	"crypto/ed25519"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"
)

// TestDiscoveryBootstrapAndDHT: four hosts on 127.0.0.1 (TCP and QUIC)
// find each other from one bootstrap peer through the private DHT, and
// every address involved is 127.0.0.1.
func TestDiscoveryBootstrapAndDHT(t *testing.T) {
	ctx := testCtx(t)
	boot := newHost(t, NewConfig(testKey(0)).WithDHT(true))
	hosts := []*Host{boot}
	for i := 1; i < 4; i++ {
		hosts = append(hosts, newHost(t, NewConfig(testKey(i)).WithDHT(true).WithBootstrap(boot.AddrInfo())))
	}
	for _, h := range hosts[1:] {
		if err := h.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	waitFor(t, "the bootstrap peer's routing table to hold the other three, and theirs the bootstrap peer", func() bool {
		for _, h := range hosts[1:] {
			if h.RoutingTableSize() == 0 {
				return false
			}
		}
		return boot.RoutingTableSize() == 3
	})
	// Each non-bootstrap host looks every other one up through the DHT
	// and connects to the addresses it learnt. The only address any host
	// was given is the bootstrap peer's, so every connection between the
	// other three comes from the DHT: from FindPeer here, or from the
	// routing-table refresh that Bootstrap started (then FindPeer answers
	// from the live connection, whose addresses identify may still be
	// filling in).
	for _, h := range hosts[1:] {
		for _, other := range hosts[1:] {
			if other == h {
				continue
			}
			pi, err := h.FindPeer(ctx, other.ID())
			if err != nil {
				t.Fatalf("FindPeer: %v", err)
			}
			if len(pi.Addrs) == 0 && h.host.Network().Connectedness(other.ID()) != network.Connected {
				t.Fatalf("FindPeer returned no addresses for %s", other.ID())
			}
			if err := h.Connect(ctx, pi); err != nil {
				t.Fatalf("connect to a DHT-found peer: %v", err)
			}
		}
	}
	for i, h := range hosts {
		if n := len(h.Peers()); n != 3 {
			t.Errorf("host %d has %d peers, want 3", i, n)
		}
		if len(h.Addrs()) != 2 {
			t.Errorf("host %d advertises %v, want one TCP and one QUIC address", i, h.Addrs())
		}
		for _, a := range h.Addrs() {
			assert127(t, "listen address", a)
		}
		for _, a := range h.host.Network().ListenAddresses() {
			assert127(t, "network listen address", a)
		}
		for _, c := range h.host.Network().Conns() {
			assert127(t, "remote address", c.RemoteMultiaddr())
			assert127(t, "local address", c.LocalMultiaddr())
		}
		for _, p := range h.host.Peerstore().PeersWithAddrs() {
			for _, a := range h.host.Peerstore().Addrs(p) {
				assert127(t, "peerstore address", a)
			}
		}
	}
	if _, err := newHost(t, testConfig(9)).FindPeer(ctx, boot.ID()); !errors.Is(err, ErrNoDHT) {
		t.Fatalf("FindPeer without DHT: %v, want ErrNoDHT", err)
	}
}

// TestLoopbackOnlyRefusesOtherAddresses: a loopback-only host does not dial
// a non-loopback address, neither through Connect nor through libp2p
// directly (the gater). The address is TEST-NET-1 and is never reached:
// the gater refuses before any packet is sent.
func TestLoopbackOnlyRefusesOtherAddresses(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, testConfig(0))
	id, err := PeerID(testKey(1).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	far, err := ma.NewMultiaddr("/ip4/192.0.2.1/tcp/4001")
	if err != nil {
		t.Fatal(err)
	}
	pi := peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{far}}
	if err := h.Connect(ctx, pi); !errors.Is(err, ErrNonLoopback) {
		t.Fatalf("Connect: %v, want ErrNonLoopback", err)
	}
	if err := h.host.Connect(ctx, pi); err == nil {
		t.Fatal("libp2p dialed a non-loopback address")
	}
	if h.metrics.Gated.Load() == 0 {
		t.Fatal("the gater did not count the refused dial")
	}
	if h.host.Network().Connectedness(id) == network.Connected {
		t.Fatal("connected to a non-loopback peer")
	}
}

// TestPermissionedSetRefusesStrangers: only configured peer ids connect,
// in either direction. An inbound stranger may finish its side of the
// handshake (the dialer completes first), but the guarded host refuses it
// at InterceptSecured, so the connection never reaches the guarded host's
// swarm: no Connected event, no streams.
func TestPermissionedSetRefusesStrangers(t *testing.T) {
	ctx := testCtx(t)
	member := newHost(t, testConfig(1))
	stranger := newHost(t, testConfig(2))
	guarded := newHost(t, testConfig(0).WithAllowedPeers(member.ID()))
	var sawStranger atomic.Bool
	guarded.host.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == stranger.ID() {
			sawStranger.Store(true)
		}
	}})
	const proto = "/kairos/test/permissioned/1"
	guarded.HandleDirect(proto, func(peer.ID, []byte) {})

	connect(t, member, guarded)
	_ = stranger.Connect(ctx, guarded.AddrInfo()) // may succeed on the dialer's side only
	if err := stranger.Send(ctx, guarded.ID(), proto, []byte("hello")); err == nil {
		t.Fatal("a stranger's frame was written to a guarded host")
	}
	if err := guarded.Connect(ctx, stranger.AddrInfo()); err == nil {
		t.Fatal("the guarded host dialed a peer outside the set")
	}
	waitFor(t, "the stranger's half-open connection to close", func() bool { return len(stranger.Peers()) == 0 })
	if sawStranger.Load() {
		t.Fatal("the guarded host accepted a connection from a peer outside the set")
	}
	if got := guarded.Peers(); len(got) != 1 || got[0] != member.ID() {
		t.Fatalf("guarded host's peers = %v, want only the member", got)
	}
	if guarded.metrics.Gated.Load() < 2 {
		t.Fatalf("gated = %d, want the inbound and the outbound refusal counted", guarded.metrics.Gated.Load())
	}
	if !guarded.host.ConnManager().IsProtected(member.ID(), "") {
		t.Fatal("the connection manager may trim a validator's connection")
	}
	if err := member.Send(ctx, guarded.ID(), proto, []byte("hello")); err != nil {
		t.Fatalf("a member cannot send: %v", err)
	}
}

func TestPeerIDIsTheValidatorKey(t *testing.T) {
	h := newHost(t, testConfig(3))
	id, err := PeerID(testKey(3).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if id != h.ID() {
		t.Fatalf("PeerID = %s, host id %s", id, h.ID())
	}
	if _, err := PeerID(ed25519.PublicKey{1, 2, 3}); !errors.Is(err, ErrConfig) {
		t.Fatalf("short key: %v, want ErrConfig", err)
	}
}

// TestAcceptsNoiseAndTLS: a peer that speaks only one of the two security
// protocols can connect, over TCP, and the connection uses it.
func TestAcceptsNoiseAndTLS(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, testConfig(0))
	for _, sec := range []struct {
		id  string
		new any
	}{{noise.ID, noise.New}, {libp2ptls.ID, libp2ptls.New}} {
		t.Run(sec.id, func(t *testing.T) {
			other, err := libp2p.New(libp2p.Security(sec.id, sec.new), libp2p.ListenAddrStrings(tcpOnly),
				libp2p.DisableRelay(), libp2p.DisableMetrics())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := other.Connect(ctx, h.AddrInfo()); err != nil {
				t.Fatal(err)
			}
			conns := other.Network().ConnsToPeer(h.ID())
			if len(conns) != 1 || string(conns[0].ConnState().Security) != sec.id {
				t.Fatalf("connections %v, want one secured by %s", conns, sec.id)
			}
		})
	}
}

// TestReconnectsLostBootstrapPeer: a dropped connection to a bootstrap peer
// comes back by itself, every time.
func TestReconnectsLostBootstrapPeer(t *testing.T) {
	boot := newHost(t, testConfig(0))
	h := newHost(t, testConfig(1).WithBootstrap(boot.AddrInfo()).WithReconnectInterval(20*time.Millisecond))
	var dials atomic.Int64 // new connections from h to boot
	h.host.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == boot.ID() {
			dials.Add(1)
		}
	}})
	if err := h.Bootstrap(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Count with >= rather than ==: libp2p may open more than one connection
	// to the same peer (TCP and QUIC, or a simultaneous dial), and ClosePeer
	// closes all of them; what matters is that a new one follows each loss.
	// The loss is made on h's side: how fast a remote close is noticed is
	// the transport's business (QUIC may take until its idle timeout).
	var seen int64
	for round := 0; round < 2; round++ {
		waitFor(t, "the connection to the bootstrap peer", func() bool { return dials.Load() > seen })
		seen = dials.Load()
		if err := h.host.Network().ClosePeer(boot.ID()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the bootstrap peer to be redialed", func() bool {
		return dials.Load() > seen && h.host.Network().Connectedness(boot.ID()) == network.Connected
	})
}
