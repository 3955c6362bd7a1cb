package api

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

const chain = "api-test"

// newNode starts four real validators (pebble in temp dirs, libp2p on
// 127.0.0.1; a committee of one never certifies, see the report) and serves
// the API of the first.
func newNode(t *testing.T) (*node.Node, *httptest.Server) {
	t.Helper()
	const n = 4
	keys := make([]ed25519.PrivateKey, n)
	vals := make([]consensus.Validator, n)
	for i := range keys {
		seed := sha256.Sum256([]byte(fmt.Sprintf("api-test-validator-%d", i)))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		vals[i] = consensus.Validator{Key: keys[i].Public().(ed25519.PublicKey), Weight: 1}
	}
	p := consensus.DefaultParams()
	p.MinRoundDelay = int64(50 * time.Millisecond)
	comm, err := consensus.NewCommittee(chain, 0, vals, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*node.Node
	var boot []peer.AddrInfo
	for i := range keys {
		nd, err := node.New(node.Config{Committee: comm, Key: keys[i], Dir: t.TempDir(), Workers: 1,
			Runner: exec.NewNativeRunner(exec.NativeModules()), Bootstrap: boot})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := nd.Close(); err != nil {
				t.Error(err)
			}
		})
		nodes = append(nodes, nd)
		boot = append(boot, nd.AddrInfo())
	}
	srv := httptest.NewServer(Handler(nodes[0], nil))
	t.Cleanup(srv.Close)
	return nodes[0], srv
}

func counterTx(seq int, k string, mod func(*types.TxBody)) []byte {
	s := sha256.Sum256([]byte(fmt.Sprintf("api-test-sender-%d", seq)))
	body := types.TxBody{ChainID: chain, Nonce: 1, ValidUntil: time.Now().Add(time.Minute).UnixNano(),
		GasLimit: 1_000_000, Access: []types.Access{{Module: exec.CounterModule, Key: []byte(k), Mode: types.Write}},
		Payload: types.Payload{Kind: types.Call, Module: exec.CounterModule, Method: "incr", Args: []byte(k)}}
	if mod != nil {
		mod(&body)
	}
	return types.MustEncode(types.SignTx(body, ed25519.NewKeyFromSeed(s[:])))
}

// unsignedTx is counterTx(2, "k") without its signature, changed by mod.
func unsignedTx(mod func(*types.Tx)) []byte {
	var tx types.Tx
	if err := types.Decode(counterTx(1, "k", func(b *types.TxBody) { b.Nonce = 2; b.Access = nil }), &tx); err != nil {
		panic(err)
	}
	tx.Sig = nil
	if mod != nil {
		mod(&tx)
	}
	return types.MustEncode(&tx)
}

func do(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func submitBody(raw []byte) string { return fmt.Sprintf(`{"tx":%q}`, hex.EncodeToString(raw)) }

// TestErrors: malformed requests on every endpoint get the stable JSON
// error, never a panic (an escaped panic would be code internal / 500).
func TestErrors(t *testing.T) {
	_, srv := newNode(t)
	badSig := counterTx(1, "k", nil)
	badSig[len(badSig)-1] ^= 1
	mod := types.Address{7}.String()
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"empty body", "POST", "/v1/txs", "", 400, CodeBadRequest},
		{"not json", "POST", "/v1/txs", "\x00\xff", 400, CodeBadRequest},
		{"json array", "POST", "/v1/txs", "[]", 400, CodeBadRequest},
		{"unknown field", "POST", "/v1/txs", `{"tx":"00","x":1}`, 400, CodeBadRequest},
		{"two objects", "POST", "/v1/txs", `{"tx":"00"}{"tx":"00"}`, 400, CodeBadRequest},
		{"tx not hex", "POST", "/v1/txs", `{"tx":"zz"}`, 400, CodeBadRequest},
		{"tx empty", "POST", "/v1/txs", `{"tx":""}`, 400, CodeBadRequest},
		{"tx garbage", "POST", "/v1/txs", `{"tx":"ffff"}`, 400, CodeTxMalformed},
		{"tx bad signature", "POST", "/v1/txs", submitBody(badSig), 400, CodeTxSignature},
		{"tx wrong chain", "POST", "/v1/txs", submitBody(counterTx(1, "k", func(b *types.TxBody) { b.ChainID = "x" })), 400, CodeTxChain},
		{"tx expired", "POST", "/v1/txs", submitBody(counterTx(1, "k", func(b *types.TxBody) { b.ValidUntil = 1 })), 400, CodeTxExpired},
		{"body too large", "POST", "/v1/txs", `{"tx":"` + strings.Repeat("0", MaxBodyBytes) + `"}`, 413, CodeBodyTooLarge},
		{"wrong method", "GET", "/v1/txs", "", 405, CodeMethodNotAllowed},
		{"post to status", "POST", "/v1/status", "{}", 405, CodeMethodNotAllowed},
		{"unknown path", "GET", "/v2/status", "", 404, CodeNotFound},
		{"tx id not hex", "GET", "/v1/txs/xyz", "", 400, CodeBadRequest},
		{"tx id short", "GET", "/v1/txs/00", "", 400, CodeBadRequest},
		{"tx unknown", "GET", "/v1/txs/" + strings.Repeat("ab", 32), "", 404, CodeNotFound},
		{"block negative", "GET", "/v1/blocks/-1", "", 400, CodeBadRequest},
		{"block overflow", "GET", "/v1/blocks/99999999999999999999999", "", 400, CodeBadRequest},
		{"block unknown", "GET", "/v1/blocks/1000000", "", 404, CodeNotFound},
		{"state bad module", "GET", "/v1/state/nope/00", "", 400, CodeBadRequest},
		{"state bad key", "GET", "/v1/state/" + mod + "/zz", "", 400, CodeBadRequest},
		{"state key too long", "GET", "/v1/state/" + mod + "/" + strings.Repeat("00", types.StateKeyMax+1), "", 400, CodeBadRequest},
		{"state bad height", "GET", "/v1/state/" + mod + "/00?height=x", "", 400, CodeBadRequest},
		{"simulate empty body", "POST", "/v1/simulate", "", 400, CodeBadRequest},
		{"simulate garbage", "POST", "/v1/simulate", `{"tx":"ffff"}`, 400, CodeTxMalformed},
		{"simulate bad signature", "POST", "/v1/simulate", submitBody(badSig), 400, CodeTxSignature},
		{"simulate unsigned, no sender", "POST", "/v1/simulate", submitBody(unsignedTx(func(tx *types.Tx) { tx.Body.Sender = nil })), 400, CodeTxSignature},
		{"simulate unsigned, wrong chain", "POST", "/v1/simulate", submitBody(unsignedTx(func(tx *types.Tx) { tx.Body.ChainID = "x" })), 400, CodeTxChain},
		{"simulate unsigned, no gas", "POST", "/v1/simulate", submitBody(unsignedTx(func(tx *types.Tx) { tx.Body.GasLimit = 0 })), 400, CodeTxGas},
		{"simulate wrong method", "GET", "/v1/simulate", "", 405, CodeMethodNotAllowed},
		{"module bad address", "GET", "/v1/modules/nope", "", 400, CodeBadRequest},
		{"module unknown", "GET", "/v1/modules/" + mod, "", 404, CodeNotFound},
		{"events bad cursor", "GET", "/v1/events?from=x", "", 400, CodeBadRequest},
		{"events bad index", "GET", "/v1/events?from=1:x", "", 400, CodeBadRequest},
		{"events post", "POST", "/v1/events", "", 405, CodeMethodNotAllowed},
		{"state future height", "GET", "/v1/state/" + mod + "/00?height=1000000", "", 404, CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := do(t, c.method, srv.URL+c.path, c.body)
			var e Error
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("status %d, body %q is not a JSON error: %v", status, body, err)
			}
			if status != c.status || e.Code != c.code || e.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", status, e, c.status, c.code)
			}
		})
	}
}

// TestSubmitExecuteQuery: a submitted transaction is executed, and its
// receipt, block, state value with a verified proof, status and
// checkpoint are served.
func TestSubmitExecuteQuery(t *testing.T) {
	n, srv := newNode(t)
	status, body := do(t, "POST", srv.URL+"/v1/txs", submitBody(counterTx(1, "k", nil)))
	if status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", status, body)
	}
	var sub SubmitResponse
	if err := json.Unmarshal(body, &sub); err != nil {
		t.Fatal(err)
	}
	var tx TxResponse
	deadline := time.Now().Add(30 * time.Second)
	for tx.Status != "executed" {
		if time.Now().After(deadline) {
			t.Fatalf("tx not executed: %+v; node %+v", tx, n.Status())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
		status, body = do(t, "GET", srv.URL+"/v1/txs/"+sub.ID.String(), "")
		if status != http.StatusOK {
			t.Fatalf("get tx: %d %s", status, body)
		}
		tx = TxResponse{}
		if err := json.Unmarshal(body, &tx); err != nil {
			t.Fatal(err)
		}
	}
	if tx.Receipt.Status != "ok" || tx.Receipt.Return != "0000000000000001" {
		t.Fatalf("receipt %+v", tx.Receipt)
	}
	// Simulating the sender's next increment, unsigned and with no access
	// list, predicts its result and the one key it writes.
	status, body = do(t, "POST", srv.URL+"/v1/simulate", submitBody(unsignedTx(nil)))
	var sim SimulateResponse
	if err := json.Unmarshal(body, &sim); status != 200 || err != nil {
		t.Fatalf("simulate: %d %s %v", status, body, err)
	}
	wantAccess := []Access{{Module: exec.CounterModule, Key: hex.EncodeToString([]byte("k")), Write: true}}
	if sim.Receipt.Status != "ok" || sim.Receipt.Return != "0000000000000002" || fmt.Sprint(sim.Access) != fmt.Sprint(wantAccess) {
		t.Fatalf("simulate: %+v %+v, want access %+v", sim, sim.Receipt, wantAccess)
	}
	status, body = do(t, "GET", fmt.Sprintf("%s/v1/blocks/%d", srv.URL, tx.Height), "")
	var blk BlockResponse
	if err := json.Unmarshal(body, &blk); status != 200 || err != nil || len(blk.Txs) == 0 {
		t.Fatalf("block: %d %s %v", status, body, err)
	}
	// Wait for a checkpoint at or above the block, then verify a proof
	// of the value against the certified root, as a client does.
	var cp CheckpointResponse
	status, body = do(t, "GET", srv.URL+"/v1/checkpoints/latest", "")
	deadline = time.Now().Add(30 * time.Second)
	for status != 200 || cp.Height < tx.Height {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint for height %d: %d %s", tx.Height, status, body)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
		status, body = do(t, "GET", srv.URL+"/v1/checkpoints/latest", "")
		_ = json.Unmarshal(body, &cp)
	}
	var cc consensus.CheckpointCert
	certRaw, err := hex.DecodeString(cp.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := types.Decode(certRaw, &cc); err != nil || cc.Height != cp.Height {
		t.Fatalf("certificate %+v: %v", cc, err)
	}
	path := fmt.Sprintf("%s/v1/state/%s/%s?prove=1&height=%d", srv.URL, exec.CounterModule, hex.EncodeToString([]byte("k")), cc.Height)
	status, body = do(t, "GET", path, "")
	var sv StateResponse
	if err := json.Unmarshal(body, &sv); status != 200 || err != nil || sv.Value == nil || *sv.Value != "0000000000000001" {
		t.Fatalf("state: %d %s %v", status, body, err)
	}
	if sv.Root != cc.StateRoot.String() || (cc.Height == tx.Height && sv.Root != blk.StateRoot) {
		t.Fatalf("state root %s, certified %s, block's %s", sv.Root, cc.StateRoot, blk.StateRoot)
	}
	raw, err := hex.DecodeString(sv.Proof)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := types.DecodeProof(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := types.Verify(cc.StateRoot, proof); err != nil {
		t.Fatalf("proof does not verify against the certified root: %v", err)
	}
	if len(proof.Entries) != 1 || string(proof.Entries[0].Key.Key) != "k" || hex.EncodeToString(proof.Entries[0].Value) != *sv.Value {
		t.Fatalf("proof entries %+v do not prove the served value", proof.Entries)
	}
	if status, body = do(t, "GET", srv.URL+"/v1/status", ""); status != 200 || !strings.Contains(string(body), `"height"`) {
		t.Fatalf("status: %d %s", status, body)
	}
	status, body = do(t, "GET", srv.URL+"/metrics", "")
	for _, m := range []string{"kairos_height ", "kairos_executed_txs_total ", "kairos_state_pruner_lag ", "kairos_state_node_cache_misses_total ", `kairos_p2p_messages_total{kind="/kairos/consensus/1",outcome="in"}`} {
		if status != 200 || !strings.Contains(string(body), m) {
			t.Fatalf("metrics: %d, no %s in\n%s", status, m, body)
		}
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id   string
	data StreamEvent
}

// readEvents opens GET /v1/events?from= and returns the first n events.
func readEvents(t *testing.T, base, from string, n int) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/events?from="+from, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		case line == "":
			out = append(out, cur)
			cur = sseEvent{}
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d of %d events: %v", len(out), n, sc.Err())
	}
	return out
}

// TestEventStream: events come in chain order with cursors that resume
// exactly after the last one read.
func TestEventStream(t *testing.T) {
	n, srv := newNode(t)
	ctx := context.Background()
	var ids []types.Hash
	for i, k := range []string{"a", "b"} {
		id, err := n.SubmitTx(ctx, counterTx(10+i, k, nil))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	all := readEvents(t, srv.URL, "0", 2)
	seen := map[types.Hash]bool{}
	for i, e := range all {
		if e.data.Topic != "incr" || e.data.Data != "0000000000000001" || e.id != (Cursor{e.data.Height, e.data.Index + 1}).String() {
			t.Fatalf("event %d: %+v", i, e)
		}
		if i > 0 && (e.data.Height < all[i-1].data.Height || (e.data.Height == all[i-1].data.Height && e.data.Index <= all[i-1].data.Index)) {
			t.Fatalf("events out of order: %+v then %+v", all[i-1], e)
		}
		seen[e.data.Tx] = true
	}
	if !seen[ids[0]] || !seen[ids[1]] {
		t.Fatalf("events %+v are not of the transactions %v", all, ids)
	}
	// Resuming from the first event's id gives the second first.
	if next := readEvents(t, srv.URL, all[0].id, 1); next[0] != all[1] {
		t.Fatalf("resumed at %+v, want %+v", next[0], all[1])
	}
}

// waitTx polls GET /v1/txs/{id} until its status is want.
func waitTx(t *testing.T, base string, id types.Hash, want string) TxResponse {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := do(t, "GET", base+"/v1/txs/"+id.String(), "")
		var tx TxResponse
		if status == http.StatusOK {
			if err := json.Unmarshal(body, &tx); err != nil {
				t.Fatal(err)
			}
			if tx.Status == want {
				return tx
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tx %s not %s: %d %s", id, want, status, body)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

// TestDeferredTx: a sender's nonce 2 ordered before its nonce 1 is
// "deferred" at the block that ordered it, then executes after nonce 1 at
// a later height, and its event is streamed at that height.
func TestDeferredTx(t *testing.T) {
	n, srv := newNode(t)
	ctx := context.Background()
	second, err := n.SubmitTx(ctx, counterTx(20, "d", func(b *types.TxBody) { b.Nonce = 2 }))
	if err != nil {
		t.Fatal(err)
	}
	d := waitTx(t, srv.URL, second, "deferred")
	if d.Height == 0 || d.Receipt != nil {
		t.Fatalf("deferred: %+v", d)
	}
	first, err := n.SubmitTx(ctx, counterTx(20, "d", nil))
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := waitTx(t, srv.URL, first, "executed"), waitTx(t, srv.URL, second, "executed")
	if r1.Receipt.Return != "0000000000000001" || r2.Receipt.Return != "0000000000000002" || r2.Height <= d.Height || r2.Height < r1.Height {
		t.Fatalf("first %+v %+v, second %+v %+v (deferred at %d)", r1, r1.Receipt, r2, r2.Receipt, d.Height)
	}
	evs := readEvents(t, srv.URL, "0", 2)
	for i, want := range []struct {
		tx     types.Hash
		height uint64
		data   string
	}{{first, r1.Height, "0000000000000001"}, {second, r2.Height, "0000000000000002"}} {
		if e := evs[i].data; e.Tx != want.tx || e.Height != want.height || e.Data != want.data {
			t.Fatalf("event %d: %+v, want tx %s at %d data %s", i, e, want.tx, want.height, want.data)
		}
	}
}

// TestShutdownEndsStreams: Shutdown of a NewServer returns once its open
// event streams end, which they do when it starts (a stream never goes
// idle, so a plain server would wait for the whole deadline).
func TestShutdownEndsStreams(t *testing.T) {
	n, _ := newNode(t)
	srv := NewServer(n, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	// The deadline only keeps a regression from hanging the test: the
	// check is that Shutdown ends without reaching it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
}
