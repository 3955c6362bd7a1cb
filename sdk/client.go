package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/kairos-network/kairos/types"
)

// Client errors.
var (
	// ErrAPI wraps every error answer of the node; errors.As gives the
	// *APIError with its stable code.
	ErrAPI = errors.New("sdk: API error")
	// ErrResponse reports an answer the client cannot use.
	ErrResponse = errors.New("sdk: malformed API response")
	// ErrTxFailed reports a transaction executed with a status other
	// than ok; the receipt is returned alongside.
	ErrTxFailed = errors.New("sdk: transaction failed")
	// ErrProof reports a state proof that does not prove the value
	// served against the certified root.
	ErrProof = errors.New("sdk: state proof rejected")
	// ErrConfig reports a client missing what an operation needs.
	ErrConfig = errors.New("sdk: client not configured")
)

// Limits and defaults.
const (
	// MaxResponseBytes bounds one API answer the client reads (a state
	// value of StateValueMax with its proof, in hex, fits).
	MaxResponseBytes = 8 << 20
	// DefaultPoll spaces the polls of a pending transaction against a
	// node without GET /v1/blocks/{height}/wait (see Wait).
	DefaultPoll = 20 * time.Millisecond
	// DefaultValidity is how long a transaction built by Call stays valid.
	DefaultValidity = time.Minute
	// SimulateGas is the gas limit of the simulation Call runs first.
	SimulateGas = 100_000_000
)

// APIError is an error answer of the node.
type APIError struct {
	Status  int    // HTTP status
	Code    string `json:"code"` // stable code, e.g. tx_signature
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("sdk: API error %d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrAPI) hold.
func (e *APIError) Is(target error) bool { return target == ErrAPI }

// Client talks to one node's HTTP API. It is safe for concurrent use, but
// Call reads the sender's nonce from executed state: concurrent Calls by
// one key race for the same nonce.
type Client struct {
	Base      string       // http://127.0.0.1:port
	HTTP      *http.Client // nil: http.DefaultClient
	ChainID   string       // needed to build transactions
	Committee *Committee   // needed for verified queries
	Poll      time.Duration
	Now       func() time.Time // the validity window's clock; nil: time.Now
}

// NewClient returns a client of the API at base (a host:port gets http://).
func NewClient(base, chainID string, committee *Committee) *Client {
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		base = "http://" + base
	}
	return &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}, ChainID: chainID, Committee: committee}
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
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return err
	}
	if len(b) > MaxResponseBytes {
		return fmt.Errorf("%w: %s %s: over %d bytes", ErrResponse, method, path, MaxResponseBytes)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Code, e.Message = "http", fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrResponse, method, path, err)
	}
	return nil
}

// txRequest is the body of POST /v1/txs and /v1/simulate.
type txRequest struct {
	Tx string `json:"tx"`
}

// Event is an event of a receipt.
type Event struct {
	Module types.Address `json:"module"`
	Topic  string        `json:"topic"`
	Data   hexBytes      `json:"data"`
}

// Receipt is the outcome of an executed or simulated transaction.
type Receipt struct {
	Status  string   `json:"status"` // "ok" on success
	GasUsed uint64   `json:"gas_used"`
	Return  hexBytes `json:"return"`
	Events  []Event  `json:"events"`
	Error   string   `json:"error,omitempty"`
}

// TxResult is an executed transaction.
type TxResult struct {
	ID      types.Hash `json:"id"`
	Status  string     `json:"status"` // "pending" or "executed"
	Height  uint64     `json:"height,omitempty"`
	Receipt *Receipt   `json:"receipt,omitempty"`
}

// hexBytes is a byte string in hex JSON.
type hexBytes []byte

func (h *hexBytes) UnmarshalText(b []byte) error {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return err
	}
	*h = out
	return nil
}

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// Submit sends a signed transaction and returns its id.
func (c *Client) Submit(ctx context.Context, tx *types.Tx) (types.Hash, error) {
	var r struct {
		ID types.Hash `json:"id"`
	}
	err := c.do(ctx, "POST", "/v1/txs", txRequest{Tx: hex.EncodeToString(types.MustEncode(tx))}, &r)
	return r.ID, err
}

// Wait returns transaction id's result once it is executed, or ctx's error.
// Between looks at the transaction it holds GET /v1/blocks/{height}/wait for
// the block after the last one it saw, which the node answers when it stores
// that block, so Wait returns within one request of the receipt becoming
// visible. Against a node that answers that request with an error (no such
// endpoint, the block pruned) it polls every Poll instead.
func (c *Client) Wait(ctx context.Context, id types.Hash) (*TxResult, error) {
	poll := c.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	waiting := true
	var height uint64 // the highest height seen served; 0 = not read yet
	for {
		var r TxResult
		if err := c.do(ctx, "GET", "/v1/txs/"+id.String(), nil, &r); err != nil {
			return nil, err
		}
		if r.Status == "executed" {
			if r.Receipt == nil {
				return nil, fmt.Errorf("%w: executed tx %s without a receipt", ErrResponse, id)
			}
			return &r, nil
		}
		if waiting {
			if height == 0 {
				st, err := c.Status(ctx)
				if err != nil {
					return nil, err
				}
				height = st.Height
			}
			var b struct {
				Height uint64 `json:"height"`
			}
			err := c.do(ctx, "GET", fmt.Sprintf("/v1/blocks/%d/wait?timeout=%s", height+1, blockWait), nil, &b)
			var ae *APIError
			switch {
			case err == nil:
				height = max(height+1, b.Height)
				continue
			case errors.As(err, &ae) && ae.Code == codeWaitTimeout:
				continue
			case errors.As(err, &ae):
				waiting = false // poll from now on
			default:
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sdk: waiting for tx %s: %w", id, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// blockWait is how long one GET /v1/blocks/{height}/wait of Wait waits on
// the node; codeWaitTimeout is the node's answer when it passed first
// (node/api.CodeWaitTimeout; the SDK imports only types).
const (
	blockWait       = 2 * time.Second
	codeWaitTimeout = "wait_timeout"
)

// SimResult is the outcome of a simulation.
type SimResult struct {
	Height  uint64 // the state simulated on
	Receipt Receipt
	Access  []types.Access // exact, to declare in the signed transaction
}

// Simulate runs tx (signed, or unsigned with Body.Sender set) on the
// node's latest state and returns its receipt and exact access list.
func (c *Client) Simulate(ctx context.Context, tx *types.Tx) (*SimResult, error) {
	var r struct {
		Height  uint64   `json:"height"`
		Receipt *Receipt `json:"receipt"`
		Access  []struct {
			Module types.Address `json:"module"`
			Key    hexBytes      `json:"key"`
			Prefix bool          `json:"prefix"`
			Write  bool          `json:"write"`
		} `json:"access"`
	}
	if err := c.do(ctx, "POST", "/v1/simulate", txRequest{Tx: hex.EncodeToString(types.MustEncode(tx))}, &r); err != nil {
		return nil, err
	}
	if r.Receipt == nil {
		return nil, fmt.Errorf("%w: simulation without a receipt", ErrResponse)
	}
	out := &SimResult{Height: r.Height, Receipt: *r.Receipt}
	for _, a := range r.Access {
		m := types.Read
		if a.Write {
			m = types.Write
		}
		out.Access = append(out.Access, types.Access{Module: a.Module, Key: []byte(a.Key), Prefix: a.Prefix, Mode: m})
	}
	return out, nil
}

// AccountsModule mirrors the node's system module of account records
// (runtime/exec.AccountsModule): under an address, the big-endian nonce of
// its last executed transaction.
var AccountsModule = types.Address(sha256.Sum256([]byte("kairos/system/accounts\x00")))

// InstanceAddress mirrors runtime/exec.InstanceAddress: the address of the
// module instance a deploy by sender with nonce creates.
func InstanceAddress(sender types.Address, nonce uint64) types.Address {
	b := append([]byte("kairos/instance\x00"), sender[:]...)
	return types.Address(sha256.Sum256(binary.BigEndian.AppendUint64(b, nonce)))
}

// Nonce reads the nonce of a's last executed transaction (0 = none), from
// the node's latest state, unverified.
func (c *Client) Nonce(ctx context.Context, a types.Address) (uint64, error) {
	s, err := c.state(ctx, types.StateKey{Module: AccountsModule, Key: a[:]}, 0, false)
	if err != nil || s.Value == nil {
		return 0, err
	}
	if len(*s.Value) != 8 {
		return 0, fmt.Errorf("%w: account record of %d bytes", ErrResponse, len(*s.Value))
	}
	return binary.BigEndian.Uint64(*s.Value), nil
}

// Send builds a transaction of payload from key with the next nonce,
// simulates it unsigned to learn its access list and gas, signs it with
// exactly that access list, submits it and waits for its receipt. A
// receipt whose status is not ok is returned with ErrTxFailed; a failed
// simulation returns its receipt with ErrTxFailed before anything is sent.
func (c *Client) Send(ctx context.Context, key *Key, p types.Payload) (*TxResult, error) {
	if c.ChainID == "" {
		return nil, fmt.Errorf("%w: no chain id", ErrConfig)
	}
	nonce, err := c.Nonce(ctx, key.Address())
	if err != nil {
		return nil, err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	body := types.TxBody{ChainID: c.ChainID, Sender: key.Public(), Nonce: nonce + 1,
		ValidUntil: now().Add(DefaultValidity).UnixNano(), GasLimit: SimulateGas, Payload: p}
	sim, err := c.Simulate(ctx, &types.Tx{Body: body})
	if err != nil {
		return nil, err
	}
	if sim.Receipt.Status != "ok" {
		return &TxResult{Status: "simulated", Height: sim.Height, Receipt: &sim.Receipt},
			fmt.Errorf("%w: simulation: %s: %s", ErrTxFailed, sim.Receipt.Status, sim.Receipt.Error)
	}
	body.Access = sim.Access
	// The state may move between simulation and execution; a margin keeps
	// a transaction whose cost grew slightly from running out of gas.
	body.GasLimit = sim.Receipt.GasUsed + sim.Receipt.GasUsed/4 + 10_000
	id, err := c.Submit(ctx, types.SignTx(body, key.Priv))
	if err != nil {
		return nil, err
	}
	r, err := c.Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Receipt.Status != "ok" {
		return r, fmt.Errorf("%w: %s: %s", ErrTxFailed, r.Receipt.Status, r.Receipt.Error)
	}
	return r, nil
}

// Call calls method of module with args (see Send).
func (c *Client) Call(ctx context.Context, key *Key, module types.Address, method string, args []byte) (*TxResult, error) {
	return c.Send(ctx, key, types.Payload{Kind: types.Call, Module: module, Method: method, Args: args})
}

// Deploy deploys code with init args and admin (zero: immutable) and
// returns the new instance's address (see Send).
func (c *Client) Deploy(ctx context.Context, key *Key, code, args []byte, admin types.Address) (types.Address, *TxResult, error) {
	nonce, err := c.Nonce(ctx, key.Address())
	if err != nil {
		return types.Address{}, nil, err
	}
	r, err := c.Send(ctx, key, types.Payload{Kind: types.Deploy, Code: code, Args: args, Admin: admin})
	// Send reads the nonce again: the instance is the one of the nonce it
	// used, which is this one unless another transaction of key ran in
	// between (then the receipt's deploy is not the one reported).
	return InstanceAddress(key.Address(), nonce+1), r, err
}

// stateAnswer is the JSON of GET /v1/state.
type stateAnswer struct {
	Height uint64    `json:"height"`
	Root   string    `json:"root"`
	Value  *hexBytes `json:"value"`
	Proof  hexBytes  `json:"proof"`
}

func (c *Client) state(ctx context.Context, k types.StateKey, height uint64, prove bool) (*stateAnswer, error) {
	q := url.Values{}
	if height != 0 {
		q.Set("height", fmt.Sprint(height))
	}
	if prove {
		q.Set("prove", "1")
	}
	var s stateAnswer
	return &s, c.do(ctx, "GET", "/v1/state/"+k.Module.String()+"/"+hex.EncodeToString(k.Key)+"?"+q.Encode(), nil, &s)
}

// Get reads k at the node's latest height, unverified: the node is
// trusted. Query verifies.
func (c *Client) Get(ctx context.Context, k types.StateKey) (value []byte, height uint64, err error) {
	s, err := c.state(ctx, k, 0, false)
	if err != nil || s.Value == nil {
		return nil, s.Height, err
	}
	return *s.Value, s.Height, nil
}

// Checkpoint reads the node's latest checkpoint certificate and verifies it
// against the client's committee.
func (c *Client) Checkpoint(ctx context.Context) (*CheckpointCert, error) {
	if c.Committee == nil {
		return nil, fmt.Errorf("%w: no committee to verify checkpoints with", ErrConfig)
	}
	var r struct {
		Cert hexBytes `json:"cert"`
	}
	if err := c.do(ctx, "GET", "/v1/checkpoints/latest", nil, &r); err != nil {
		return nil, err
	}
	var cc CheckpointCert
	if err := types.Decode(r.Cert, &cc); err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrResponse, err)
	}
	if err := c.Committee.VerifyCheckpoint(&cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

// Verified is a state value proven against a certified state root.
type Verified struct {
	Height uint64
	Root   types.Root
	Value  []byte // nil when absent (the proof proves the absence)
}

// Query reads k at the height of the latest checkpoint and verifies it:
// the certificate against the committee, the proof against the certified
// root, and that the proof is of k and of the value served.
func (c *Client) Query(ctx context.Context, k types.StateKey) (*Verified, error) {
	cc, err := c.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.state(ctx, k, cc.Height, true)
	if err != nil {
		return nil, err
	}
	p, err := types.DecodeProof(s.Proof)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	if err := types.Verify(cc.StateRoot, p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	if len(p.Entries) != 1 {
		return nil, fmt.Errorf("%w: %d entries, want 1", ErrProof, len(p.Entries))
	}
	e := p.Entries[0]
	if e.Key.Module != k.Module || !bytes.Equal(e.Key.Key, k.Key) {
		return nil, fmt.Errorf("%w: proves another key", ErrProof)
	}
	var served []byte
	if s.Value != nil {
		served = *s.Value
	}
	if (e.Value == nil) != (s.Value == nil) || !bytes.Equal(e.Value, served) {
		return nil, fmt.Errorf("%w: proven value differs from the one served", ErrProof)
	}
	return &Verified{Height: cc.Height, Root: cc.StateRoot, Value: e.Value}, nil
}

// Status is the part of GET /v1/status the client reads.
type Status struct {
	Validator        uint32 `json:"validator"`
	Round            uint64 `json:"round"`
	Height           uint64 `json:"height"`
	StateRoot        string `json:"state_root"`
	CheckpointHeight uint64 `json:"checkpoint_height"`
	Mempool          int    `json:"mempool"`
	Peers            int    `json:"peers"`
	Halted           string `json:"halted"`
}

// Status reads the node's progress.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Module is a deployed module instance (unverified).
type Module struct {
	Height uint64        `json:"height"`
	Code   string        `json:"code"` // CID of the original code
	Admin  types.Address `json:"admin"`
	Size   int           `json:"size"`
}

// Module reads the instance at a.
func (c *Client) Module(ctx context.Context, a types.Address) (*Module, error) {
	var m Module
	return &m, c.do(ctx, "GET", "/v1/modules/"+a.String(), nil, &m)
}
