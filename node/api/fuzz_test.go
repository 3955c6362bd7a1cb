package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// stubBackend answers like an empty node that accepts nothing; the fuzz
// target is about request handling, not the node.
type stubBackend struct{}

func (stubBackend) SubmitTx(_ context.Context, raw []byte) (types.Hash, error) {
	_, err := types.DecodeTx(raw, chain, 0, types.DefaultTxLimits)
	return types.Hash{}, err
}
func (stubBackend) Pending(types.Hash) bool { return false }
func (stubBackend) Receipt(types.Hash) (*types.Receipt, uint64, error) {
	return nil, 0, node.ErrNotFound
}
func (stubBackend) Block(uint64) (*types.Block, types.Root, error) {
	return nil, types.Root{}, node.ErrNotFound
}
func (stubBackend) HeightTxs(uint64) ([]types.Hash, error) { return nil, node.ErrNotFound }
func (stubBackend) State(context.Context, types.StateKey, uint64, bool) (*node.StateValue, error) {
	return &node.StateValue{}, nil
}
func (stubBackend) Status() node.Status { return node.Status{} }
func (stubBackend) LatestCheckpoint() (*consensus.CheckpointCert, error) {
	return nil, node.ErrNotFound
}

// FuzzRequest: any method, path and body gets a response that is either a
// success or a JSON error with a code, never a 5xx.
func (stubBackend) Simulate(context.Context, *types.Tx) (*exec.SimResult, uint64, error) {
	return nil, 0, types.ErrTxSignature
}
func (stubBackend) Module(context.Context, types.Address) (*node.ModuleInfo, error) {
	return nil, node.ErrNotFound
}

func FuzzRequest(f *testing.F) {
	f.Add("POST", "/v1/txs", `{"tx":"00"}`)
	f.Add("GET", "/v1/txs/"+strings.Repeat("ab", 32), "")
	f.Add("GET", "/v1/blocks/1", "")
	f.Add("GET", "/v1/events?from=1:2", "")
	f.Add("POST", "/v1/simulate", `{"tx":"00"}`)
	f.Add("GET", "/v1/state/x/00?prove=1&height=2", "")
	h := Handler(stubBackend{}, nil)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") {
			method = "GET"
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+"/"+strings.TrimPrefix(path, "/"), strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		// A cancelled request context: the stub ignores it, and an event
		// stream (which follows the chain until the client leaves) ends.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req.WithContext(ctx))
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, path, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%s %q: %d with body %q", method, path, w.Code, w.Body)
			}
		}
	})
}
