package p2p

import (
	"bytes"
	"sync"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestGossipCapCoversLargestTx: the transaction topic's cap (the host's
// gossip cap) must admit the largest transaction types accepts, with room
// for pubsub's framing, or big deploys would never be gossiped.
func TestGossipCapCoversLargestTx(t *testing.T) {
	largest := max(types.DefaultTxLimits.MaxBytes, types.DefaultTxLimits.MaxCodeTxBytes)
	if DefaultMaxGossipBytes < largest+GossipEnvelopeBytes {
		t.Fatalf("DefaultMaxGossipBytes %d < largest valid tx %d + envelope %d", DefaultMaxGossipBytes, largest, GossipEnvelopeBytes)
	}
	if DefaultMaxFrameBytes < largest {
		t.Fatalf("DefaultMaxFrameBytes %d < largest valid tx %d: a fetched tx would not fit one frame", DefaultMaxFrameBytes, largest)
	}
}

// TestGossipBigMessage: a 2 MiB message (a mid-sized code transaction)
// published by one of four fully connected loopback hosts reaches the three
// others, with the default caps; one byte over the topic cap does not.
func TestGossipBigMessage(t *testing.T) {
	ctx := testCtx(t)
	var hosts []*Host
	var topics []*Topic
	var cols []*collector
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		h := newHost(t, testConfig(i))
		for _, prev := range hosts {
			connect(t, h, prev)
		}
		tp, err := h.Join(testTopic, DefaultMaxGossipBytes, nil)
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
	big := bytes.Repeat([]byte("deploy "), (2<<20)/7+1)[:2<<20]
	if err := topics[0].Publish(ctx, big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 2 MiB message at every host", func() bool {
		for _, c := range cols {
			if c.seen(string(big)) != 1 {
				return false
			}
		}
		return true
	})
	over := make([]byte, DefaultMaxGossipBytes+1)
	if err := topics[1].Publish(ctx, over); err == nil {
		t.Fatal("a message over the topic cap was published")
	}
}
