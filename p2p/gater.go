package p2p

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// gater enforces network hygiene and the permissioned peer set at every
// stage libp2p offers: before dialing a peer or an address, on accepting a
// raw connection, and after the security handshake (the first moment an
// inbound peer's id is authenticated).
type gater struct {
	loopbackOnly bool
	allowed      map[peer.ID]struct{} // nil: any peer
	self         peer.ID
	metrics      *Metrics
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func newGater(c Config, self peer.ID, m *Metrics) *gater {
	g := &gater{loopbackOnly: c.loopbackOnly, self: self, metrics: m}
	if c.allowedPeers != nil {
		g.allowed = make(map[peer.ID]struct{}, len(c.allowedPeers))
		for _, id := range c.allowedPeers {
			g.allowed[id] = struct{}{}
		}
	}
	return g
}

// isLoopback reports whether a starts with a loopback IP (127.0.0.0/8 or
// ::1). DNS names, relay circuits and anything else are not loopback.
func isLoopback(a ma.Multiaddr) bool { return a != nil && manet.IsIPLoopback(a) }

// loopbackAddrs returns the loopback addresses of as, in a new slice.
func loopbackAddrs(as []ma.Multiaddr) []ma.Multiaddr {
	return slices.DeleteFunc(slices.Clone(as), func(a ma.Multiaddr) bool { return !isLoopback(a) })
}

// checkLoopback returns ErrNonLoopback for the first non-loopback address.
func checkLoopback(addrs []ma.Multiaddr) error {
	for _, a := range addrs {
		if !isLoopback(a) {
			return fmt.Errorf("%w: %s", ErrNonLoopback, a)
		}
	}
	return nil
}

func (g *gater) refuse() bool {
	g.metrics.Gated.Add(1)
	return false
}

func (g *gater) peerAllowed(p peer.ID) bool {
	if g.allowed == nil || p == g.self {
		return true
	}
	_, ok := g.allowed[p]
	return ok
}

func (g *gater) addrAllowed(a ma.Multiaddr) bool { return !g.loopbackOnly || isLoopback(a) }

func (g *gater) InterceptPeerDial(p peer.ID) bool {
	return g.peerAllowed(p) || g.refuse()
}

func (g *gater) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	return g.addrAllowed(a) || g.refuse()
}

func (g *gater) InterceptAccept(cm network.ConnMultiaddrs) bool {
	return (g.addrAllowed(cm.RemoteMultiaddr()) && g.addrAllowed(cm.LocalMultiaddr())) || g.refuse()
}

func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, cm network.ConnMultiaddrs) bool {
	return (g.peerAllowed(p) && g.addrAllowed(cm.RemoteMultiaddr())) || g.refuse()
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
