package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kairos-network/kairos/types"
)

// TestWaitHeight: a wait for the next height returns once the node serves
// it (and not before), a cancelled wait returns the context's error, and a
// wait on a stopped node ErrStopped.
func TestWaitHeight(t *testing.T) {
	c := newCluster(t, 4)
	nd := c.nodes[0]
	h0 := nd.Status().Height
	done := make(chan error, 1)
	go func() { done <- nd.WaitHeight(context.Background(), h0+1) }()
	ids := c.submit(0, 4)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait for height %d: %v", h0+1, err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("height %d not served within a minute: %+v", h0+1, nd.Status())
	}
	if h, _ := nd.servedLatest(); h < h0+1 {
		t.Fatalf("wait returned at served height %d, want >= %d", h, h0+1)
	}
	c.waitFor("receipts", 30*time.Second, func() bool { return c.executedAll(nd, ids) })

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := nd.WaitHeight(ctx, 1<<40); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want %v", err, context.Canceled)
	}
	stopped := c.nodes[0]
	c.stop(0)
	if err := stopped.WaitHeight(context.Background(), 1<<40); !errors.Is(err, ErrStopped) {
		t.Fatalf("wait on a stopped node: %v, want %v", err, ErrStopped)
	}
}

// TestHeightSignal: a wake closes the channel every current waiter holds,
// and only that one; later waiters get a new channel. This is what makes
// WaitHeight return when the served height moves; it has no recheck timer.
func TestHeightSignal(t *testing.T) {
	var s heightSignal
	s.wake() // nobody waits: nothing to close
	a, b := s.changed(), s.changed()
	if a != b {
		t.Fatal("two waiters before a wake got different channels")
	}
	select {
	case <-a:
		t.Fatal("closed before a wake")
	default:
	}
	s.wake()
	<-a // closed, or the test hangs until its deadline
	next := s.changed()
	select {
	case <-next:
		t.Fatal("a waiter after the wake sees it")
	default:
	}
}

// TestWaitHeightWakesOnSetServed: a waiter blocked on its channel returns
// when the served height is set by any path (a catch-up or a state sync
// calls setServed as the executor does). Without the wake it would block
// until the test's deadline.
func TestWaitHeightWakesOnSetServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := &Node{ctx: ctx}
	done := make(chan error, 1)
	go func() { done <- n.WaitHeight(ctx, 7) }()
	for blocked := false; !blocked; { // until the waiter holds its channel
		n.heights.mu.Lock()
		blocked = n.heights.ch != nil
		n.heights.mu.Unlock()
		select {
		case err := <-done:
			t.Fatalf("returned before the height moved: %v", err)
		case <-ctx.Done():
			t.Fatal("the waiter never blocked")
		case <-time.After(time.Millisecond):
		}
	}
	n.setServed(7, types.Root{})
	if err := <-done; err != nil {
		t.Fatalf("wait for a height set by setServed: %v", err)
	}
}
