package p2p

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestConfigDefaultsAreLoopbackOnlyAndQuiet(t *testing.T) {
	c := NewConfig(testKey(0))
	if !c.loopbackOnly || c.mdns || c.natPortMap || c.relay || c.holePunching || c.autoNAT || c.dht {
		t.Fatalf("defaults turn on more than loopback-only networking: %+v", c)
	}
	for _, s := range c.listenAddrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		assert127(t, "default listen address", a)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestConfigWithReturnsCopy(t *testing.T) {
	base := NewConfig(testKey(0))
	changed := base.WithListenAddrs("/ip4/127.0.0.1/tcp/1").WithLoopbackOnly(false).WithDHT(true).
		WithAllowedPeers("a").WithRateLimit(1, 1)
	if !base.loopbackOnly || base.dht || base.allowedPeers != nil || base.rateBurst != DefaultRateBurst ||
		base.listenAddrs[0] != DefaultListenAddrs[0] {
		t.Fatalf("WithX modified the receiver: %+v", base)
	}
	if changed.loopbackOnly || !changed.dht || len(changed.allowedPeers) != 1 || changed.rateBurst != 1 {
		t.Fatalf("WithX did not apply: %+v", changed)
	}
	addrs := []string{"/ip4/127.0.0.1/tcp/2"}
	c := base.WithListenAddrs(addrs...)
	addrs[0] = "/ip4/0.0.0.0/tcp/2"
	if c.listenAddrs[0] != "/ip4/127.0.0.1/tcp/2" {
		t.Fatal("WithListenAddrs aliases the caller's slice")
	}
}

func TestConfigRejected(t *testing.T) {
	base := NewConfig(testKey(0))
	outside, err := peer.AddrInfoFromString("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no key", NewConfig(nil), ErrConfig},
		{"short key", NewConfig(testKey(0)[:32]), ErrConfig},
		{"no listen addresses", base.WithListenAddrs(), ErrConfig},
		{"bad multiaddr", base.WithListenAddrs("not-a-multiaddr"), ErrConfig},
		{"listen on 0.0.0.0", base.WithListenAddrs("/ip4/0.0.0.0/tcp/0"), ErrNonLoopback},
		{"listen on ::", base.WithListenAddrs("/ip6/::/tcp/0"), ErrNonLoopback},
		{"listen on dns", base.WithListenAddrs("/dns4/localhost/tcp/0"), ErrNonLoopback},
		{"bootstrap outside loopback", base.WithBootstrap(*outside), ErrNonLoopback},
		{"mdns on loopback", base.WithMDNS(true), ErrConfig},
		{"nat port map on loopback", base.WithNATPortMap(true), ErrConfig},
		{"relay on loopback", base.WithRelay(true), ErrConfig},
		{"hole punching on loopback", base.WithHolePunching(true), ErrConfig},
		{"autonat on loopback", base.WithAutoNAT(true), ErrConfig},
		{"hole punching without relay", base.WithLoopbackOnly(false).WithHolePunching(true), ErrConfig},
		{"zero frame cap", base.WithMaxFrameBytes(0), ErrConfig},
		{"negative response cap", base.WithMaxResponseBytes(-1), ErrConfig},
		{"zero gossip cap", base.WithMaxGossipBytes(0), ErrConfig},
		{"zero frame timeout", base.WithTimeouts(time.Second, 0, time.Second), ErrConfig},
		{"zero rate", base.WithRateLimit(0, 10), ErrConfig},
		{"negative reconnect interval", base.WithReconnectInterval(-time.Second), ErrConfig},
		{"zero burst", base.WithRateLimit(10, 0), ErrConfig},
		{"zero queue", base.WithQueues(0, 10, 10), ErrConfig},
		{"zero subscription buffer", base.WithQueues(10, 10, 0), ErrConfig},
		{"zero memory", base.WithResources(0, 10), ErrConfig},
		{"nil logger", base.WithLogger(nil), ErrConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(tc.cfg)
			if err == nil {
				h.Close()
				t.Fatal("New accepted the config")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("New: %v, want %v", err, tc.want)
			}
		})
	}
}
