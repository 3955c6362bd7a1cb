package api

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/types"
)

func batchBody(raws ...[]byte) string {
	var req SubmitBatchRequest
	for _, raw := range raws {
		req.Txs = append(req.Txs, hex.EncodeToString(raw))
	}
	b, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestBatchErrors: a batch body that breaks the endpoint's rules is
// refused whole with a stable code, whatever backend serves it.
func TestBatchErrors(t *testing.T) {
	srv := httptest.NewServer(Handler(stubBackend{}, nil))
	defer srv.Close()
	tx := counterTx(1, "k", nil)
	many := make([][]byte, MaxBatchTxs+1)
	for i := range many {
		many[i] = tx
	}
	cases := []struct {
		name, method, body string
		status             int
		code               string
	}{
		{"empty body", "POST", "", 400, CodeBadRequest},
		{"not json", "POST", "\x00", 400, CodeBadRequest},
		{"array", "POST", "[]", 400, CodeBadRequest},
		{"unknown field", "POST", `{"txs":["00"],"x":1}`, 400, CodeBadRequest},
		{"two objects", "POST", `{"txs":["00"]}{}`, 400, CodeBadRequest},
		{"no txs", "POST", `{"txs":[]}`, 400, CodeBadRequest},
		{"too many", "POST", batchBody(many...), 400, CodeBadRequest},
		{"entry not hex", "POST", `{"txs":["00","zz"]}`, 400, CodeBadRequest},
		{"entry empty", "POST", `{"txs":[""]}`, 400, CodeBadRequest},
		{"body too large", "POST", `{"txs":["` + strings.Repeat("0", MaxBodyBytes) + `"]}`, 413, CodeBodyTooLarge},
		{"wrong method", "GET", "", 405, CodeMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, c.method, srv.URL+"/v1/txs/batch", c.body)
			var e Error
			if err := json.Unmarshal(body, &e); err != nil || status != c.status || e.Code != c.code || e.Message == "" {
				t.Fatalf("got %d %s (%v), want %d %s", status, body, err, c.status, c.code)
			}
		})
	}
}

// TestSubmitBatch: on a real node, each transaction of a batch gets the
// answer POST /v1/txs gives it alone (the id, or the same error code), and
// the accepted ones are executed.
func TestSubmitBatch(t *testing.T) {
	n, srv := newNode(t)
	a, b := counterTx(1, "k", nil), counterTx(2, "j", nil)
	badSig := counterTx(3, "k", nil)
	badSig[len(badSig)-1] ^= 1
	wrongChain := counterTx(4, "k", func(b *types.TxBody) { b.ChainID = "x" })
	raws := [][]byte{a, badSig, b, a, wrongChain, {0xff}}
	status, body := do(t, "POST", srv.URL+"/v1/txs/batch", batchBody(raws...))
	var resp SubmitBatchResponse
	if err := json.Unmarshal(body, &resp); status != http.StatusOK || err != nil || len(resp.Results) != len(raws) {
		t.Fatalf("batch: %d %s %v", status, body, err)
	}
	for i, raw := range raws {
		got := resp.Results[i]
		// Alone, after the batch: a held transaction answers its id again.
		status, body := do(t, "POST", srv.URL+"/v1/txs", submitBody(raw))
		var sub SubmitResponse
		var e Error
		switch {
		case status == http.StatusAccepted && json.Unmarshal(body, &sub) == nil:
			if got.ID == nil || *got.ID != sub.ID || got.Code != "" {
				t.Fatalf("tx %d: batch %+v, alone id %s", i, got, sub.ID)
			}
		case json.Unmarshal(body, &e) == nil && e.Code != "":
			if got.ID != nil || got.Code != e.Code || got.Message == "" {
				t.Fatalf("tx %d: batch %+v, alone %d %s", i, got, status, e.Code)
			}
		default:
			t.Fatalf("tx %d alone: %d %s", i, status, body)
		}
	}
	for _, i := range []int{0, 2} {
		id := *resp.Results[i].ID
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, _, err := n.Receipt(id); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch tx %d (%s) not executed; node %+v", i, id, n.Status())
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
}

// FuzzDecodeBatch: any body decodes to a bounded list of non-empty
// transactions or fails with ErrBatch, and never panics.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"txs":["00","ab"]}`))
	f.Add([]byte(`{"txs":[]}`))
	f.Add([]byte(`{"txs":["0"]}`))
	f.Add([]byte(`{"txs":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, err := decodeBatch(body)
		if err != nil {
			if !errors.Is(err, ErrBatch) {
				t.Fatalf("error without ErrBatch: %v", err)
			}
			return
		}
		if len(raws) == 0 || len(raws) > MaxBatchTxs {
			t.Fatalf("%d transactions accepted", len(raws))
		}
		for i, raw := range raws {
			if len(raw) == 0 {
				t.Fatalf("tx %d empty", i)
			}
		}
	})
}
