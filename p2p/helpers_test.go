package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"

	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// testDeadline bounds every condition wait; a healthy run takes far less.
const testDeadline = 30 * time.Second

const (
	tcpOnly  = "/ip4/127.0.0.1/tcp/0"
	quicOnly = "/ip4/127.0.0.1/udp/0/quic-v1"
)

// testKey returns a deterministic validator key.
func testKey(i int) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
}

// testConfig is the default config for key i, TCP only unless a test needs
// more, so the suite stays light on two cores.
func testConfig(i int) Config { return NewConfig(testKey(i)).WithListenAddrs(tcpOnly) }

// newHost starts a host and closes it when the test ends.
func newHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// connect connects a to b and fails the test on error.
func connect(t *testing.T, a, b *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatalf("connect %s -> %s: %v", a.ID(), b.ID(), err)
	}
}

// waitFor polls cond until it holds or the test deadline passes. Polling a
// condition with a deadline is how these tests wait; they never sleep for
// a fixed time and then assert.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForState(t, what, cond, func() string { return "" })
}

// waitForState is waitFor that reports state() when it times out.
func waitForState(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	end := time.Now().Add(testDeadline)
	tick := time.Millisecond
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s; state: %s", what, state())
		}
		time.Sleep(tick)
		tick = min(2*tick, 50*time.Millisecond)
	}
}

// testCtx returns a context bounded by the test deadline.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// assert127 fails unless a is an IPv4 127.0.0.1 address.
func assert127(t *testing.T, what string, a ma.Multiaddr) {
	t.Helper()
	ip, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil || ip != "127.0.0.1" {
		t.Errorf("%s: %s is not on 127.0.0.1", what, a)
	}
}

func msgN(i int) []byte { return []byte(fmt.Sprintf("message %04d", i)) }
