package loadgen

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/types"
)

// DefaultBatchWorkers is how many batch requests to one API may be in
// flight at once (Gen.BatchWorkers): while one is served, the next
// collects the submissions that arrive meanwhile, so a batch grows with
// the API's latency and no submission waits for a timer.
const DefaultBatchWorkers = 2

// MaxBatchWorkers bounds Gen.BatchWorkers.
const MaxBatchWorkers = 64

// ErrRefused reports a transaction of a batch that the API refused; the
// message carries the API's code.
var ErrRefused = errors.New("loadgen: refused")

// submission is one transaction handed to an API's batcher; err is sent
// back on done.
type submission struct {
	raw  []byte
	done chan error
}

// batcher submits an API's transactions through POST /v1/txs/batch.
type batcher struct {
	c     *devnet.Client
	in    chan submission
	posts atomic.Int64 // requests sent
}

// newBatchers starts workers workers per client; they stop when
// close(b.in) or ctx ends.
func newBatchers(ctx context.Context, clients []*devnet.Client, workers int) []*batcher {
	out := make([]*batcher, len(clients))
	for i, c := range clients {
		b := &batcher{c: c, in: make(chan submission, api.MaxBatchTxs)}
		for range workers {
			go b.work(ctx)
		}
		out[i] = b
	}
	return out
}

// submit sends tx in the next batch and returns the API's verdict on it.
func (b *batcher) submit(tx *types.Tx) error {
	s := submission{raw: types.MustEncode(tx), done: make(chan error, 1)}
	b.in <- s
	return <-s.done
}

func (b *batcher) work(ctx context.Context) {
	for first := range b.in {
		group := []submission{first}
	more:
		for len(group) < api.MaxBatchTxs {
			select {
			case s, ok := <-b.in:
				if !ok {
					break more
				}
				group = append(group, s)
			default:
				break more
			}
		}
		errs := b.post(ctx, group)
		for i, s := range group {
			s.done <- errs[i]
		}
	}
}

// post submits group in one request; errs[i] is the verdict on group[i].
func (b *batcher) post(ctx context.Context, group []submission) []error {
	errs := make([]error, len(group))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	req := api.SubmitBatchRequest{Txs: make([]string, len(group))}
	for i, s := range group {
		req.Txs[i] = hex.EncodeToString(s.raw)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fail(err)
	}
	b.posts.Add(1)
	hr, err := http.NewRequestWithContext(ctx, "POST", b.c.Base+"/v1/txs/batch", bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	resp, err := b.c.HTTP.Do(hr)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, devnet.MaxResponseBytes))
	if err != nil {
		return fail(err)
	}
	var out api.SubmitBatchResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || len(out.Results) != len(group) {
		return fail(fmt.Errorf("%w: batch of %d: HTTP %d: %.200s", ErrRefused, len(group), resp.StatusCode, raw))
	}
	for i, r := range out.Results {
		if r.ID == nil {
			errs[i] = fmt.Errorf("%w: %s: %s", ErrRefused, r.Code, r.Message)
		}
	}
	return errs
}
