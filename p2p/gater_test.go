package p2p

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// connAddrs is a network.ConnMultiaddrs for gater tests.
type connAddrs struct{ local, remote ma.Multiaddr }

func (c connAddrs) LocalMultiaddr() ma.Multiaddr  { return c.local }
func (c connAddrs) RemoteMultiaddr() ma.Multiaddr { return c.remote }

func TestGaterDecisions(t *testing.T) {
	mustAddr := func(s string) ma.Multiaddr {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	lo := mustAddr("/ip4/127.0.0.1/tcp/4001")
	lo6 := mustAddr("/ip6/::1/tcp/4001")
	pub := mustAddr("/ip4/192.0.2.7/tcp/4001")
	lan := mustAddr("/ip4/10.1.2.3/udp/4001/quic-v1")
	dns := mustAddr("/dns4/localhost/tcp/4001")
	self, member, stranger := peer.ID("self"), peer.ID("member"), peer.ID("stranger")

	open := newGater(NewConfig(testKey(0)), self, NewMetrics())
	perm := newGater(NewConfig(testKey(0)).WithAllowedPeers(member), self, NewMetrics())
	wide := newGater(NewConfig(testKey(0)).WithLoopbackOnly(false).WithAllowedPeers(member), self, NewMetrics())

	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"open: dial any peer", open.InterceptPeerDial(stranger), true},
		{"open: dial loopback", open.InterceptAddrDial(stranger, lo), true},
		{"open: dial ::1", open.InterceptAddrDial(stranger, lo6), true},
		{"open: dial public", open.InterceptAddrDial(stranger, pub), false},
		{"open: dial lan", open.InterceptAddrDial(stranger, lan), false},
		{"open: dial dns", open.InterceptAddrDial(stranger, dns), false},
		{"open: accept loopback", open.InterceptAccept(connAddrs{lo, lo}), true},
		{"open: accept from public", open.InterceptAccept(connAddrs{lo, pub}), false},
		{"open: accept on public", open.InterceptAccept(connAddrs{pub, lo}), false},
		{"open: secured stranger", open.InterceptSecured(network.DirInbound, stranger, connAddrs{lo, lo}), true},
		{"perm: dial member", perm.InterceptPeerDial(member), true},
		{"perm: dial self", perm.InterceptPeerDial(self), true},
		{"perm: dial stranger", perm.InterceptPeerDial(stranger), false},
		{"perm: secured member in", perm.InterceptSecured(network.DirInbound, member, connAddrs{lo, lo}), true},
		{"perm: secured stranger in", perm.InterceptSecured(network.DirInbound, stranger, connAddrs{lo, lo}), false},
		{"perm: secured stranger out", perm.InterceptSecured(network.DirOutbound, stranger, connAddrs{lo, lo}), false},
		{"wide: dial public", wide.InterceptAddrDial(member, pub), true},
		{"wide: accept public", wide.InterceptAccept(connAddrs{pub, pub}), true},
		{"wide: secured stranger", wide.InterceptSecured(network.DirInbound, stranger, connAddrs{pub, pub}), false},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: allowed = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// Every refusal above is counted once.
	refusals := 0
	for _, tc := range cases {
		if !tc.want {
			refusals++
		}
	}
	if got := open.metrics.Gated.Load() + perm.metrics.Gated.Load() + wide.metrics.Gated.Load(); got != uint64(refusals) {
		t.Errorf("gated counter = %d, want %d", got, refusals)
	}
}

func TestRateLimiterIsPerPeerAndKind(t *testing.T) {
	// A rate far below one token per test run makes the burst the only
	// budget, so the test does not depend on timing.
	r := newRateLimiter(1e-9, 3)
	a, b := peer.ID("a"), peer.ID("b")
	for i := 0; i < 3; i++ {
		if !r.allow(a, "votes") {
			t.Fatalf("message %d within the burst refused", i)
		}
	}
	if r.allow(a, "votes") {
		t.Fatal("message over the burst allowed")
	}
	if !r.allow(b, "votes") || !r.allow(a, "headers") {
		t.Fatal("another peer or another kind shares a's bucket")
	}
	if r.size() != 3 {
		t.Fatalf("buckets = %d, want 3", r.size())
	}
	r.forget(a)
	if r.size() != 1 {
		t.Fatalf("after forget(a): buckets = %d, want 1", r.size())
	}
}
