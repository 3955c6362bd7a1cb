package node

import (
	"context"
	"fmt"
	"time"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/consensus"
)

// Limits of the driver's group commit.
const (
	// MaxGroupSteps bounds the inputs the driver steps before it commits
	// their records and sends what they produced: steps take microseconds,
	// a synced commit milliseconds, so inputs that queued up during one
	// commit share the next one.
	MaxGroupSteps = 64
	// MaxDeferredRecords and MaxDeferredBytes bound the records that need
	// no sync (peers' certificates) kept in the open batch while no synced
	// record follows them.
	MaxDeferredRecords = 256
	MaxDeferredBytes   = 8 << 20
)

// drive is the consensus driver: the only goroutine that touches the core.
// It stamps every input with the clock, performs the core's actions in
// order and keeps the one timer the core asks for.
func (n *Node) drive() {
	var timer <-chan struct{}
	stop := func() {}
	defer func() { stop() }()
	var g group
	defer n.closeLog(&g)
	// release commits the group's records if needed and performs its
	// messages, then arms the last timer the core asked for.
	release := func() bool {
		at, ok := n.release(&g)
		if ok && at != nil {
			stop()
			timer, stop = n.clock.Timer(*at)
		}
		return ok
	}
	if n.core == nil { // unit tests hand the driver a core of their own
		if err := n.startConsensus(); err != nil {
			if n.ctx.Err() == nil {
				n.halt(err)
			}
			return
		}
	}
	step := func(ev consensus.Event) bool {
		if m, ok := ev.(consensus.MsgIn); ok && m.Msg != nil && m.Msg.Header != nil {
			n.lat.header(m.Msg.Header, m.Now)
		}
		return n.stage(&g, n.core.Step(ev))
	}
	// start steps a new core's Start, then reports the mempool's payloads
	// again, with the times they were first seen (the pool survives a
	// restart, and a core replaced by a catch-up while running).
	start := func() bool {
		if !step(consensus.Start{Now: n.clock.Now()}) || !release() {
			return false
		}
		for _, e := range n.pool.Entries() {
			if !step(consensus.TxSeen{Now: e.FirstSeen, ID: consensus.TxID(e.ID)}) || !release() {
				return false
			}
		}
		return true
	}
	if !start() {
		return
	}
	for {
		var ev consensus.Event
		select {
		case <-n.ctx.Done():
			return
		case f := <-n.calls:
			// Calls read the core between groups, when everything it
			// produced so far is committed or needs no sync.
			f()
			if n.sync.coreReplaced { // by rejoin
				n.sync.coreReplaced = false
				if !start() {
					return
				}
			}
			continue
		case in := <-n.inbox:
			n.lat.inboxDepth.Observe(float64(len(n.inbox)))
			ev = in(n.clock.Now())
		case <-timer:
			timer = nil
			ev = consensus.Tick{Now: n.clock.Now()}
		}
		if !step(ev) {
			return
		}
		// Group commit: step whatever else is already waiting, then
		// commit once and send.
	more:
		for steps := 1; steps < MaxGroupSteps; steps++ {
			select {
			case in := <-n.inbox:
				if !step(in(n.clock.Now())) {
					return
				}
			default:
				break more
			}
		}
		if !release() {
			return
		}
	}
}

// group is what the driver's steps produced since the last release: the
// open batch of log records and the messages that must wait for it.
type group struct {
	batch   ds.Batch
	records int  // in batch
	bytes   int  // encoded records in batch
	sync    bool // batch holds a record that must be durable before sends
	out     []consensus.Action
	timer   *int64
}

// stage takes one step's actions: records go into the open batch, sends,
// broadcasts and fetches wait for release, released blocks go to the
// executor at once. It returns false when the node must stop.
func (n *Node) stage(g *group, acts []consensus.Action) bool {
	for _, a := range acts {
		switch a := a.(type) {
		case consensus.Persist:
			if g.batch == nil {
				var err error
				if g.batch, err = n.d.Batch(n.ctx); err != nil {
					n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
					return false
				}
			}
			rec := consensus.EncodeRecord(&a.Rec)
			if err := g.batch.Put(n.ctx, heightKey(nsLog, n.logSeq), rec); err != nil {
				n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
				return false
			}
			n.logSeq++
			g.records++
			g.bytes += len(rec)
			g.sync = g.sync || a.Sync
			if a.Rec.Own != nil {
				n.lat.ownHeader(a.Rec.Own)
			} else if a.Rec.Cert != nil && a.Rec.Cert.Header.Author == n.me {
				n.lat.ownCert(a.Rec.Cert.Header.Round)
			}
		case consensus.Send:
			if a.Msg.Vote != nil {
				n.lat.voted(a.Msg.Vote)
			}
			g.out = append(g.out, a)
		case consensus.Broadcast, consensus.Fetch:
			g.out = append(g.out, a)
		case consensus.SetTimer:
			at := a.At
			g.timer = &at
		case consensus.Released:
			n.lat.released(a.Block)
			if err := n.exe.enqueue(a); err != nil {
				n.halt(err)
				return false
			}
			select {
			case n.blocks <- struct{}{}:
			default:
			}
		case consensus.Committed:
			// Sub-DAGs matter only through the blocks they release (and
			// the latency histograms).
			n.lat.committed(n.me, a.Certs)
		}
	}
	n.round.Store(n.core.Round())
	st := n.core.Stats()
	n.invalid.Store(st.Invalid)
	n.conflicts.Store(st.Conflicts)
	n.anchors.Store(st.Anchors)
	n.leaderWaits.Store(st.LeaderWaits)
	return true
}

// release commits the open batch if it holds a synced record (own header,
// vote, own certificate) or too many deferred ones, and then performs the
// group's messages in order: nothing this node signed leaves it before it
// is durable (the store's pebble writes are synced). Records that need no
// sync stay in the open batch for the next commit; the log stays a prefix
// because batches commit in order. It returns the last timer asked for,
// and false when the node must stop.
func (n *Node) release(g *group) (timer *int64, ok bool) {
	if g.batch != nil && (g.sync || g.records >= MaxDeferredRecords || g.bytes >= MaxDeferredBytes) && !n.commitLog(g) {
		return nil, false
	}
	for _, a := range g.out {
		switch a := a.(type) {
		case consensus.Send:
			n.send(a.To, consensus.EncodeMessage(a.Msg))
		case consensus.Broadcast:
			if a.Msg.Header != nil {
				// The header acks transactions that may still wait for
				// their gossip batch: send it first, so that the peers
				// need not fetch them to vote.
				n.txOut.flush()
			}
			data := consensus.EncodeMessage(a.Msg)
			n.broadcast(data)
			if a.Msg.Cert != nil {
				select {
				case n.gossip <- data:
				default:
					n.dropped.Add(1)
				}
			}
		case consensus.Fetch:
			n.fetch(a)
		}
	}
	timer = g.timer
	g.out, g.timer = g.out[:0], nil
	return timer, true
}

// commitLog commits the open batch (synced); a failure halts the node.
func (n *Node) commitLog(g *group) bool {
	start := time.Now()
	err := g.batch.Commit(n.ctx)
	n.lat.commit.Observe(time.Since(start).Seconds())
	g.batch, g.records, g.bytes, g.sync = nil, 0, 0, false
	if err != nil {
		n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
		return false
	}
	return true
}

// closeLog commits deferred records when the driver stops, so a clean
// shutdown keeps them (a crash may lose them: they are fetched again).
func (n *Node) closeLog(g *group) {
	if g.batch != nil && n.Err() == nil {
		if err := g.batch.Commit(context.Background()); err != nil {
			n.log.Warn("commit deferred consensus records at stop", "err", err)
		}
	}
}
