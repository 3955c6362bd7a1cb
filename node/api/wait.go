package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Limits of GET /v1/blocks/{height}/wait.
const (
	// MaxWaiters caps the requests waiting for a block at once: each holds
	// a goroutine and a connection.
	MaxWaiters = 256
	// MaxWait bounds how long one request waits (?timeout=), so that a
	// client always hears back and a stuck chain holds no connection for
	// long.
	MaxWait = 10 * time.Second
	// DefaultWait is the wait without ?timeout=.
	DefaultWait = 2 * time.Second
	// MaxWaitAhead bounds how far above the served height a client may
	// wait: a block that far off is not coming within MaxWait anyway.
	MaxWaitAhead = 1 << 20
)

// Codes of GET /v1/blocks/{height}/wait.
const (
	// CodeTooManyWaiters answers a wait request over MaxWaiters.
	CodeTooManyWaiters = "too_many_waiters"
	// CodeWaitTimeout answers a wait whose timeout passed before the
	// height was served (HTTP 404: the block does not exist yet).
	CodeWaitTimeout = "wait_timeout"
)

// HeightWaiter is a Backend that can block until it serves a height;
// *node.Node implements it. GET /v1/blocks/{height}/wait exists only for
// such a backend (found by type assertion, like MetricsBackend).
type HeightWaiter interface {
	// WaitHeight returns nil once height h is served, or an error when
	// ctx ends or the backend stops first.
	WaitHeight(ctx context.Context, h uint64) error
}

// waiter serves GET /v1/blocks/{height}/wait?timeout=D: the answer of GET
// /v1/blocks/{height} as soon as that block is served (at once if it is
// already), or 404 wait_timeout when D (default DefaultWait, at most MaxWait)
// passes first. A client that follows the chain asks for the next height
// again after a wait_timeout; it learns of each block when the node stores it
// instead of one poll period later, with one request per block.
type waiter struct {
	s     *server
	hw    HeightWaiter
	slots chan struct{} // a semaphore of MaxWaiters
}

func newWaiter(s *server, hw HeightWaiter) *waiter {
	return &waiter{s: s, hw: hw, slots: make(chan struct{}, MaxWaiters)}
}

func (wt *waiter) serve(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "height: "+err.Error())
		return
	}
	d := DefaultWait
	if ts := r.URL.Query().Get("timeout"); ts != "" {
		if d, err = time.ParseDuration(ts); err != nil || d < 0 || d > MaxWait {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("timeout %q: want a duration in [0, %v]", ts, MaxWait))
			return
		}
	}
	if served := wt.s.b.Status().Height; h > served {
		if h-served > MaxWaitAhead {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("height %d is more than %d above the served height %d", h, MaxWaitAhead, served))
			return
		}
		select {
		case wt.slots <- struct{}{}:
			defer func() { <-wt.slots }()
		default:
			writeError(w, http.StatusServiceUnavailable, CodeTooManyWaiters, fmt.Sprintf("over %d waiting requests", MaxWaiters))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		err := wt.hw.WaitHeight(ctx, h)
		cancel()
		switch {
		case err == nil:
		case r.Context().Err() != nil:
			return // the client left
		case errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusNotFound, CodeWaitTimeout, fmt.Sprintf("height %d not served within %v", h, d))
			return
		default:
			wt.s.fail(w, err) // the node stopped: halted
			return
		}
	}
	wt.s.block(w, r)
}
