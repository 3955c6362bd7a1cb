package node

import (
	"context"
	"testing"
)

// TestCallWaitsForTakenFunction: a function the driver has taken runs to
// the end before call returns, even when the caller's context or the node
// ends meanwhile. Callers read what the function wrote (serveCerts returns
// its encoded answer, serveOwnRound the round it read) whatever call
// returns; returning at the cancellation while the driver still ran the
// function was a data race (seen once in TestCompactionRestart, a node
// stopped while serving a peer). Under -race the unsynchronized read is
// reported; without it the finished flag catches most interleavings.
func TestCallWaitsForTakenFunction(t *testing.T) {
	for _, stopNode := range []bool{false, true} {
		n := &Node{calls: make(chan func())}
		n.ctx, n.cancel = context.WithCancel(context.Background())
		n.running.Store(true)
		reqCtx, cancelReq := context.WithCancel(context.Background())
		go func() { // the driver
			f := <-n.calls
			if stopNode {
				n.cancel()
			} else {
				cancelReq()
			}
			f()
		}()
		var wrote []byte
		finished := false
		err := n.call(reqCtx, func() {
			wrote = []byte("answer")
			finished = true
		})
		if !finished || string(wrote) != "answer" {
			t.Fatalf("stop node=%v: call returned (%v) before the driver finished the function", stopNode, err)
		}
		cancelReq()
		n.cancel()
	}
}
