package sdktest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/sdk"
	"github.com/kairos-network/kairos/types"
)

// counterKey is the state key of contracts/counter_wat.
var counterKey = []byte("\x05count")

func committee(d *devnet.Devnet) *sdk.Committee {
	c := &sdk.Committee{ChainID: d.Committee.ChainID, Epoch: d.Committee.Epoch}
	for _, v := range d.Committee.Validators {
		c.Validators = append(c.Validators, sdk.Validator{Key: v.Key, Weight: v.Weight})
	}
	return c
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// TestClientAgainstDevnet deploys and calls the counter through the SDK
// only (simulate → sign with the simulated access list → submit → wait),
// then reads the count back verified against a checkpoint certificate.
func TestClientAgainstDevnet(t *testing.T) {
	if sdk.AccountsModule != exec.AccountsModule {
		t.Fatal("sdk.AccountsModule differs from the executor's")
	}
	code, err := os.ReadFile("../../contracts/counter_wat/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	d, err := devnet.Start(devnet.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := sdk.NewClient(d.APIs[1], d.Committee.ChainID, committee(d))
	seed := make([]byte, 32)
	seed[0] = 7
	key, err := sdk.KeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}

	addr, r, err := c.Deploy(ctx, key, code, nil, key.Address())
	if err != nil {
		t.Fatalf("deploy: %v (%+v)", err, r)
	}
	if want := exec.InstanceAddress(key.Address(), 1); addr != want {
		t.Fatalf("instance %s, executor says %s", addr, want)
	}
	m, err := c.Module(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != len(code) || m.Admin != key.Address() || !strings.HasPrefix(m.Code, "b") {
		t.Fatalf("module %+v, want size %d admin %s", m, len(code), key.Address())
	}

	var last *sdk.TxResult
	for i := uint64(1); i <= 2; i++ {
		if last, err = c.Call(ctx, key, addr, "increment", nil); err != nil {
			t.Fatalf("increment %d: %v", i, err)
		}
		if string(last.Receipt.Return) != string(u64(i)) || len(last.Receipt.Events) != 1 || last.Receipt.Events[0].Topic != "incremented" {
			t.Fatalf("increment %d: receipt %+v", i, last.Receipt)
		}
	}
	// A call the module rejects fails in simulation: nothing is sent, and
	// the nonce is not used.
	if _, err := c.Call(ctx, key, addr, "no_such_method", nil); !errors.Is(err, sdk.ErrTxFailed) {
		t.Fatalf("bad method: %v, want %v", err, sdk.ErrTxFailed)
	}
	if n, err := c.Nonce(ctx, key.Address()); err != nil || n != 3 {
		t.Fatalf("nonce %d, %v; want 3 (deploy and two calls)", n, err)
	}

	// The latest checkpoint may trail the call: poll until it covers it.
	k := types.StateKey{Module: addr, Key: counterKey}
	var v *sdk.Verified
	for v == nil || v.Height < last.Height {
		if v, err = c.Query(ctx, k); err != nil && !errors.Is(err, sdk.ErrAPI) {
			t.Fatalf("query: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("no checkpoint at or above height %d", last.Height)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	if string(v.Value) != string(u64(2)) {
		t.Fatalf("verified count %x, want %x", v.Value, u64(2))
	}
	// An absent key is proven absent.
	if v, err := c.Query(ctx, types.StateKey{Module: addr, Key: []byte("nope")}); err != nil || v.Value != nil {
		t.Fatalf("absent key: %+v, %v", v, err)
	}

	// The module's two events stream in order, and resume after the first.
	var evs []sdk.StreamEvent
	errDone := errors.New("done")
	collect := func(n int) func(e sdk.StreamEvent) error {
		return func(e sdk.StreamEvent) error {
			if e.Module == addr {
				evs = append(evs, e)
			}
			if len(evs) == n {
				return errDone
			}
			return nil
		}
	}
	if err := c.Events(ctx, "0", collect(2)); !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Topic != "incremented" || string(e.Data) != string(u64(uint64(i+1))) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	first := evs[0]
	evs = nil
	if err := c.Events(ctx, first.Cursor, collect(1)); !errors.Is(err, errDone) || string(evs[0].Data) != string(u64(2)) {
		t.Fatalf("resumed after %s: %+v, %v", first.Cursor, evs, err)
	}

	t.Run("wrong committee", func(t *testing.T) {
		for name, mod := range map[string]func(*sdk.Committee){
			"chain": func(c *sdk.Committee) { c.ChainID = "other" },
			"epoch": func(c *sdk.Committee) { c.Epoch = 1 },
			"keys": func(c *sdk.Committee) {
				c.Validators[0], c.Validators[1] = c.Validators[1], c.Validators[0]
				c.Validators[2], c.Validators[3] = c.Validators[3], c.Validators[2]
			},
			"absent heavy validator": func(c *sdk.Committee) {
				c.Validators = append(c.Validators, sdk.Validator{Key: c.Validators[0].Key, Weight: 100})
			},
		} {
			cm := committee(d)
			mod(cm)
			wc := sdk.NewClient(d.APIs[1], d.Committee.ChainID, cm)
			if _, err := wc.Query(ctx, k); !errors.Is(err, sdk.ErrCheckpoint) && !errors.Is(err, sdk.ErrNoQuorum) {
				t.Errorf("%s: %v, want a checkpoint error", name, err)
			}
		}
	})

	t.Run("lying server", func(t *testing.T) {
		for name, lie := range map[string]func(path string, m map[string]any){
			"value": func(path string, m map[string]any) {
				if strings.HasPrefix(path, "/v1/state/") {
					m["value"] = "0000000000000063"
				}
			},
			"absent": func(path string, m map[string]any) {
				if strings.HasPrefix(path, "/v1/state/") {
					m["value"] = nil
				}
			},
			"proof": func(path string, m map[string]any) {
				if p, ok := m["proof"].(string); ok {
					m["proof"] = p[:len(p)-2] + "00"
				}
			},
		} {
			srv := lyingProxy(t, d.APIs[1], lie)
			lc := sdk.NewClient(srv.URL, d.Committee.ChainID, committee(d))
			if _, err := lc.Query(ctx, k); !errors.Is(err, sdk.ErrProof) {
				t.Errorf("%s: %v, want %v", name, err, sdk.ErrProof)
			}
		}
	})
}

// lyingProxy forwards to the API at base and rewrites its JSON answers.
func lyingProxy(t *testing.T, base string, lie func(path string, m map[string]any)) *httptest.Server {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(r *http.Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		r.Body.Close()
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			lie(r.Request.URL.Path, m)
			if b, err = json.Marshal(m); err != nil {
				return err
			}
		}
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}
