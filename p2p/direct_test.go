package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const (
	votesProto protocol.ID = "/kairos/test/votes/1"
	fetchProto protocol.ID = "/kairos/test/fetch/1"
)

// inbox records direct messages per sender.
type inbox struct {
	mu   sync.Mutex
	msgs map[peer.ID][][]byte
}

func newInbox() *inbox { return &inbox{msgs: make(map[peer.ID][][]byte)} }

func (b *inbox) handle(from peer.ID, msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs[from] = append(b.msgs[from], msg)
}

func (b *inbox) from(p peer.ID) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.msgs[p]...)
}

// transports is the metamorphic dimension of the stream tests: the same
// exchanges over TCP and over QUIC must give the same results.
var transports = []struct{ name, addr string }{{"tcp", tcpOnly}, {"quic", quicOnly}}

// TestDirectRoundTrip: frames of every size up to the cap arrive complete
// and in order on one stream; a message over the cap is refused locally.
func TestDirectRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := testCtx(t)
			const frameCap = 64 << 10
			a := newHost(t, testConfig(0).WithListenAddrs(tr.addr).WithMaxFrameBytes(frameCap))
			b := newHost(t, testConfig(1).WithListenAddrs(tr.addr).WithMaxFrameBytes(frameCap))
			box := newInbox()
			b.HandleDirect(votesProto, box.handle)
			connect(t, a, b)

			var sent [][]byte
			for _, n := range []int{0, 1, 127, 128, 300, 4096, 16383, 16384, frameCap - 1, frameCap} {
				m := bytes.Repeat([]byte{byte(n)}, n)
				sent = append(sent, m)
				if err := a.Send(ctx, b.ID(), votesProto, m); err != nil {
					t.Fatalf("send %d bytes: %v", n, err)
				}
			}
			for i := 0; i < 100; i++ {
				sent = append(sent, msgN(i))
				if err := a.Send(ctx, b.ID(), votesProto, msgN(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Send(ctx, b.ID(), votesProto, make([]byte, frameCap+1)); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("send over the cap: %v, want ErrFrameTooLarge", err)
			}
			waitFor(t, "every frame", func() bool { return len(box.from(a.ID())) == len(sent) })
			for i, m := range box.from(a.ID()) {
				if !bytes.Equal(m, sent[i]) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(m), len(sent[i]))
				}
			}
			if got := b.metrics.Kind(string(votesProto)).In.Load(); got != uint64(len(sent)) {
				t.Fatalf("In = %d, want %d", got, len(sent))
			}
			if got := a.metrics.Kind(string(votesProto)).Out.Load(); got != uint64(len(sent)) {
				t.Fatalf("Out = %d, want %d", got, len(sent))
			}
			if conns := a.host.Network().ConnsToPeer(b.ID()); len(conns) != 1 {
				t.Fatalf("%d connections, want 1", len(conns))
			}
		})
	}
}

// TestDirectSendReopensResetStream: after the receiver resets the stream
// (here: because the sender broke the framing on it), the next Send opens
// a fresh stream and is delivered.
func TestDirectSendReopensResetStream(t *testing.T) {
	ctx := testCtx(t)
	a := newHost(t, testConfig(0))
	b := newHost(t, testConfig(1).WithMaxFrameBytes(16))
	box := newInbox()
	b.HandleDirect(votesProto, box.handle)
	connect(t, a, b)
	if err := a.Send(ctx, b.ID(), votesProto, []byte("first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first frame", func() bool { return len(box.from(a.ID())) == 1 })
	// Break the framing on the sender's cached stream.
	o, err := a.outStream(b.ID(), votesProto)
	if err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	_, err = o.s.Write(binary.AppendUvarint(nil, 1<<20))
	o.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receiver to reset the stream", func() bool {
		return b.metrics.Kind(string(votesProto)).Oversize.Load() == 1
	})
	waitFor(t, "a later frame to be delivered on a fresh stream", func() bool {
		_ = a.Send(ctx, b.ID(), votesProto, []byte("again"))
		return len(box.from(a.ID())) >= 2
	})
	if got := box.from(a.ID())[1]; string(got) != "again" {
		t.Fatalf("second frame %q", got)
	}
}

// rawStream opens a stream from a to b that bypasses the framing, to play a
// hostile peer.
func rawStream(t *testing.T, a, b *Host, proto protocol.ID) network.Stream {
	t.Helper()
	s, err := a.host.NewStream(testCtx(t), b.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return s
}

// waitReset blocks until the peer resets s (a read fails with something
// other than a clean EOF) or the test deadline passes.
func waitReset(t *testing.T, s network.Stream) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(testDeadline))
	_, err := s.Read(make([]byte, 1))
	if err == nil || isTimeout(err) {
		t.Fatalf("stream not reset by the peer: %v", err)
	}
}

// TestHugeLengthPrefixResetsWithoutAllocating: a 1 GiB length prefix on a
// direct or request stream resets the stream at the prefix, counted as
// oversize; the host goes on serving others.
func TestHugeLengthPrefixResetsWithoutAllocating(t *testing.T) {
	ctx := testCtx(t)
	attacker := newHost(t, testConfig(0))
	honest := newHost(t, testConfig(1))
	target := newHost(t, testConfig(2))
	box := newInbox()
	target.HandleDirect(votesProto, box.handle)
	target.HandleRequest(fetchProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil })
	connect(t, attacker, target)
	connect(t, honest, target)

	for _, proto := range []protocol.ID{votesProto, fetchProto} {
		s := rawStream(t, attacker, target, proto)
		if _, err := s.Write(binary.AppendUvarint(nil, 1<<30)); err != nil {
			t.Fatal(err)
		}
		waitReset(t, s)
		if got := target.metrics.Kind(string(proto)).Oversize.Load(); got != 1 {
			t.Fatalf("%s: oversize = %d, want 1", proto, got)
		}
		if got := target.metrics.Kind(string(proto)).In.Load(); got != 0 {
			t.Fatalf("%s: In = %d after a hostile prefix", proto, got)
		}
	}
	if err := honest.Send(ctx, target.ID(), votesProto, []byte("vote")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the honest vote", func() bool { return len(box.from(honest.ID())) == 1 })
	if resp, err := honest.Request(ctx, target.ID(), fetchProto, []byte("id")); err != nil || string(resp) != "id" {
		t.Fatalf("honest request: %q, %v", resp, err)
	}
}

// TestSlowPeerHitsDeadline: a peer that starts a frame and stalls is reset
// after the frame timeout; one that opens a stream and stays silent is
// closed after the idle timeout.
func TestSlowPeerHitsDeadline(t *testing.T) {
	const timeout = 200 * time.Millisecond
	slow := newHost(t, testConfig(0))
	target := newHost(t, testConfig(1).WithTimeouts(timeout, timeout, time.Second))
	target.HandleDirect(votesProto, newInbox().handle)
	target.HandleRequest(fetchProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil })
	connect(t, slow, target)

	cases := []struct {
		name  string
		proto protocol.ID
		send  []byte
	}{
		{"direct frame cut short", votesProto, append(binary.AppendUvarint(nil, 100), make([]byte, 10)...)},
		{"direct prefix cut short", votesProto, []byte{0x80}},
		{"direct idle stream", votesProto, nil},
		{"request cut short", fetchProto, append(binary.AppendUvarint(nil, 100), make([]byte, 10)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := target.metrics.Kind(string(tc.proto))
			before := k.Timeouts.Load()
			s := rawStream(t, slow, target, tc.proto)
			if tc.send != nil {
				if _, err := s.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			} else if _, err := s.Write(appendFrame(nil, []byte("one vote, then silence"))); err != nil {
				t.Fatal(err)
			}
			waitReset(t, s)
			waitFor(t, "the timeout to be counted", func() bool { return k.Timeouts.Load() == before+1 })
		})
	}
}

// TestRequestRoundTrip covers the request/response outcomes over both
// transports.
func TestRequestRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := testCtx(t)
			const respCap = 1 << 10
			release := make(chan struct{})
			server := newHost(t, testConfig(0).WithListenAddrs(tr.addr).WithMaxResponseBytes(respCap))
			client := newHost(t, testConfig(1).WithListenAddrs(tr.addr).
				WithTimeouts(time.Minute, time.Second, 300*time.Millisecond))
			// The small client accepts smaller responses than the server
			// sends, to check the client-side cap.
			small := newHost(t, testConfig(2).WithListenAddrs(tr.addr).WithMaxResponseBytes(8))
			t.Cleanup(func() { close(release) })
			server.HandleRequest(fetchProto, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
				switch string(req) {
				case "fail":
					return nil, errors.New("no such certificate")
				case "huge":
					return make([]byte, respCap+1), nil
				case "slow":
					select {
					case <-release:
					case <-ctx.Done():
					}
					return nil, ctx.Err()
				case "who":
					return []byte(from), nil
				}
				return append([]byte("re: "), req...), nil
			})
			connect(t, client, server)
			connect(t, small, server)

			cases := []struct {
				name string
				host *Host
				req  string
				want string
				err  error
			}{
				{"echo", client, "cert 7", "re: cert 7", nil},
				{"empty request", client, "", "re: ", nil},
				{"caller identity", client, "who", string(client.ID()), nil},
				{"handler error", client, "fail", "", ErrRemote},
				{"response over the server cap", client, "huge", "", ErrRemote},
				{"response over the client cap", small, "echo me", "", ErrResponseTooLarge},
				{"slow handler", client, "slow", "", ErrTimeout},
				{"unknown protocol", client, "x", "", nil},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					proto := fetchProto
					if tc.name == "unknown protocol" {
						proto = "/kairos/test/unknown/1"
					}
					resp, err := tc.host.Request(ctx, server.ID(), proto, []byte(tc.req))
					if tc.name == "unknown protocol" {
						if err == nil {
							t.Fatal("request on an unknown protocol succeeded")
						}
						return
					}
					if !errors.Is(err, tc.err) {
						t.Fatalf("err = %v, want %v", err, tc.err)
					}
					if err == nil && string(resp) != tc.want {
						t.Fatalf("resp = %q, want %q", resp, tc.want)
					}
				})
			}
			if _, err := client.Request(ctx, server.ID(), fetchProto, make([]byte, DefaultMaxFrameBytes+1)); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("request over the cap: %v", err)
			}
		})
	}
}

// TestFloodIsRateLimited: one peer floods a direct protocol; the excess is
// dropped and counted while another peer's messages all get through.
func TestFloodIsRateLimited(t *testing.T) {
	ctx := testCtx(t)
	// The bucket refills at 1/s, so during the test its budget is
	// essentially the burst: far fewer than the flood, more than the
	// honest peer sends.
	const burst, flood, honestN = 50, 1000, 20
	target := newHost(t, testConfig(0).WithRateLimit(1, burst))
	flooder := newHost(t, testConfig(1))
	honest := newHost(t, testConfig(2))
	box := newInbox()
	target.HandleDirect(votesProto, box.handle)
	connect(t, flooder, target)
	connect(t, honest, target)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < flood; i++ {
			if err := flooder.Send(ctx, target.ID(), votesProto, msgN(i)); err != nil {
				t.Errorf("flood send %d: %v", i, err)
				return
			}
		}
	}()
	for i := 0; i < honestN; i++ {
		if err := honest.Send(ctx, target.ID(), votesProto, []byte(fmt.Sprintf("honest %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	k := target.metrics.Kind(string(votesProto))
	waitFor(t, "every frame to be delivered or dropped", func() bool {
		return k.In.Load()+k.Dropped.Load() == flood+honestN
	})
	if got := len(box.from(honest.ID())); got != honestN {
		t.Fatalf("honest peer: %d of %d delivered", got, honestN)
	}
	delivered := len(box.from(flooder.ID()))
	if delivered >= flood/2 || k.Dropped.Load() != uint64(flood-delivered) {
		t.Fatalf("flooder: %d delivered, %d dropped, of %d", delivered, k.Dropped.Load(), flood)
	}
	// The flood's accepted prefix is in order: a rate limit drops, it
	// never reorders.
	for i, m := range box.from(flooder.ID())[:burst] {
		if !bytes.Equal(m, msgN(i)) {
			t.Fatalf("flood frame %d out of order: %q", i, m)
		}
	}
}
