package node

import (
	"context"
	"fmt"
	"sync"
)

// heightSignal wakes the goroutines waiting for the served height to move.
// The zero value is ready to use.
type heightSignal struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next wake; nil while nobody waits
}

// changed returns a channel closed at the next wake.
func (s *heightSignal) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// wake releases every current waiter.
func (s *heightSignal) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// WaitHeight returns nil once the node serves height h (its block,
// transactions and receipts readable, as Status reports), or the error of
// ctx, or ErrStopped when the node stops first. A client waiting for its
// transaction's block uses it instead of polling the height: it returns as
// soon as the executor stored the block.
func (n *Node) WaitHeight(ctx context.Context, h uint64) error {
	for {
		// Take the channel before reading the height, so a block stored
		// in between still wakes this loop.
		ch := n.heights.changed()
		if got, _ := n.servedLatest(); got >= h {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return fmt.Errorf("%w: waiting for height %d", ErrStopped, h)
		}
	}
}
