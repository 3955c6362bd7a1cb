package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/consensus"
)

// hookStore calls onCommit before each batch commit and fails it when
// fail is set.
type hookStore struct {
	ds.Batching
	onCommit func()
	fail     error
}

type hookBatch struct {
	ds.Batch
	s *hookStore
}

func (s *hookStore) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := s.Batching.Batch(ctx)
	return hookBatch{b, s}, err
}

func (b hookBatch) Commit(ctx context.Context) error {
	b.s.onCommit()
	if b.s.fail != nil {
		return b.s.fail
	}
	return b.Batch.Commit(ctx)
}

// driverNode is a node with only what perform touches: a datastore, the
// outboxes of a 4-validator committee and a core.
func driverNode(t *testing.T, d ds.Batching) *Node {
	t.Helper()
	comm := testCommittee(t, 4)
	core, err := consensus.New(consensus.Config{Committee: comm, Me: 0, Signer: consensus.Ed25519Signer(validatorKey(0))})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{d: d, core: core, log: slog.New(slog.DiscardHandler), gossip: make(chan []byte, 1),
		outbox: []chan []byte{nil, make(chan []byte, 4), make(chan []byte, 4), make(chan []byte, 4)}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	t.Cleanup(n.cancel)
	return n
}

func queued(n *Node) int {
	c := len(n.gossip)
	for _, o := range n.outbox {
		c += len(o)
	}
	return c
}

// TestPersistBeforeSend: records are durable before any message that
// follows them is handed to the network, and a failed persist sends
// nothing and halts the node.
func TestPersistBeforeSend(t *testing.T) {
	hdr := &consensus.Header{Round: 1, Author: 0, Time: 5}
	vote := &consensus.VoteRecord{Author: 1, Round: 1}
	acts := []consensus.Action{
		consensus.Persist{Rec: consensus.Record{Own: hdr}, Sync: true},
		consensus.Persist{Rec: consensus.Record{Vote: vote}, Sync: true},
		consensus.Broadcast{Msg: &consensus.Message{Header: hdr}},
		consensus.Send{To: 1, Msg: &consensus.Message{Vote: &consensus.Vote{Round: 1, Author: 1}}},
		consensus.SetTimer{At: 42},
	}
	t.Run("ok", func(t *testing.T) {
		s := &hookStore{Batching: dssync.MutexWrap(ds.NewMapDatastore())}
		n := driverNode(t, s)
		commits := 0
		s.onCommit = func() {
			commits++
			if q := queued(n); q != 0 {
				t.Errorf("%d messages queued before the records were committed", q)
			}
		}
		timer, ok := n.perform(acts)
		if !ok || timer == nil || *timer != 42 {
			t.Fatalf("perform: ok=%v timer=%v", ok, timer)
		}
		if commits != 1 {
			t.Fatalf("%d commits, want one batch", commits)
		}
		if q := queued(n); q != 4 {
			t.Fatalf("%d messages queued, want 3 header copies and 1 vote", q)
		}
		recs, next, err := loadLog(context.Background(), s)
		if err != nil || next != 2 || recs[0].Own == nil || recs[1].Vote == nil {
			t.Fatalf("log: %d records (%v), err %v", next, recs, err)
		}
	})
	t.Run("persist fails", func(t *testing.T) {
		boom := errors.New("disk full")
		s := &hookStore{Batching: dssync.MutexWrap(ds.NewMapDatastore()), onCommit: func() {}, fail: boom}
		n := driverNode(t, s)
		if _, ok := n.perform(acts); ok {
			t.Fatal("perform succeeded with a failing store")
		}
		if q := queued(n); q != 0 {
			t.Fatalf("%d messages sent after a failed persist", q)
		}
		if err := n.Err(); !errors.Is(err, ErrPersist) || !errors.Is(err, boom) {
			t.Fatalf("Err() = %v, want %v wrapping %v", err, ErrPersist, boom)
		}
	})
}
