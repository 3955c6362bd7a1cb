package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

const testTopic = "kairos/test/txs/1"

// strictValidator accepts messages that do not start with "bad".
func strictValidator(_ context.Context, _ peer.ID, data []byte) error {
	if bytes.HasPrefix(data, []byte("bad")) {
		return errors.New("bad message")
	}
	return nil
}

// collector records the messages a subscription delivers.
type collector struct {
	mu    sync.Mutex
	count map[string]int
}

func (c *collector) seen(data string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[data]
}

func (c *collector) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.count))
	for k, v := range c.count {
		out[k] = v
	}
	return out
}

// collect runs until the subscription is cancelled.
func collect(sub *Subscription, wg *sync.WaitGroup) *collector {
	c := &collector{count: make(map[string]int)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			if !bytes.Equal(m.ID, MessageID(m.Data)) {
				panic("message id is not sha256(data)")
			}
			c.mu.Lock()
			c.count[string(m.Data)]++
			c.mu.Unlock()
		}
	}()
	return c
}

// TestGossipDeliversOnceAndValidates: four fully connected hosts; a message
// reaches every other host exactly once although it arrives over several
// paths; a message the validator rejects and one over the topic cap are
// not delivered.
func TestGossipDeliversOnceAndValidates(t *testing.T) {
	ctx := testCtx(t)
	const topicCap = 256
	var hosts []*Host
	var topics []*Topic
	var cols []*collector
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		h := newHost(t, testConfig(i))
		for _, prev := range hosts {
			connect(t, h, prev)
		}
		// Host 0 plays a faulty publisher: its own validator lets
		// through what the others reject, and its cap is larger.
		v, limit := strictValidator, topicCap
		if i == 0 {
			v, limit = nil, 4*topicCap
		}
		tp, err := h.Join(testTopic, limit, v)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		hosts, topics = append(hosts, h), append(topics, tp)
		cols = append(cols, collect(sub, &wg))
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			_ = h.Close()
		}
		wg.Wait()
	})
	waitFor(t, "every host to see the three others subscribed", func() bool {
		for _, tp := range topics {
			if len(tp.Peers()) != 3 {
				return false
			}
		}
		return true
	})
	if _, err := hosts[1].Join(testTopic, topicCap, nil); !errors.Is(err, ErrTopicJoined) {
		t.Fatalf("second Join: %v, want ErrTopicJoined", err)
	}
	if err := topics[1].Publish(ctx, []byte("bad, from a strict host")); err == nil {
		t.Fatal("a host published a message its own validator rejects")
	}

	// Until the mesh has formed, a flood-published message reaches each
	// peer once, directly. Publish warm-up messages until some host has
	// dropped a second copy, so that the exactly-once check below covers
	// messages arriving over several paths.
	var warmups []string
	duplicates := func() (n uint64) {
		for _, h := range hosts {
			n += h.metrics.Kind(testTopic).Duplicates.Load()
		}
		return n
	}
	waitFor(t, "a duplicate to arrive and be dropped", func() bool {
		m := fmt.Sprintf("good warm-up %d", len(warmups))
		warmups = append(warmups, m)
		if err := topics[2].Publish(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
		return duplicates() > 0
	})

	// Host 0 publishes, in order on each of its streams: good messages,
	// an invalid one, an oversized one, and a sentinel. Host 1 publishes
	// good messages too. Gossip relays each over several paths.
	bad := "bad, from the faulty host"
	huge := string(bytes.Repeat([]byte("h"), topicCap+1))
	var good []string
	for i := 0; i < 10; i++ {
		good = append(good, fmt.Sprintf("good %d from host 0", i), fmt.Sprintf("good %d from host 1", i))
		if err := topics[0].Publish(ctx, []byte(good[len(good)-2])); err != nil {
			t.Fatal(err)
		}
		if err := topics[1].Publish(ctx, []byte(good[len(good)-1])); err != nil {
			t.Fatal(err)
		}
	}
	good = append(good, warmups...)
	for _, m := range []string{bad, huge, "sentinel"} {
		if err := topics[0].Publish(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// Validation runs concurrently, so the sentinel may overtake the
	// rejections: wait for both to be counted too. Host 1 also rejected
	// its own bad publication above.
	waitForState(t, "every good message and the sentinel everywhere, and the rejections counted", func() bool {
		for i, c := range cols {
			if c.seen("sentinel") == 0 {
				return false
			}
			for _, g := range good {
				if c.seen(g) == 0 {
					return false
				}
			}
			k := hosts[i].metrics.Kind(testTopic)
			wantRejected := uint64(1)
			if i == 1 {
				wantRejected = 2
			}
			if i > 0 && (k.Rejected.Load() < wantRejected || k.Oversize.Load() < 1) {
				return false
			}
		}
		return true
	}, func() string {
		var b bytes.Buffer
		for i, c := range cols {
			fmt.Fprintf(&b, "\nhost %d: %d distinct, sentinel %d, counters %+v", i, len(c.snapshot()), c.seen("sentinel"), hosts[i].metrics.Snapshot())
		}
		return b.String()
	})
	// The same bytes published by another host are the same message (the
	// id is their sha256): not delivered again anywhere. A second sentinel
	// from the same host follows it.
	if err := topics[3].Publish(ctx, []byte(good[0])); err != nil {
		t.Fatalf("republishing a seen message: %v", err)
	}
	if err := topics[3].Publish(ctx, []byte("sentinel 2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second sentinel everywhere", func() bool {
		for _, c := range cols {
			if c.seen("sentinel 2") == 0 {
				return false
			}
		}
		return true
	})
	// Messages each host published itself, so did not receive.
	own := [4]uint64{1: 10, 2: uint64(len(warmups)), 3: 1}
	for i, c := range cols {
		for m, n := range c.snapshot() {
			if n != 1 {
				t.Errorf("host %d: %.30q delivered %d times, want once", i, m, n)
			}
		}
		if i == 0 {
			continue
		}
		if c.seen(bad) != 0 || c.seen(huge) != 0 {
			t.Errorf("host %d: an invalid or oversized message was delivered", i)
		}
		if len(c.snapshot()) != len(good)+2 {
			t.Errorf("host %d: %d distinct messages, want %d", i, len(c.snapshot()), len(good)+2)
		}
		// Every message is validated once however often it arrives.
		wantIn := uint64(len(good)+2) - own[i]
		if in := hosts[i].metrics.Kind(testTopic).In.Load(); in != wantIn {
			t.Errorf("host %d: In = %d, want %d", i, in, wantIn)
		}
	}
}

// TestTopicValidatorOutcomes drives the validator wrapper directly: cap,
// rate limit (remote only), the caller's verdicts, and what each counts.
func TestTopicValidatorOutcomes(t *testing.T) {
	h := newHost(t, testConfig(0).WithRateLimit(1e-9, 2))
	verdict := func(_ context.Context, _ peer.ID, data []byte) error {
		switch string(data) {
		case "dup":
			return fmt.Errorf("already in the mempool: %w", ErrIgnore)
		case "forged":
			return errors.New("bad signature")
		}
		return nil
	}
	tp, err := h.Join(testTopic, 8, verdict)
	if err != nil {
		t.Fatal(err)
	}
	v := tp.validator(verdict)
	msg := func(data string) *pubsub.Message {
		topic := testTopic
		return &pubsub.Message{Message: &pb.Message{Data: []byte(data), Topic: &topic}}
	}
	remote, other := peer.ID("remote"), peer.ID("other")
	cases := []struct {
		name string
		from peer.ID
		data string
		want pubsub.ValidationResult
	}{
		{"valid", remote, "tx", pubsub.ValidationAccept},
		{"oversized", remote, "123456789", pubsub.ValidationReject},
		{"caller ignores", remote, "dup", pubsub.ValidationIgnore},
		{"over the rate", remote, "tx2", pubsub.ValidationIgnore},
		{"other peer's own bucket", other, "tx3", pubsub.ValidationAccept},
		{"caller rejects", other, "forged", pubsub.ValidationReject},
		{"local is not rate limited", h.ID(), "tx4", pubsub.ValidationAccept},
		{"local is validated", h.ID(), "forged", pubsub.ValidationReject},
	}
	for _, tc := range cases {
		if got := v(context.Background(), tc.from, msg(tc.data)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	c := h.metrics.Kind(testTopic)
	got := [5]uint64{c.In.Load(), c.Oversize.Load(), c.Dropped.Load(), c.Rejected.Load(), c.Out.Load()}
	if want := [5]uint64{2, 1, 1, 3, 0}; got != want {
		t.Errorf("counters in, oversize, dropped, rejected, out = %v, want %v", got, want)
	}
}
