package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/node/mempool"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// MaxBodyBytes caps a request body: the largest transaction (a deploy of
// types.DefaultTxLimits.MaxCodeTxBytes) hex-encoded, plus the JSON around it.
const MaxBodyBytes = 2*(4<<20) + 1024

// Stable error codes.
const (
	CodeBadRequest       = "bad_request"
	CodeBodyTooLarge     = "body_too_large"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeMempoolFull      = "mempool_full"
	CodePruned           = "pruned"
	CodeHalted           = "halted"
	CodeInternal         = "internal"
	// Transaction rejections name the rule broken.
	CodeTxMalformed  = "tx_malformed"
	CodeTxTooLarge   = "tx_too_large"
	CodeTxSignature  = "tx_signature"
	CodeTxChain      = "tx_chain"
	CodeTxExpired    = "tx_expired"
	CodeTxFarFuture  = "tx_far_future"
	CodeTxAccessList = "tx_access_list"
	CodeTxPayload    = "tx_payload"
	CodeTxGas        = "tx_gas"
)

// Backend is what the API needs of a node; *node.Node implements it. It is
// called from many goroutines at once.
type Backend interface {
	SubmitTx(ctx context.Context, raw []byte) (types.Hash, error)
	Pending(id types.Hash) bool
	// Receipt returns node.ErrDeferred, with the ordering block's height,
	// for a transaction waiting in the deferred set.
	Receipt(id types.Hash) (*types.Receipt, uint64, error)
	Block(h uint64) (*types.Block, types.Root, error)
	// HeightTxs lists the transactions settled at a height, in event
	// order (node.Node.HeightTxs).
	HeightTxs(h uint64) ([]types.Hash, error)
	State(ctx context.Context, key types.StateKey, height uint64, prove bool) (*node.StateValue, error)
	Status() node.Status
	LatestCheckpoint() (*consensus.CheckpointCert, error)
	Simulate(ctx context.Context, tx *types.Tx) (*exec.SimResult, uint64, error)
	Module(ctx context.Context, a types.Address) (*node.ModuleInfo, error)
}

// MetricsBackend is a Backend that also exports Prometheus metrics, served
// at /metrics (found by type assertion, so a Backend need not have them).
type MetricsBackend interface {
	Collector() prometheus.Collector
}

// Error is the JSON body of every error response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorCodes maps sentinels to codes and statuses, first match wins.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{types.ErrTxMalformed, CodeTxMalformed, http.StatusBadRequest},
	{types.ErrTxTooLarge, CodeTxTooLarge, http.StatusRequestEntityTooLarge},
	{types.ErrTxSignature, CodeTxSignature, http.StatusBadRequest},
	{types.ErrTxChain, CodeTxChain, http.StatusBadRequest},
	{types.ErrTxExpired, CodeTxExpired, http.StatusBadRequest},
	{types.ErrTxFarFuture, CodeTxFarFuture, http.StatusBadRequest},
	{types.ErrTxAccessList, CodeTxAccessList, http.StatusBadRequest},
	{types.ErrTxPayload, CodeTxPayload, http.StatusBadRequest},
	{types.ErrTxGas, CodeTxGas, http.StatusBadRequest},
	{mempool.ErrFull, CodeMempoolFull, http.StatusServiceUnavailable},
	{mempool.ErrBytesFull, CodeMempoolFull, http.StatusServiceUnavailable},
	{mempool.ErrSenderFull, CodeMempoolFull, http.StatusTooManyRequests},
	{node.ErrNotFound, CodeNotFound, http.StatusNotFound},
	{state.ErrUnknownVersion, CodeNotFound, http.StatusNotFound},
	{state.ErrPruned, CodePruned, http.StatusGone},
	{node.ErrStopped, CodeHalted, http.StatusServiceUnavailable},
}

// NewServer returns an HTTP server of Handler(b, log) whose requests end
// when Shutdown starts: their contexts derive from one that Shutdown
// cancels, so an open event stream (which never goes idle) returns at
// once instead of holding Shutdown until its deadline.
func NewServer(b Backend, log *slog.Logger) *http.Server {
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: Handler(b, log), ReadHeaderTimeout: readHeaderTimeout,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	srv.RegisterOnShutdown(cancel)
	return srv
}

// readHeaderTimeout bounds a client's request headers (slowloris).
const readHeaderTimeout = 10 * time.Second

// Handler returns the API's handler for b.
func Handler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{b: b, log: log, streams: make(chan struct{}, MaxEventStreams)}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/txs", s.method("POST", s.submit))
	mux.HandleFunc("/v1/txs/batch", s.method("POST", s.submitBatch)) // batch.go
	mux.HandleFunc("/v1/txs/{id}", s.method("GET", s.tx))
	mux.HandleFunc("/v1/blocks/{height}", s.method("GET", s.block))
	if hw, ok := b.(HeightWaiter); ok {
		mux.HandleFunc("/v1/blocks/{height}/wait", s.method("GET", newWaiter(s, hw).serve)) // wait.go
	}
	mux.HandleFunc("/v1/state/{module}/{key}", s.method("GET", s.state))
	mux.HandleFunc("/v1/status", s.method("GET", s.status))
	mux.HandleFunc("/v1/checkpoints/latest", s.method("GET", s.checkpoint))
	mux.HandleFunc("/v1/simulate", s.method("POST", s.simulate))
	mux.HandleFunc("/v1/modules/{address}", s.method("GET", s.module))
	mux.HandleFunc("/v1/events", s.method("GET", s.events))
	if mc, ok := b.(MetricsBackend); ok {
		reg := prometheus.NewRegistry()
		reg.MustRegister(mc.Collector(), collectors.NewGoCollector())
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.URL.Path)
	})
	return s.recover(mux)
}

type server struct {
	b       Backend
	log     *slog.Logger
	streams chan struct{} // a semaphore of MaxEventStreams
}

func (s *server) recover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("api handler panic", "path", r.URL.Path, "panic", p)
				writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func (s *server) method(m string, f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m {
			w.Header().Set("Allow", m)
			writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" not allowed, use "+m)
			return
		}
		f(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, Error{Code: code, Message: msg})
}

// fail writes err with the code of its sentinel, or internal.
func (s *server) fail(w http.ResponseWriter, err error) {
	status, code := s.classify(err)
	writeError(w, status, code, err.Error())
}

// classify returns the HTTP status and stable code of err (errorCodes),
// logging an error none of them names as internal.
func (s *server) classify(err error) (int, string) {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.status, c.code
		}
	}
	s.log.Error("api", "err", err)
	return http.StatusInternalServerError, CodeInternal
}

// bodyHintMax bounds the buffer readBody reserves from a declared length.
const bodyHintMax = 1 << 20

// readBody reads a request body of at most MaxBodyBytes, or answers the
// request with the error and returns nil.
func readBody(w http.ResponseWriter, r *http.Request) []byte {
	// A body of a declared length is read into one buffer of that size
	// (io.ReadAll grows from 512 bytes, copying a batch's body about six
	// times); the declared length is only a hint, so it reserves at most
	// bodyHintMax before any byte arrived (a client declaring MaxBodyBytes
	// and sending nothing holds no more than that).
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= MaxBodyBytes {
		buf.Grow(int(min(r.ContentLength, bodyHintMax)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	body := buf.Bytes()
	if body == nil {
		body = []byte{} // an empty body; nil means the error was answered
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
			return nil
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "reading body: "+err.Error())
		return nil
	}
	return body
}

// SubmitRequest is the body of POST /v1/txs.
type SubmitRequest struct {
	Tx string `json:"tx"` // hex of the canonical transaction bytes
}

// SubmitResponse answers POST /v1/txs.
type SubmitResponse struct {
	ID types.Hash `json:"id"`
}

// readTx reads a SubmitRequest body and returns the raw transaction, or
// writes the error and returns nil.
func readTx(w http.ResponseWriter, r *http.Request) []byte {
	body := readBody(w, r)
	if body == nil {
		return nil
	}
	var req SubmitRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body must be one JSON object {\"tx\": hex}: %v", err))
		return nil
	}
	raw, err := hex.DecodeString(req.Tx)
	if err != nil || len(raw) == 0 {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "tx must be non-empty hex")
		return nil
	}
	return raw
}

func (s *server) submit(w http.ResponseWriter, r *http.Request) {
	raw := readTx(w, r)
	if raw == nil {
		return
	}
	id, err := s.b.SubmitTx(r.Context(), raw)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, SubmitResponse{ID: id})
}

// Receipt is the JSON form of a receipt.
type Receipt struct {
	Status  string  `json:"status"`
	GasUsed uint64  `json:"gas_used"`
	Return  string  `json:"return"` // hex
	Events  []Event `json:"events"`
	Error   string  `json:"error,omitempty"`
}

// Event is the JSON form of an event.
type Event struct {
	Module types.Address `json:"module"`
	Topic  string        `json:"topic"`
	Data   string        `json:"data"` // hex
}

// TxResponse answers GET /v1/txs/{id}. Status is "pending" (in the
// mempool), "deferred" (ordered at Height with its nonce ahead of its
// sender's: it waits, in the state, for the gap to close, and executes or
// expires at a later height) or "executed" (settled at Height; Receipt
// status "invalid" with an error naming expiry for one that expired while
// deferred).
type TxResponse struct {
	ID      types.Hash `json:"id"`
	Status  string     `json:"status"`
	Height  uint64     `json:"height,omitempty"`
	Receipt *Receipt   `json:"receipt,omitempty"`
}

func receiptJSON(rc *types.Receipt) *Receipt {
	out := &Receipt{Status: rc.Status.String(), GasUsed: rc.GasUsed, Return: hex.EncodeToString(rc.Return),
		Error: rc.Error, Events: []Event{}}
	for _, e := range rc.Events {
		out.Events = append(out.Events, Event{Module: e.Module, Topic: e.Topic, Data: hex.EncodeToString(e.Data)})
	}
	return out
}

func parseHash(s string) (types.Hash, error) {
	var h types.Hash
	return h, h.UnmarshalText([]byte(s))
}

func (s *server) tx(w http.ResponseWriter, r *http.Request) {
	id, err := parseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "id: "+err.Error())
		return
	}
	rc, h, err := s.b.Receipt(id)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, TxResponse{ID: id, Status: "executed", Height: h, Receipt: receiptJSON(rc)})
	case errors.Is(err, node.ErrDeferred):
		writeJSON(w, http.StatusOK, TxResponse{ID: id, Status: "deferred", Height: h})
	case errors.Is(err, node.ErrNotFound) && s.b.Pending(id):
		writeJSON(w, http.StatusOK, TxResponse{ID: id, Status: "pending"})
	default:
		s.fail(w, err)
	}
}

// BlockResponse answers GET /v1/blocks/{height}.
type BlockResponse struct {
	Height    uint64      `json:"height"`
	ID        types.Hash  `json:"id"`
	Parent    types.Hash  `json:"parent"`
	Time      int64       `json:"time"`
	Watermark int64       `json:"watermark"`
	StateRoot string      `json:"state_root"`
	Txs       []OrderedTx `json:"txs"`
}

// OrderedTx is a transaction's place in a block.
type OrderedTx struct {
	ID types.Hash `json:"id"`
	TS int64      `json:"ts"`
}

func (s *server) block(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "height: "+err.Error())
		return
	}
	b, root, err := s.b.Block(h)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := BlockResponse{Height: b.Height, ID: b.ID(), Parent: b.Parent, Time: b.Time, Watermark: b.Watermark,
		StateRoot: root.String(), Txs: []OrderedTx{}}
	for _, t := range b.Txs {
		out.Txs = append(out.Txs, OrderedTx{ID: t.ID, TS: t.TS})
	}
	writeJSON(w, http.StatusOK, out)
}

// StateResponse answers GET /v1/state/{module}/{key}.
type StateResponse struct {
	Height uint64  `json:"height"`
	Root   string  `json:"root"`
	Value  *string `json:"value"`           // hex; null when absent
	Proof  string  `json:"proof,omitempty"` // hex of the canonical proof (types.DecodeProof)
}

func (s *server) state(w http.ResponseWriter, r *http.Request) {
	mod, err := types.ParseAddress(r.PathValue("module"))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "module: "+err.Error())
		return
	}
	key, err := hex.DecodeString(r.PathValue("key"))
	if err != nil || len(key) > types.StateKeyMax {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("key must be hex of at most %d bytes", types.StateKeyMax))
		return
	}
	q := r.URL.Query()
	var height uint64
	if hs := q.Get("height"); hs != "" {
		if height, err = strconv.ParseUint(hs, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "height: "+err.Error())
			return
		}
	}
	prove := q.Get("prove") == "1" || q.Get("prove") == "true"
	v, err := s.b.State(r.Context(), types.StateKey{Module: mod, Key: key}, height, prove)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := StateResponse{Height: v.Height, Root: v.Root.String()}
	if v.Value != nil {
		x := hex.EncodeToString(v.Value)
		out.Value = &x
	}
	if v.Proof != nil {
		out.Proof = hex.EncodeToString(types.MustEncode(v.Proof))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	st := s.b.Status()
	writeJSON(w, http.StatusOK, map[string]any{
		"validator": st.Validator, "round": st.Round, "height": st.Height, "state_root": st.StateRoot.String(),
		"checkpoint_height": st.CheckpointHeight, "mempool": st.Mempool, "peers": st.Peers,
		"dropped": st.Dropped, "invalid": st.Invalid, "conflicts": st.Conflicts, "halted": st.Err})
}

// CheckpointResponse answers GET /v1/checkpoints/latest. Cert is the hex of
// the canonical certificate, which clients verify themselves.
type CheckpointResponse struct {
	Height    uint64   `json:"height"`
	BlockID   string   `json:"block_id"`
	StateRoot string   `json:"state_root"`
	Signers   []uint32 `json:"signers"`
	Cert      string   `json:"cert"`
}

func (s *server) checkpoint(w http.ResponseWriter, _ *http.Request) {
	cc, err := s.b.LatestCheckpoint()
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, CheckpointResponse{Height: cc.Height, BlockID: hex.EncodeToString(cc.BlockID[:]),
		StateRoot: cc.StateRoot.String(), Signers: cc.Signers, Cert: hex.EncodeToString(types.MustEncode(cc))})
}

// SimulateResponse answers POST /v1/simulate (body: a SubmitRequest whose
// transaction may be unsigned). Access is the exact access list the
// transaction used; declaring it makes the same transaction pass the
// access check on the same state.
type SimulateResponse struct {
	Height  uint64   `json:"height"` // the state simulated on
	Receipt *Receipt `json:"receipt"`
	Access  []Access `json:"access"`
}

// Access is the JSON form of an access list entry.
type Access struct {
	Module types.Address `json:"module"`
	Key    string        `json:"key"` // hex
	Prefix bool          `json:"prefix,omitempty"`
	Write  bool          `json:"write,omitempty"`
}

func (s *server) simulate(w http.ResponseWriter, r *http.Request) {
	raw := readTx(w, r)
	if raw == nil {
		return
	}
	var tx types.Tx
	if err := types.Decode(raw, &tx); err != nil {
		s.fail(w, fmt.Errorf("%w: %w", types.ErrTxMalformed, err))
		return
	}
	res, h, err := s.b.Simulate(r.Context(), &tx)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := SimulateResponse{Height: h, Receipt: receiptJSON(&res.Receipt), Access: []Access{}}
	for _, a := range res.Access {
		out.Access = append(out.Access, Access{Module: a.Module, Key: hex.EncodeToString(a.Key), Prefix: a.Prefix, Write: a.Mode == types.Write})
	}
	writeJSON(w, http.StatusOK, out)
}

// ModuleResponse answers GET /v1/modules/{address}.
type ModuleResponse struct {
	Height uint64        `json:"height"`
	Code   string        `json:"code"`  // CID of the original code
	Admin  types.Address `json:"admin"` // the zero address: immutable
	Size   int           `json:"size"`  // bytes of the original code
}

func (s *server) module(w http.ResponseWriter, r *http.Request) {
	a, err := types.ParseAddress(r.PathValue("address"))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "address: "+err.Error())
		return
	}
	m, err := s.b.Module(r.Context(), a)
	if err != nil {
		s.fail(w, err)
		return
	}
	c, err := cid.Cast(m.Code)
	if err != nil {
		s.fail(w, fmt.Errorf("api: module %s has a bad code CID: %w", a, err))
		return
	}
	writeJSON(w, http.StatusOK, ModuleResponse{Height: m.Height, Code: c.String(), Admin: m.Admin, Size: m.Size})
}
