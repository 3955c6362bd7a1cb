package p2p

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Benchmarks. Run: go test -run '^$' -bench . -benchtime 2000x ./p2p/
// They are not run by make test.

// BenchmarkDirectSend measures one-way direct frames of 1 KiB on a reused
// stream until the receiver has them all.
func BenchmarkDirectSend(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			ctx := context.Background()
			src := benchHost(b, testConfig(0).WithListenAddrs(tr.addr).WithRateLimit(1e9, 1e9))
			dst := benchHost(b, testConfig(1).WithListenAddrs(tr.addr).WithRateLimit(1e9, 1e9))
			var got atomic.Int64
			dst.HandleDirect(votesProto, func(peer.ID, []byte) { got.Add(1) })
			if err := src.Connect(ctx, dst.AddrInfo()); err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, 1<<10)
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := src.Send(ctx, dst.ID(), votesProto, msg); err != nil {
					b.Fatal(err)
				}
			}
			settle(func() int64 { return got.Load() }, int64(b.N))
			b.StopTimer()
			if got.Load() != int64(b.N) {
				b.Fatalf("%d of %d frames delivered", got.Load(), b.N)
			}
		})
	}
}

// BenchmarkRequest measures request/response round trips.
func BenchmarkRequest(b *testing.B) {
	ctx := context.Background()
	server := benchHost(b, testConfig(0).WithRateLimit(1e9, 1e9))
	client := benchHost(b, testConfig(1))
	server.HandleRequest(fetchProto, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) { return req, nil })
	if err := client.Connect(ctx, server.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	req := make([]byte, 256)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Request(ctx, server.ID(), fetchProto, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGossipPublish publishes b.N distinct 256-byte messages from one
// of four hosts at gossipRate messages per second (consensus.md's
// measurement point) and reports the fraction delivered to the three
// others. The baseline is go-libp2p-pubsub with its defaults
// (signed messages, author + seqno ids, queues of 32) on plain loopback
// hosts, measured in the same run.
func BenchmarkGossipPublish(b *testing.B) {
	b.Run("kairos", func(b *testing.B) {
		var topics []*Topic
		var got atomic.Int64
		for i := 0; i < 4; i++ {
			h := benchHost(b, testConfig(i).WithRateLimit(1e9, 1e9))
			for _, prev := range topics {
				if err := h.Connect(context.Background(), prev.h.AddrInfo()); err != nil {
					b.Fatal(err)
				}
			}
			tp, err := h.Join(testTopic, 1<<10, nil)
			if err != nil {
				b.Fatal(err)
			}
			topics = append(topics, tp)
			if i > 0 {
				sub, err := tp.Subscribe()
				if err != nil {
					b.Fatal(err)
				}
				go drain(func(ctx context.Context) error { _, err := sub.Next(ctx); return err }, &got)
			}
		}
		publish := func(ctx context.Context, data []byte) error { return topics[0].Publish(ctx, data) }
		runGossip(b, func() bool { return len(topics[0].Peers()) == 3 }, publish, &got)
		if b.N > 1 {
			for i, tp := range topics {
				b.Logf("host %d: %+v, queue drops %d", i, tp.h.metrics.Snapshot(), tp.h.metrics.GossipQueueDrops.Load())
			}
		}
	})
	b.Run("libp2p-defaults", func(b *testing.B) {
		var tps []*pubsub.Topic
		var hosts []host.Host
		var got atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		for i := 0; i < 4; i++ {
			h, err := libp2p.New(libp2p.ListenAddrStrings(tcpOnly), libp2p.DisableMetrics(), libp2p.DisableRelay())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = h.Close() })
			for _, prev := range hosts {
				if err := h.Connect(ctx, peer.AddrInfo{ID: prev.ID(), Addrs: prev.Addrs()}); err != nil {
					b.Fatal(err)
				}
			}
			ps, err := pubsub.NewGossipSub(ctx, h)
			if err != nil {
				b.Fatal(err)
			}
			tp, err := ps.Join(testTopic)
			if err != nil {
				b.Fatal(err)
			}
			hosts, tps = append(hosts, h), append(tps, tp)
			if i > 0 {
				sub, err := tp.Subscribe()
				if err != nil {
					b.Fatal(err)
				}
				go drain(func(ctx context.Context) error { _, err := sub.Next(ctx); return err }, &got)
			}
		}
		publish := func(ctx context.Context, data []byte) error { return tps[0].Publish(ctx, data) }
		runGossip(b, func() bool { return len(tps[0].ListPeers()) == 3 }, publish, &got)
	})
}

// gossipRate is the offered load of BenchmarkGossipPublish in messages/s.
const gossipRate = 5000

func runGossip(b *testing.B, ready func() bool, publish func(context.Context, []byte) error, got *atomic.Int64) {
	ctx := context.Background()
	for end := time.Now().Add(testDeadline); !ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatal("subscriptions did not propagate")
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if ahead := time.Until(start.Add(time.Duration(i) * time.Second / gossipRate)); ahead > 0 {
			time.Sleep(ahead) // pace the offered load
		}
		data := make([]byte, 256)
		copy(data, fmt.Sprintf("message %d", i))
		if err := publish(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	settle(got.Load, int64(3*b.N))
	b.StopTimer()
	b.ReportMetric(100*float64(got.Load())/float64(3*b.N), "%delivered")
}

// drain counts messages until next fails.
func drain(next func(context.Context) error, got *atomic.Int64) {
	for next(context.Background()) == nil {
		got.Add(1)
	}
}

// settle waits until count reaches want or stops growing for a second.
func settle(count func() int64, want int64) {
	last, since := count(), time.Now()
	for c := count(); c < want && time.Since(since) < time.Second; c = count() {
		if c != last {
			last, since = c, time.Now()
		}
		time.Sleep(time.Millisecond)
	}
}

func benchHost(b *testing.B, cfg Config) *Host {
	h, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	return h
}
