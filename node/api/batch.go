package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/types"
)

// MaxBatchTxs caps the transactions of one POST /v1/txs/batch (the body
// stays under MaxBodyBytes as well). It matches the gossip batch, so a
// full client batch travels to the peers as about one message.
const MaxBatchTxs = 512

// ErrBatch reports a batch body that breaks the endpoint's rules; the
// handler answers it with CodeBadRequest.
var ErrBatch = errors.New("api: bad batch")

// BatchBackend is a Backend that submits many transactions at once, with
// one signature batch and one group commit (found by type assertion; a
// Backend without it gets them submitted one by one).
type BatchBackend interface {
	SubmitTxs(ctx context.Context, raws [][]byte) []node.Submitted
}

// SubmitBatchRequest is the body of POST /v1/txs/batch.
type SubmitBatchRequest struct {
	Txs []string `json:"txs"` // hex of each transaction's canonical bytes
}

// BatchResult is the outcome of one transaction of a batch: its id, or the
// error POST /v1/txs would have answered for it.
type BatchResult struct {
	ID      *types.Hash `json:"id,omitempty"`
	Code    string      `json:"code,omitempty"`
	Message string      `json:"message,omitempty"`
}

// SubmitBatchResponse answers POST /v1/txs/batch: Results[i] is the
// outcome of Txs[i], as if each had been submitted alone in that order.
type SubmitBatchResponse struct {
	Results []BatchResult `json:"results"`
}

// decodeBatch parses a batch body into raw transactions.
func decodeBatch(body []byte) ([][]byte, error) {
	var req SubmitBatchRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return nil, fmt.Errorf("%w: body must be one JSON object {\"txs\": [hex, ...]}: %v", ErrBatch, err)
	}
	if len(req.Txs) == 0 || len(req.Txs) > MaxBatchTxs {
		return nil, fmt.Errorf("%w: %d transactions (1..%d)", ErrBatch, len(req.Txs), MaxBatchTxs)
	}
	raws := make([][]byte, len(req.Txs))
	for i, h := range req.Txs {
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("%w: tx %d must be non-empty hex", ErrBatch, i)
		}
		raws[i] = raw
	}
	return raws, nil
}

func (s *server) submitBatch(w http.ResponseWriter, r *http.Request) {
	body := readBody(w, r)
	if body == nil {
		return
	}
	raws, err := decodeBatch(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	var subs []node.Submitted
	if bb, ok := s.b.(BatchBackend); ok {
		subs = bb.SubmitTxs(r.Context(), raws)
	} else {
		subs = make([]node.Submitted, len(raws))
		for i, raw := range raws {
			subs[i].ID, subs[i].Err = s.b.SubmitTx(r.Context(), raw)
		}
	}
	out := SubmitBatchResponse{Results: make([]BatchResult, len(subs))}
	for i, sub := range subs {
		if sub.Err != nil {
			_, code := s.classify(sub.Err)
			out.Results[i] = BatchResult{Code: code, Message: sub.Err.Error()}
			continue
		}
		out.Results[i].ID = &sub.ID
	}
	writeJSON(w, http.StatusOK, out)
}
