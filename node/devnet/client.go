package devnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// ErrClient reports an API answer the client cannot use.
var ErrClient = errors.New("devnet: API client")

// MaxResponseBytes bounds one API answer the client reads (a state value of
// StateValueMax with its proof, in hex, fits).
const MaxResponseBytes = 8 << 20

// receiptPoll spaces the polls of a pending transaction.
const receiptPoll = 20 * time.Millisecond

// Client talks to one validator's HTTP API, as a wallet would: it signs
// transactions locally and only submits and reads through the API.
type Client struct {
	Base string // http://127.0.0.1:port
	HTTP *http.Client
}

// NewClient returns a client of the API at base.
func NewClient(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			return fmt.Errorf("%w: %s %s: %s: %s", ErrClient, method, path, e.Code, e.Message)
		}
		return fmt.Errorf("%w: %s %s: HTTP %d", ErrClient, method, path, resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrClient, method, path, err)
	}
	return nil
}

// Submit sends a signed transaction and returns its id.
func (c *Client) Submit(ctx context.Context, tx *types.Tx) (types.Hash, error) {
	var r api.SubmitResponse
	err := c.do(ctx, "POST", "/v1/txs", api.SubmitRequest{Tx: hex.EncodeToString(types.MustEncode(tx))}, &r)
	return r.ID, err
}

// Receipt polls the transaction until it is executed or ctx ends.
func (c *Client) Receipt(ctx context.Context, id types.Hash) (*api.TxResponse, error) {
	for {
		var r api.TxResponse
		if err := c.do(ctx, "GET", "/v1/txs/"+id.String(), nil, &r); err != nil {
			return nil, err
		}
		if r.Status == "executed" {
			if r.Receipt == nil {
				return nil, fmt.Errorf("%w: executed tx %s without a receipt", ErrClient, id)
			}
			return &r, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for tx %s: %w", id, ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
}

// Status is the part of GET /v1/status the client uses.
type Status struct {
	Height           uint64 `json:"height"`
	CheckpointHeight uint64 `json:"checkpoint_height"`
	Peers            int    `json:"peers"`
	StateRoot        string `json:"state_root"`
	Halted           string `json:"halted"`
}

// Status reads the validator's progress.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Block reads the executed block at height h.
func (c *Client) Block(ctx context.Context, h uint64) (*api.BlockResponse, error) {
	var b api.BlockResponse
	return &b, c.do(ctx, "GET", fmt.Sprintf("/v1/blocks/%d", h), nil, &b)
}

// WaitBlock asks for block h and waits on the node up to wait for it to
// be served (GET /v1/blocks/{h}/wait). ok is false when wait passed first
// (api.CodeWaitTimeout); the caller asks again.
func (c *Client) WaitBlock(ctx context.Context, h uint64, wait time.Duration) (b *api.BlockResponse, ok bool, err error) {
	b = &api.BlockResponse{}
	err = c.do(ctx, "GET", fmt.Sprintf("/v1/blocks/%d/wait?timeout=%s", h, wait), nil, b)
	if err != nil && strings.Contains(err.Error(), ": "+api.CodeWaitTimeout+": ") {
		return nil, false, nil
	}
	return b, err == nil, err
}

// State reads a key at height (0 = latest), with its proof when prove.
func (c *Client) State(ctx context.Context, k types.StateKey, height uint64, prove bool) (*api.StateResponse, error) {
	q := url.Values{}
	if height != 0 {
		q.Set("height", fmt.Sprint(height))
	}
	if prove {
		q.Set("prove", "1")
	}
	var s api.StateResponse
	return &s, c.do(ctx, "GET", "/v1/state/"+k.Module.String()+"/"+hex.EncodeToString(k.Key)+"?"+q.Encode(), nil, &s)
}

// Checkpoint reads the highest checkpoint certificate.
func (c *Client) Checkpoint(ctx context.Context) (*api.CheckpointResponse, error) {
	var cp api.CheckpointResponse
	return &cp, c.do(ctx, "GET", "/v1/checkpoints/latest", nil, &cp)
}

// Nonce reads the nonce of a's last executed transaction (0 = none).
func (c *Client) Nonce(ctx context.Context, a types.Address) (uint64, error) {
	s, err := c.State(ctx, types.StateKey{Module: exec.AccountsModule, Key: a[:]}, 0, false)
	if err != nil || s.Value == nil {
		return 0, err
	}
	b, err := hex.DecodeString(*s.Value)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("%w: account nonce %q", ErrClient, *s.Value)
	}
	return binary.BigEndian.Uint64(b), nil
}
