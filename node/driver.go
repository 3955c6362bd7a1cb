package node

import (
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/consensus"
)

// drive is the consensus driver: the only goroutine that touches the core.
// It stamps every input with the clock, performs the core's actions in
// order and keeps the one timer the core asks for.
func (n *Node) drive() {
	var timer <-chan struct{}
	stop := func() {}
	defer func() { stop() }()
	step := func(ev consensus.Event) bool {
		at, ok := n.perform(n.core.Step(ev))
		if !ok {
			return false
		}
		if at != nil {
			stop()
			timer, stop = n.clock.Timer(*at)
		}
		return true
	}
	if n.core == nil { // unit tests hand the driver a core of their own
		if err := n.startConsensus(); err != nil {
			if n.ctx.Err() == nil {
				n.halt(err)
			}
			return
		}
	}
	if !step(consensus.Start{Now: n.clock.Now()}) {
		return
	}
	// The mempool survives a restart: report its payloads again, with the
	// times they were first seen.
	for _, e := range n.pool.Entries() {
		if !step(consensus.TxSeen{Now: e.FirstSeen, ID: consensus.TxID(e.ID)}) {
			return
		}
	}
	for {
		var ev consensus.Event
		select {
		case <-n.ctx.Done():
			return
		case f := <-n.calls:
			f()
			continue
		case in := <-n.inbox:
			ev = in(n.clock.Now())
		case <-timer:
			timer = nil
			ev = consensus.Tick{Now: n.clock.Now()}
		}
		if !step(ev) {
			return
		}
	}
}

// perform carries out actions in order. Persist records are collected in
// one batch that is committed (synced: the store's pebble writes are
// synced) before the first send, broadcast or fetch after them, so nothing
// this node signed leaves it before it is durable. It returns the last
// timer asked for, and false when the node must stop.
func (n *Node) perform(acts []consensus.Action) (timer *int64, ok bool) {
	var batch ds.Batch
	flush := func() bool {
		if batch == nil {
			return true
		}
		err := batch.Commit(n.ctx)
		batch = nil
		if err != nil {
			n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
			return false
		}
		return true
	}
	for _, a := range acts {
		switch a := a.(type) {
		case consensus.Persist:
			if batch == nil {
				var err error
				if batch, err = n.d.Batch(n.ctx); err != nil {
					n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
					return nil, false
				}
			}
			if err := batch.Put(n.ctx, heightKey(nsLog, n.logSeq), consensus.EncodeRecord(&a.Rec)); err != nil {
				n.halt(fmt.Errorf("%w: %w", ErrPersist, err))
				return nil, false
			}
			n.logSeq++
		case consensus.Send:
			if !flush() {
				return nil, false
			}
			n.send(a.To, consensus.EncodeMessage(a.Msg))
		case consensus.Broadcast:
			if !flush() {
				return nil, false
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
			if !flush() {
				return nil, false
			}
			n.fetch(a)
		case consensus.SetTimer:
			at := a.At
			timer = &at
		case consensus.Released:
			if err := n.exe.enqueue(a); err != nil {
				n.halt(err)
				return nil, false
			}
			select {
			case n.blocks <- struct{}{}:
			default:
			}
		case consensus.Committed:
			// Sub-DAGs matter only through the blocks they release.
		}
	}
	n.round.Store(n.core.Round())
	st := n.core.Stats()
	n.invalid.Store(st.Invalid)
	n.conflicts.Store(st.Conflicts)
	return timer, flush()
}
