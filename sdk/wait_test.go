package sdk

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kairos-network/kairos/types"
)

// fakeChain serves the three requests Wait makes. The transaction executes
// at height execAt; each block wait serves the next height, except that
// the first timeouts waits answer wait_timeout; without the wait endpoint,
// a height is served every poll.
type fakeChain struct {
	mu       sync.Mutex
	height   uint64
	execAt   uint64
	timeouts int
	noWait   bool
	log      []string
}

func (f *fakeChain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/status":
		fmt.Fprintf(w, `{"height":%d}`, f.height)
	case strings.HasPrefix(r.URL.Path, "/v1/txs/"):
		if f.noWait {
			f.height++ // time passes between polls
		}
		if f.height >= f.execAt {
			fmt.Fprintf(w, `{"status":"executed","height":%d,"receipt":{"status":"ok"}}`, f.execAt)
		} else {
			fmt.Fprint(w, `{"status":"pending"}`)
		}
	case strings.HasSuffix(r.URL.Path, "/wait") && !f.noWait:
		if f.timeouts > 0 {
			f.timeouts--
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":"wait_timeout","message":"not served"}`)
			return
		}
		var h uint64
		fmt.Sscanf(r.URL.Path, "/v1/blocks/%d/wait", &h)
		if h != f.height+1 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"code":"bad_request","message":"asked %d, served %d"}`, h, f.height)
			return
		}
		f.height = h
		fmt.Fprintf(w, `{"height":%d,"txs":[]}`, h)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"code":"not_found","message":"no such endpoint"}`)
	}
}

// TestWaitFollowsBlocks: Wait reads the transaction, then waits for each
// next block (asking again after a wait_timeout) and reads it again, with
// no poll in between; against a node without the wait endpoint it polls.
func TestWaitFollowsBlocks(t *testing.T) {
	cases := []struct {
		name string
		f    *fakeChain
		poll time.Duration
		want []string
	}{
		{"wait endpoint", &fakeChain{height: 5, execAt: 7, timeouts: 1}, time.Hour, []string{
			"/v1/txs/", "/v1/status", "/v1/blocks/6/wait", // wait_timeout
			"/v1/txs/", "/v1/blocks/6/wait",
			"/v1/txs/", "/v1/blocks/7/wait",
			"/v1/txs/"}},
		{"already executed", &fakeChain{height: 5, execAt: 3}, time.Hour, []string{"/v1/txs/"}},
		{"no wait endpoint", &fakeChain{height: 5, execAt: 9, noWait: true}, time.Millisecond, []string{
			"/v1/txs/", "/v1/status", "/v1/blocks/7/wait", // 404 no such endpoint: poll from now on
			"/v1/txs/", "/v1/txs/", "/v1/txs/"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.f)
			defer srv.Close()
			cl := NewClient(srv.URL, "chain", nil)
			cl.Poll = c.poll
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := cl.Wait(ctx, types.Hash{1})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != "executed" || r.Receipt == nil || r.Height != c.f.execAt {
				t.Fatalf("result %+v, want executed at %d", r, c.f.execAt)
			}
			var got []string
			for _, p := range c.f.log {
				if strings.HasPrefix(p, "/v1/txs/") {
					p = "/v1/txs/"
				}
				got = append(got, p)
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("requests\n%v\nwant\n%v", got, c.want)
			}
		})
	}
}
