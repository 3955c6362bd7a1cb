package p2p

import (
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

// TestCloseStopsEverything: hosts that used every feature (DHT, gossip,
// direct streams, requests, TCP and QUIC) leave no goroutine behind after
// Close, and a closed host refuses work with ErrClosed.
func TestCloseStopsEverything(t *testing.T) {
	// Goroutines of earlier tests' hosts and package-level workers of
	// the libraries already running are not this test's business.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	run := func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		a, err := New(NewConfig(testKey(0)).WithDHT(true))
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(NewConfig(testKey(1)).WithDHT(true).WithBootstrap(a.AddrInfo()))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		if err := b.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		box := newInbox()
		a.HandleDirect(votesProto, box.handle)
		a.HandleRequest(fetchProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil })
		ta, err := a.Join(testTopic, 1024, nil)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.Join(testTopic, 1024, nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := ta.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Subscribe(); err != nil { // left open: Close cancels it
			t.Fatal(err)
		}
		waitFor(t, "b to see a's subscription", func() bool { return len(tb.Peers()) == 1 })
		if err := tb.Publish(ctx, []byte("tx")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.Next(ctx); err != nil || string(m.Data) != "tx" {
			t.Fatalf("gossip: %v", err)
		}
		if err := b.Send(ctx, a.ID(), votesProto, []byte("vote")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Request(ctx, a.ID(), fetchProto, []byte("cert")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the vote", func() bool { return len(box.from(b.ID())) == 1 })

		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := b.Send(ctx, a.ID(), votesProto, []byte("late")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close: %v, want ErrClosed", err)
		}
		if _, err := b.Join("other", 1024, nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Join after Close: %v, want ErrClosed", err)
		}
	}
	run()
}
