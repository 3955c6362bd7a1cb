package loadgen

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/node/devnet"
)

// TestRunAllOK runs a 4-validator devnet on pebble, offers a low rate for
// 2 s with pipelined nonces over all the APIs, and checks that every
// transaction got an ok receipt and the figures are consistent. Each
// sender's transactions are 400 ms apart: the fair ordering can put a
// sender's nonce n+1 before n when they are closer than the spread of the
// validators' acks (see the package doc), which fails n+1 and the rest.
func TestRunAllOK(t *testing.T) {
	d, err := devnet.Start(devnet.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := New(ctx, d.APIs, 16)
	if err != nil {
		t.Fatal(err)
	}
	r, err := g.Run(ctx, 40, 2*time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 80 || r.OK != r.Sent || r.Rejected+r.Failed+r.Lost != 0 || r.Requests != r.Sent {
		t.Fatalf("want 80 ok transactions in 80 requests, got %+v", r)
	}
	if r.Committed <= 0 || r.P50 > r.P90 || r.P90 > r.P99 || r.P99 > r.Max || r.P50 <= 0 {
		t.Fatalf("inconsistent figures %+v", r)
	}
	// The senders' nonces carry over: a second run on the same generator,
	// submitting in batches, must still be all ok.
	// The CPU hook is read once before the first send and once after the
	// drain (a fake clock that advances a second per read).
	if r.LoadCPU != 0 {
		t.Fatalf("LoadCPU %v without a CPU hook", r.LoadCPU)
	}
	g.Batch = true
	reads := 0
	g.CPU = func() time.Duration { reads++; return time.Duration(reads) * time.Second }
	r, err = g.Run(ctx, 40, time.Second, time.Minute)
	if err != nil || r.OK != 40 {
		t.Fatalf("second run: %+v, %v", r, err)
	}
	if reads != 2 || r.LoadCPU != time.Second {
		t.Fatalf("CPU hook read %d times, LoadCPU %v; want 2 reads, 1s", reads, r.LoadCPU)
	}
	if r.Requests < 1 || r.Requests > r.Sent {
		t.Fatalf("%d batch requests for %d transactions", r.Requests, r.Sent)
	}
	// A batch refuses a bad transaction alone, with the API's code.
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	b := newBatchers(bctx, g.clients[:1], 1)[0]
	defer close(b.in)
	s := g.senders[0]
	tx := s.sign("transfer", s.sink, 1)
	s.nonce--
	tx.Sig[0] ^= 1
	if err := b.submit(tx); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), api.CodeTxSignature) {
		t.Fatalf("bad signature in a batch: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, nil, 8); !errors.Is(err, ErrConfig) {
		t.Fatalf("no APIs: %v", err)
	}
	if _, err := New(ctx, []string{"http://127.0.0.1:1"}, MaxSenders+1); !errors.Is(err, ErrConfig) {
		t.Fatalf("too many senders: %v", err)
	}
	g := &Gen{}
	for _, c := range []struct {
		rate float64
		dur  time.Duration
	}{{0, time.Second}, {-1, time.Second}, {10, 0}, {MaxTxs, 2 * time.Second}} {
		if _, err := g.Run(ctx, c.rate, c.dur, time.Second); !errors.Is(err, ErrConfig) {
			t.Fatalf("rate %v duration %v: %v", c.rate, c.dur, err)
		}
	}
}
