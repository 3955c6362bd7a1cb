package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Validator decides whether a gossip message is delivered and forwarded. It
// is called after the size cap and the rate limit, for remote and local
// messages alike (from is the forwarding peer, or the host itself for its
// own publications). A nil error accepts; ErrIgnore drops without
// penalising the forwarder; any other error rejects. Typical checks: decode,
// signature, dedupe against the mempool. It must be safe for concurrent use
// and must not retain data after returning unless it copies it.
type Validator func(ctx context.Context, from peer.ID, data []byte) error

// Message is one gossip message delivered to a subscriber.
type Message struct {
	ID    []byte  // MessageID(Data)
	From  peer.ID // the peer that forwarded it (not necessarily the author)
	Data  []byte  // owned by the receiver
	Local bool    // published by this host
}

// Topic is a joined gossipsub topic.
type Topic struct {
	h        *Host
	name     string
	maxBytes int
	topic    *pubsub.Topic
	counters *Counters

	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Join joins topic with a per-message cap of maxBytes (at most the host's
// max gossip bytes) and the caller's validator (nil accepts everything that
// passes the cap and the rate limit). A topic can be joined once per host.
func (h *Host) Join(topic string, maxBytes int, v Validator) (*Topic, error) {
	if maxBytes <= 0 || maxBytes > h.cfg.maxGossipBytes {
		return nil, fmt.Errorf("%w: topic %s cap %d not in 1..%d", ErrConfig, topic, maxBytes, h.cfg.maxGossipBytes)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if _, ok := h.topics[topic]; ok {
		return nil, fmt.Errorf("%w: %s", ErrTopicJoined, topic)
	}
	t := &Topic{h: h, name: topic, maxBytes: maxBytes, counters: h.metrics.Kind(topic), subs: make(map[*Subscription]struct{})}
	if err := h.ps.RegisterTopicValidator(topic, t.validator(v), pubsub.WithValidatorTimeout(h.cfg.frameTimeout)); err != nil {
		return nil, fmt.Errorf("p2p: topic %s validator: %w", topic, err)
	}
	pt, err := h.ps.Join(topic)
	if err != nil {
		_ = h.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("p2p: join %s: %w", topic, err)
	}
	t.topic = pt
	h.topics[topic] = t
	h.joined.Store(topic, t.counters)
	return t, nil
}

// validator wraps the caller's Validator with the size cap and the rate
// limit, and counts the outcome.
func (t *Topic) validator(v Validator) pubsub.ValidatorEx {
	self := t.h.ID()
	return func(ctx context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		local := from == self
		if len(m.Data) > t.maxBytes {
			t.counters.Oversize.Add(1)
			return pubsub.ValidationReject
		}
		if !local && !t.h.limiter.allow(from, t.name) {
			// Ignore, not reject: the forwarder may be an honest relay
			// of someone else's burst.
			t.counters.Dropped.Add(1)
			return pubsub.ValidationIgnore
		}
		if v != nil {
			if !t.h.enter() {
				return pubsub.ValidationIgnore // closing
			}
			err := v(ctx, from, m.Data)
			t.h.leave()
			if err != nil {
				t.counters.Rejected.Add(1)
				if errors.Is(err, ErrIgnore) {
					return pubsub.ValidationIgnore
				}
				return pubsub.ValidationReject
			}
		}
		if !local {
			t.counters.In.Add(1)
		}
		return pubsub.ValidationAccept
	}
}

// Publish gossips data. The host's own validator runs first: data it
// rejects is not sent and an error is returned.
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	if err := t.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("p2p: publish on %s: %w", t.name, err)
	}
	t.counters.Out.Add(1)
	return nil
}

// Peers returns the peers known to be subscribed to the topic.
func (t *Topic) Peers() []peer.ID { return t.topic.ListPeers() }

// Subscription delivers a topic's validated messages, including the host's
// own publications (Message.Local).
type Subscription struct {
	t   *Topic
	sub *pubsub.Subscription
}

// Subscribe starts delivering the topic's messages. Cancel the
// subscription when done; Close cancels all.
func (t *Topic) Subscribe() (*Subscription, error) {
	sub, err := t.topic.Subscribe(pubsub.WithBufferSize(t.h.cfg.subBuffer))
	if err != nil {
		return nil, fmt.Errorf("p2p: subscribe %s: %w", t.name, err)
	}
	s := &Subscription{t: t, sub: sub}
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s, nil
}

// Next blocks until the next message, ctx is done or the subscription is
// cancelled.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	m, err := s.sub.Next(ctx)
	if err != nil {
		return Message{}, err
	}
	return Message{ID: MessageID(m.Data), From: m.ReceivedFrom, Data: m.Data, Local: m.Local}, nil
}

// Cancel stops the subscription; a blocked Next returns an error.
func (s *Subscription) Cancel() {
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	s.sub.Cancel()
}

// close cancels the topic's subscriptions and leaves it.
func (t *Topic) close() {
	t.mu.Lock()
	subs := make([]*Subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		s.Cancel()
	}
	_ = t.h.ps.UnregisterTopicValidator(t.name)
	_ = t.topic.Close()
}

// tracer counts gossipsub events that no validator sees: duplicates
// (dedupe by message id at work), messages dropped because the validation
// queue was full, messages a subscriber was too slow to take, and RPCs
// dropped because a peer's outbound queue was full. pubsub calls it from its event loop, so it
// only does atomic adds.
type tracer struct{ h *Host }

var _ pubsub.RawTracer = tracer{}

func (tr tracer) DuplicateMessage(m *pubsub.Message) {
	if c := tr.h.topicCounters(m.GetTopic()); c != nil {
		c.Duplicates.Add(1)
	}
}

func (tr tracer) DropRPC(*pubsub.RPC, peer.ID) { tr.h.metrics.GossipQueueDrops.Add(1) }

func (tr tracer) RejectMessage(m *pubsub.Message, reason string) {
	if reason != pubsub.RejectValidationQueueFull && reason != pubsub.RejectValidationThrottled {
		return // the validator wrapper counts its own verdicts
	}
	if c := tr.h.topicCounters(m.GetTopic()); c != nil {
		c.Throttled.Add(1)
	}
}

func (tr tracer) UndeliverableMessage(m *pubsub.Message) {
	if c := tr.h.topicCounters(m.GetTopic()); c != nil {
		c.SlowSubscriber.Add(1)
	}
}

func (tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (tracer) OnClosedOutboundStream(peer.ID)                       {}
func (tracer) Join(string)                                          {}
func (tracer) Leave(string)                                         {}
func (tracer) Graft(peer.ID, string)                                {}
func (tracer) Prune(peer.ID, string)                                {}
func (tracer) ValidateMessage(*pubsub.Message)                      {}
func (tracer) DeliverMessage(*pubsub.Message)                       {}
func (tracer) ThrottlePeer(peer.ID)                                 {}
func (tracer) RecvRPC(*pubsub.RPC)                                  {}
func (tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}

// topicCounters returns the counters of the joined topic called name, or
// nil. It does not take h.mu: pubsub calls the tracer from its event loop,
// and Join holds h.mu while it waits for that loop.
func (h *Host) topicCounters(name string) *Counters {
	if c, ok := h.joined.Load(name); ok {
		return c.(*Counters)
	}
	return nil
}
