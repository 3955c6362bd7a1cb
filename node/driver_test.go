package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/node/mempool"
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
func driverNode(t testing.TB, d ds.Batching) *Node {
	t.Helper()
	comm := testCommittee(t, 4)
	core, err := consensus.New(consensus.Config{Committee: comm, Me: 0, Signer: consensus.Ed25519Signer(validatorKey(0))})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{d: d, core: core, lat: newLatency(), log: slog.New(slog.DiscardHandler), gossip: make(chan []byte, 1), txOut: newTxBatcher(),
		outbox: []chan []byte{nil, make(chan []byte, 4), make(chan []byte, 4), make(chan []byte, 4)}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.running.Store(true)
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

// perform stages acts and releases them at once (one step, one group),
// committing even records that need no sync.
func (n *Node) perform(acts []consensus.Action) (timer *int64, ok bool) {
	var g group
	if !n.stage(&g, acts) {
		return nil, false
	}
	timer, ok = n.release(&g)
	if ok && g.batch != nil {
		ok = n.commitLog(&g)
	}
	return timer, ok
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

// TestGroupCommit: records that need no sync (peers' certificates) do not
// hold back the messages after them, and are committed, in log order,
// with the next synced record before the messages that follow it.
func TestGroupCommit(t *testing.T) {
	s := &hookStore{Batching: dssync.MutexWrap(ds.NewMapDatastore())}
	n := driverNode(t, s)
	commits, queuedAtCommit := 0, -1
	s.onCommit = func() { commits++; queuedAtCommit = queued(n) }
	cert := &consensus.Certificate{Header: consensus.Header{Round: 1, Author: 2, Time: 3}}
	vote := &consensus.VoteRecord{Author: 3, Round: 1}
	var g group
	// Step 1: a peer's certificate and a fetch; step 2: a send.
	if !n.stage(&g, []consensus.Action{consensus.Persist{Rec: consensus.Record{Cert: cert}}, consensus.SetTimer{At: 7}}) ||
		!n.stage(&g, []consensus.Action{consensus.Send{To: 1, Msg: &consensus.Message{Vote: &consensus.Vote{Round: 1}}}}) {
		t.Fatal("stage failed")
	}
	timer, ok := n.release(&g)
	if !ok || timer == nil || *timer != 7 {
		t.Fatalf("release: ok=%v timer=%v, want the staged timer", ok, timer)
	}
	if commits != 0 || queued(n) != 1 {
		t.Fatalf("after unsynced records: %d commits, %d queued; want 0 and 1", commits, queued(n))
	}
	// Step 3: a vote record (synced) and its send.
	if !n.stage(&g, []consensus.Action{consensus.Persist{Rec: consensus.Record{Vote: vote}, Sync: true},
		consensus.Send{To: 3, Msg: &consensus.Message{Vote: &consensus.Vote{Round: 1, Author: 3}}}}) {
		t.Fatal("stage failed")
	}
	if _, ok := n.release(&g); !ok {
		t.Fatal("release failed")
	}
	if commits != 1 || queuedAtCommit != 1 || queued(n) != 2 {
		t.Fatalf("after a synced record: %d commits with %d queued at commit, %d queued; want 1, 1, 2", commits, queuedAtCommit, queued(n))
	}
	recs, next, err := loadLog(context.Background(), s)
	if err != nil || next != 2 || recs[0].Cert == nil || recs[1].Vote == nil {
		t.Fatalf("log: %d records (%+v), err %v; want the certificate then the vote", next, recs, err)
	}
	// Past MaxDeferredRecords unsynced records are committed anyway (the
	// byte bound works the same way).
	for range MaxDeferredRecords {
		if !n.stage(&g, []consensus.Action{consensus.Persist{Rec: consensus.Record{Cert: cert}}}) {
			t.Fatal("stage failed")
		}
	}
	if _, ok := n.release(&g); !ok || commits != 2 || g.batch != nil {
		t.Fatalf("after %d deferred records: %d commits, batch open %v", MaxDeferredRecords, commits, g.batch != nil)
	}
}

// fakeClock is a manual Clock: time moves only in Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    int64
	timers []*fakeTimer
	armed  chan int64 // every Timer request
}

type fakeTimer struct {
	at      int64
	ch      chan struct{}
	stopped bool
}

func (c *fakeClock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Timer(at int64) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: at, ch: make(chan struct{}, 1)}
	c.timers = append(c.timers, t)
	c.armed <- at
	c.fire()
	return t.ch, func() {
		c.mu.Lock()
		t.stopped = true
		c.mu.Unlock()
	}
}

func (c *fakeClock) Advance(d int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	c.fire()
}

func (c *fakeClock) fire() {
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case t.at <= c.now:
			t.ch <- struct{}{}
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// TestDriverClock runs the driver loop on a fake clock: timers fire only
// when the clock reaches them, inputs are stamped with the clock, and the
// core's header carries the fake time.
func TestDriverClock(t *testing.T) {
	const t0 = int64(1_700_000_000e9)
	d := dssync.MutexWrap(ds.NewMapDatastore())
	n := driverNode(t, d)
	clk := &fakeClock{now: t0, armed: make(chan int64, 64)}
	n.clock = clk
	n.inbox, n.calls = make(chan input, MaxInbox), make(chan func())
	n.fetches = make(chan struct{}) // no fetch can start: this test has no network
	var err error
	if n.pool, err = mempool.Open(n.ctx, d, mempool.Config{ChainID: testChain}, t0); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); n.drive() }()
	defer func() { n.cancel(); <-done }()

	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached", what)
			}
			time.Sleep(time.Millisecond) // polling a condition
		}
	}
	p := testCommittee(t, 4).Params
	// An empty disk: the core waits for the amnesia answer and asks again
	// on its resend timer.
	if at := <-clk.armed; at != t0+p.ResendInterval {
		t.Fatalf("first timer at %d, want now + resend interval %d", at-t0, p.ResendInterval)
	}
	clk.Advance(p.ResendInterval - 1)
	select {
	case at := <-clk.armed:
		t.Fatalf("timer re-armed at %d before the clock reached the old one", at-t0)
	default:
	}
	clk.Advance(1)
	if at := <-clk.armed; at != t0+2*p.ResendInterval {
		t.Fatalf("after the tick: timer at %d, want %d", at-t0, 2*p.ResendInterval)
	}
	// The amnesia answer arrives: the core proposes round 1 at the clock's
	// time, persists the header and broadcasts it.
	clk.Advance(5)
	n.push(func(now int64) consensus.Event {
		return consensus.FetchResult{Now: now, HasOwnRound: true}
	}, true)
	wait("header broadcast", func() bool { return len(n.outbox[1]) > 0 })
	m, err := consensus.DecodeMessage(<-n.outbox[1])
	if err != nil || m.Header == nil {
		t.Fatalf("first message %+v, %v", m, err)
	}
	if want := t0 + p.ResendInterval + 5; m.Header.Round != 1 || m.Header.Time != want {
		t.Fatalf("header round %d time %d, want round 1 time %d", m.Header.Round, m.Header.Time-t0, want-t0)
	}
	recs, _, err := loadLog(context.Background(), d)
	if err != nil || len(recs) == 0 || recs[len(recs)-1].Own == nil || recs[len(recs)-1].Own.Time != m.Header.Time {
		t.Fatalf("own header not persisted: %d records, %v", len(recs), err)
	}
}

// TestEnqueue: released blocks are queued once, in height order, whether
// or not the executor has already taken the previous one; re-released
// heights are ignored and a gap is an error.
func TestEnqueue(t *testing.T) {
	e := executorState{last: 3}
	steps := []struct {
		height uint64
		pop    bool // pop before enqueueing
		queued int
		gap    bool
	}{
		{height: 1, queued: 0},
		{height: 3, queued: 0},
		{height: 4, queued: 1},
		{height: 4, queued: 1},
		{height: 5, pop: true, queued: 1}, // the executor took 4 and has not finished it
		{height: 7, queued: 1, gap: true},
		{height: 6, queued: 2},
	}
	for i, s := range steps {
		if s.pop {
			if _, ok := e.pop(); !ok {
				t.Fatalf("step %d: nothing to pop", i)
			}
		}
		err := e.enqueue(consensus.Released{Block: &order.Block{Height: s.height}})
		if errors.Is(err, ErrBlockGap) != s.gap || (err != nil && !s.gap) {
			t.Fatalf("step %d: height %d: %v, gap expected %v", i, s.height, err, s.gap)
		}
		if len(e.queue) != s.queued {
			t.Fatalf("step %d: %d queued, want %d", i, len(e.queue), s.queued)
		}
	}
}
