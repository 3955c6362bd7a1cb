package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/types"
)

// chainStub is a Backend whose served height the test moves; only what
// the wait endpoint uses is implemented (the rest panics, and the
// handler's recover would turn that into code internal).
type chainStub struct {
	Backend
	mu      sync.Mutex
	height  uint64
	moved   chan struct{} // closed when height moves
	waiting int           // WaitHeight calls in progress
	stopped bool
}

func newChainStub(h uint64) *chainStub { return &chainStub{height: h, moved: make(chan struct{})} }

func (c *chainStub) Status() node.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return node.Status{Height: c.height}
}

func (c *chainStub) Block(h uint64) (*types.Block, types.Root, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h == 0 || h > c.height {
		return nil, types.Root{}, fmt.Errorf("%w: block %d", node.ErrNotFound, h)
	}
	return &types.Block{Height: h, Txs: []types.OrderedTx{{ID: types.Hash{byte(h)}, TS: int64(h)}}}, types.Root{}, nil
}

func (c *chainStub) WaitHeight(ctx context.Context, h uint64) error {
	c.mu.Lock()
	c.waiting++
	defer func() {
		c.mu.Lock()
		c.waiting--
		c.mu.Unlock()
	}()
	for {
		if c.stopped {
			c.mu.Unlock()
			return fmt.Errorf("%w: stub", node.ErrStopped)
		}
		if c.height >= h {
			c.mu.Unlock()
			return nil
		}
		moved := c.moved
		c.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
}

// set moves the served height (or stops the stub) and wakes the waiters.
func (c *chainStub) set(h uint64, stop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.height, c.stopped = h, stop
	close(c.moved)
	c.moved = make(chan struct{})
}

func (c *chainStub) waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// waitUntil polls cond with a deadline (no fixed sleeps in assertions).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func decodeError(t *testing.T, b []byte) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e
}

// TestWaitBlockAnswers: every answer of the endpoint that does not depend
// on timing: bad input, a served block at once, a wait that times out, a
// stopped backend.
func TestWaitBlockAnswers(t *testing.T) {
	stub := newChainStub(5)
	srv := httptest.NewServer(Handler(stub, nil))
	t.Cleanup(srv.Close)
	cases := []struct {
		name, path string
		status     int
		code       string // "" = a block answer of height want
		want       uint64
	}{
		{"served block", "/v1/blocks/3/wait", 200, "", 3},
		{"served height itself", "/v1/blocks/5/wait?timeout=0s", 200, "", 5},
		{"height zero", "/v1/blocks/0/wait", 404, CodeNotFound, 0},
		{"height not a number", "/v1/blocks/x/wait", 400, CodeBadRequest, 0},
		{"timeout not a duration", "/v1/blocks/6/wait?timeout=soon", 400, CodeBadRequest, 0},
		{"timeout negative", "/v1/blocks/6/wait?timeout=-1s", 400, CodeBadRequest, 0},
		{"timeout over MaxWait", "/v1/blocks/6/wait?timeout=" + (MaxWait + time.Millisecond).String(), 400, CodeBadRequest, 0},
		{"too far ahead", fmt.Sprintf("/v1/blocks/%d/wait", 5+MaxWaitAhead+1), 400, CodeBadRequest, 0},
		{"timeout passes", "/v1/blocks/6/wait?timeout=1ms", 404, CodeWaitTimeout, 0},
		{"wrong method", "/v1/blocks/3/wait", 405, CodeMethodNotAllowed, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "GET"
			if c.status == 405 {
				method = "POST"
			}
			status, body := do(t, method, srv.URL+c.path, "")
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if c.code != "" {
				if e := decodeError(t, body); e.Code != c.code {
					t.Fatalf("code %q, want %q: %s", e.Code, c.code, body)
				}
				return
			}
			var b BlockResponse
			if err := json.Unmarshal(body, &b); err != nil || b.Height != c.want || len(b.Txs) != 1 {
				t.Fatalf("block %+v (%v), want height %d with its tx", b, err, c.want)
			}
		})
	}
	stub.set(5, true)
	if status, body := do(t, "GET", srv.URL+"/v1/blocks/6/wait", ""); status != 503 || decodeError(t, body).Code != CodeHalted {
		t.Fatalf("stopped backend: %d %s, want 503 %s", status, body, CodeHalted)
	}
}

// TestWaitBlockReturnsWhenServed: a request for the next height is held
// until the backend serves it and then answers that block; a client that
// leaves frees its slot.
func TestWaitBlockReturnsWhenServed(t *testing.T) {
	stub := newChainStub(1)
	srv := httptest.NewServer(Handler(stub, nil))
	t.Cleanup(srv.Close)
	type answer struct {
		status int
		body   []byte
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/v1/blocks/3/wait?timeout=" + MaxWait.String())
		if err != nil {
			got <- answer{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		got <- answer{resp.StatusCode, b}
	}()
	waitUntil(t, "the request to wait", func() bool { return stub.waiters() == 1 })
	stub.set(2, false) // not yet the height asked for
	select {
	case a := <-got:
		t.Fatalf("answered at height 2: %d %s", a.status, a.body)
	default:
	}
	waitUntil(t, "the request to wait again", func() bool { return stub.waiters() == 1 })
	stub.set(3, false)
	a := <-got
	var b BlockResponse
	if a.status != 200 || json.Unmarshal(a.body, &b) != nil || b.Height != 3 {
		t.Fatalf("answer %d %s, want block 3", a.status, a.body)
	}

	// A client that gives up does not keep a waiter.
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/blocks/9/wait?timeout="+MaxWait.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, "the second request to wait", func() bool { return stub.waiters() == 1 })
	cancel()
	<-done
	waitUntil(t, "the waiter to leave", func() bool { return stub.waiters() == 0 })
}

// TestWaitBlockLimit: over MaxWaiters waiting requests, the next is refused
// with too_many_waiters; one for a served block still answers (it does not
// wait).
func TestWaitBlockLimit(t *testing.T) {
	stub := newChainStub(1)
	s := &server{b: stub}
	wt := newWaiter(s, stub)
	for range MaxWaiters {
		wt.slots <- struct{}{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/blocks/{height}/wait", wt.serve)
	for _, c := range []struct {
		path   string
		status int
	}{{"/v1/blocks/2/wait", 503}, {"/v1/blocks/1/wait", 200}} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.status {
			t.Fatalf("%s: %d %s, want %d", c.path, rec.Code, rec.Body, c.status)
		}
		if c.status == 503 && decodeError(t, rec.Body.Bytes()).Code != CodeTooManyWaiters {
			t.Fatalf("%s: %s, want %s", c.path, rec.Body, CodeTooManyWaiters)
		}
	}
}

// eventStub is a chainStub whose every height settles one transaction
// with one event, so the event stream can follow it.
type eventStub struct{ *chainStub }

func (e eventStub) HeightTxs(h uint64) ([]types.Hash, error) {
	if _, _, err := e.Block(h); err != nil {
		return nil, err
	}
	return []types.Hash{{byte(h)}}, nil
}

func (e eventStub) Receipt(id types.Hash) (*types.Receipt, uint64, error) {
	return &types.Receipt{TxID: id, Events: []types.Event{{Topic: "t", Data: []byte{id[0]}}}}, uint64(id[0]), nil
}

// TestEventStreamWaitsForHeights: a caught-up stream on a backend that
// can wait for a height waits in WaitHeight (no polling) and sends the
// next block's events as soon as it is served; a stopping node ends it.
func TestEventStreamWaitsForHeights(t *testing.T) {
	c := newChainStub(1)
	srv := httptest.NewServer(Handler(eventStub{c}, nil))
	defer srv.Close()
	got := make(chan []sseEvent, 1)
	go func() { got <- readEvents(t, srv.URL, "2", 1) }()
	waitUntil(t, "the stream waits for height 2", func() bool { return c.waiters() == 1 })
	c.set(2, false)
	ev := <-got
	if ev[0].data.Height != 2 || ev[0].data.Data != "02" {
		t.Fatalf("event %+v, want height 2's", ev[0])
	}
	// The reader left after one event: its request context ends the wait.
	waitUntil(t, "the stream's wait ends with its client", func() bool { return c.waiters() == 0 })
}
