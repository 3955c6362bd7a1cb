package e2e

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kairos-network/kairos/node/config"
	"github.com/kairos-network/kairos/node/devnet"
	kexec "github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

const (
	validators = 4
	// callGas is ample for a native counter increment.
	callGas = 1 << 20
	// poll spaces the polls of a condition.
	poll = 20 * time.Millisecond
)

// plan sizes one run.
type plan struct {
	workers, txsPerWorker int
	kills                 int // kill/restart cycles, validator (k+1) % validators each
	burst                 int // txs the victim accepts just before its kill
	deadline              time.Duration
}

func choosePlan() plan {
	if os.Getenv("KAIROS_LONG") == "1" {
		return plan{workers: 8, txsPerWorker: 150, kills: 2 * validators, burst: 32, deadline: 8 * time.Minute}
	}
	return plan{workers: 4, txsPerWorker: 12, kills: 1, burst: 16, deadline: 90 * time.Second}
}

// proc is one `kairos node` process.
type proc struct {
	home, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

// network is the running devnet: the processes, their API clients, and
// which validators the test has killed (workers skip those).
type network struct {
	t       *testing.T
	bin     string
	procs   [validators]*proc
	clients [validators]*devnet.Client
	down    [validators]atomic.Bool
	mu      sync.Mutex
}

// buildKairos builds cmd/kairos once into a temporary directory.
func buildKairos(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kairos")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/kairos-network/kairos/cmd/kairos").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeRun finds n consecutive free TCP ports on 127.0.0.1, starting the
// search at a port derived from the process id so parallel runs differ.
func freeRun(t *testing.T, n, from int) int {
	t.Helper()
	for base := from; base+n < 60000; base += n {
		ok := true
		var ls []net.Listener
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port run")
	return 0
}

func startNetwork(t *testing.T) *network {
	nw := &network{t: t, bin: buildKairos(t)}
	dir, logs := t.TempDir(), t.TempDir()
	from := 20000 + (os.Getpid()%2000)*8
	p2pBase := freeRun(t, validators, from)
	apiBase := freeRun(t, validators, p2pBase+validators)
	out, err := exec.Command(nw.bin, "init", "--dir", dir, "--chain", devnet.ChainID, "--validators", strconv.Itoa(validators),
		"--p2p-port", strconv.Itoa(p2pBase), "--api-port", strconv.Itoa(apiBase)).CombinedOutput()
	if err != nil {
		t.Fatalf("kairos init: %v\n%s", err, out)
	}
	// Registered before the first start, so a failure below still kills
	// the processes already running.
	t.Cleanup(func() {
		for i := range nw.procs {
			nw.kill(i)
		}
		if t.Failed() {
			for i, p := range nw.procs {
				if p == nil {
					continue
				}
				b, _ := os.ReadFile(p.log)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- validator %d log tail:\n%s", i, b)
			}
		}
	})
	// init prints one `kairos node --home HOME` line per validator, in
	// validator order; each home's config names its API address.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != validators {
		t.Fatalf("kairos init printed %d homes:\n%s", len(lines), out)
	}
	for i := range nw.procs {
		home, ok := strings.CutPrefix(lines[i], "kairos node --home ")
		if !ok {
			t.Fatalf("kairos init line %q", lines[i])
		}
		l, err := config.Load(home)
		if err != nil {
			t.Fatal(err)
		}
		nw.procs[i] = &proc{home: home, log: filepath.Join(logs, fmt.Sprintf("node%d.log", i))}
		nw.clients[i] = devnet.NewClient("http://" + l.File.API)
		nw.clients[i].HTTP.Timeout = 5 * time.Second
		nw.start(i)
	}
	return nw
}

// start runs validator i from its home, appending to its log.
func (nw *network) start(i int) {
	nw.t.Helper()
	p := nw.procs[i]
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		nw.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(nw.bin, "node", "--home", p.home)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		nw.t.Fatalf("start validator %d: %v", i, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	nw.mu.Lock()
	p.cmd, p.done = cmd, done
	nw.mu.Unlock()
	nw.down[i].Store(false)
}

// kill sends SIGKILL to validator i and waits for the process to end.
func (nw *network) kill(i int) {
	nw.mu.Lock()
	p := nw.procs[i]
	var cmd *exec.Cmd
	var done chan struct{}
	if p != nil {
		cmd, done = p.cmd, p.done
		p.cmd = nil
	}
	nw.mu.Unlock()
	if cmd == nil {
		return
	}
	nw.down[i].Store(true)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// exited reports a validator that is meant to run but whose process has
// ended on its own (a crash, a halt).
func (nw *network) exited() error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for i, p := range nw.procs {
		if p == nil || p.cmd == nil {
			continue
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: validator %d exited: %v (log %s)", errGiveUp, i, p.cmd.ProcessState, p.log)
		default:
		}
	}
	return nil
}

// errGiveUp marks a condition's error that waiting cannot cure (a crashed
// validator, a failed receipt); other errors are retried until the deadline.
var errGiveUp = errors.New("e2e: give up")

// waitUntil polls cond until it holds, ctx ends, or cond fails with
// errGiveUp.
func waitUntil(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errGiveUp) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(poll):
		}
	}
}

// acked is a transaction an API accepted.
type acked struct {
	id     types.Hash
	via    int    // validator whose API accepted it
	height uint64 // from the receipt the worker read
}

// worker sends n counter increments from worker w's account, one at a time (nonces
// in order), each to the next validator that is up; it resubmits the same
// signed transaction elsewhere when a validator does not answer.
func (nw *network) worker(ctx context.Context, w, n int, out chan<- acked) error {
	acct := devnet.NewAccount(1000 + w)
	key := counterKey(w)
	access := types.Access{Module: kexec.CounterModule, Key: key, Mode: types.Write}
	for j := 0; j < n; j++ {
		tx := acct.Sign(callGas, types.Payload{Kind: types.Call, Module: kexec.CounterModule, Method: "incr", Args: key}, access)
		var a acked
		v := w + j
		err := waitUntil(ctx, "a validator to accept a tx", func() (bool, error) {
			v++
			if nw.down[v%validators].Load() {
				return false, nil
			}
			id, err := nw.clients[v%validators].Submit(ctx, tx)
			if err != nil {
				return false, err
			}
			a = acked{id: id, via: v % validators}
			return true, nil
		})
		if err != nil {
			return err
		}
		if a.id != tx.ID() {
			return fmt.Errorf("API returned id %s for tx %s", a.id, tx.ID())
		}
		if err := nw.waitReceipt(ctx, &a, v); err != nil {
			return err
		}
		out <- a
	}
	return nil
}

// counterKey is the native counter key worker w increments.
func counterKey(w int) []byte { return []byte(fmt.Sprintf("e2e-worker-%d", w)) }

// waitReceipt polls the validators that are up, in turn from v+1, until
// one returns a's receipt, which must be ok, and records its height.
func (nw *network) waitReceipt(ctx context.Context, a *acked, v int) error {
	return waitUntil(ctx, "receipt of "+a.id.String(), func() (bool, error) {
		v++
		if nw.down[v%validators].Load() {
			return false, nil
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r, err := nw.clients[v%validators].Receipt(rctx, a.id)
		if err != nil {
			return false, err
		}
		if r.Receipt.Status != types.StatusOK.String() {
			return false, fmt.Errorf("%w: tx %s: %s %s", errGiveUp, a.id, r.Receipt.Status, r.Receipt.Error)
		}
		a.height = r.Height
		return true, nil
	})
}

// burst has validator v accept n transactions from fresh accounts (one
// each, so their nonces do not depend on each other) and returns them
// without waiting: the caller kills v right after, while they may still
// be only in v's pool and gossip queue.
func (nw *network) burst(ctx context.Context, v, cycle, n int) ([]acked, error) {
	var out []acked
	for i := 0; i < n; i++ {
		acct := devnet.NewAccount(100_000 + cycle*10_000 + i)
		key := []byte(fmt.Sprintf("e2e-burst-%d-%d", cycle, i))
		tx := acct.Sign(callGas, types.Payload{Kind: types.Call, Module: kexec.CounterModule, Method: "incr", Args: key},
			types.Access{Module: kexec.CounterModule, Key: key, Mode: types.Write})
		id, err := nw.clients[v].Submit(ctx, tx)
		if err != nil {
			return nil, fmt.Errorf("burst to validator %d: %w", v, err)
		}
		out = append(out, acked{id: id, via: v})
	}
	return out, nil
}

// TestDevnetKill9: 4 validator processes, workers submitting through
// several APIs, one validator killed with SIGKILL mid-workload and
// restarted from its home; every acknowledged transaction is committed
// exactly once and all validators agree on every block.
func TestDevnetKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process devnet")
	}
	pl := choosePlan()
	ctx, cancel := context.WithTimeout(context.Background(), pl.deadline)
	defer cancel()
	nw := startNetwork(t)
	if err := waitUntil(ctx, "every validator connected to the others", func() (bool, error) {
		for _, c := range nw.clients {
			s, err := c.Status(ctx)
			if err != nil || s.Peers < validators-1 {
				return false, err
			}
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}

	total := pl.workers * pl.txsPerWorker
	out := make(chan acked, total)
	errs := make(chan error, pl.workers)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for w := 0; w < pl.workers; w++ {
		go func() { errs <- nw.worker(wctx, w, pl.txsPerWorker, out) }()
	}
	var acks, bursts []acked
	// The kills happen at evenly spaced points of the workload: validator
	// v is killed once a share of the transactions has receipts, and
	// restarted once a few more have been committed without it.
	running := pl.workers
	next := 0
	for running > 0 {
		select {
		case a := <-out:
			acks = append(acks, a)
		case err := <-errs:
			running--
			if err != nil {
				wcancel()
				t.Fatalf("worker: %v (%d acknowledged)", err, len(acks))
			}
			continue
		}
		if next < pl.kills && len(acks) == (2*next+1)*total/(2*pl.kills+1) {
			v := (next + 1) % validators
			b, err := nw.burst(ctx, v, next, pl.burst)
			if err != nil {
				t.Fatal(err)
			}
			bursts = append(bursts, b...)
			nw.kill(v)
			t.Logf("killed validator %d after %d receipts, right after it accepted %d more", v, len(acks), len(b))
		}
		if next < pl.kills && len(acks) == (2*next+2)*total/(2*pl.kills+1) {
			v := (next + 1) % validators
			nw.start(v)
			t.Logf("restarted validator %d after %d receipts", v, len(acks))
			next++
		}
	}
	if next != pl.kills {
		t.Fatalf("only %d of %d kill cycles ran", next, pl.kills)
	}
	if len(acks) != total {
		t.Fatalf("%d acknowledged transactions, want %d", len(acks), total)
	}
	for i := range bursts {
		if err := nw.waitReceipt(ctx, &bursts[i], i); err != nil {
			t.Fatalf("a transaction the killed validator %d accepted: %v", bursts[i].via, err)
		}
	}
	acks = append(acks, bursts...)
	// A code transaction over the old 1 MiB gossip cap, after the kills,
	// so the restarted validators must receive it too.
	acks = append(acks, nw.bigDeploy(ctx, t))
	var top uint64
	for _, a := range acks {
		top = max(top, a.height)
	}
	// Every validator, the restarted ones included, reaches the highest
	// receipt height; the common final height is the lowest they report.
	final := uint64(0)
	if err := waitUntil(ctx, fmt.Sprintf("every validator at height %d", top), func() (bool, error) {
		low := uint64(1 << 63)
		for _, c := range nw.clients {
			s, err := c.Status(ctx)
			if err != nil {
				return false, err
			}
			if s.Halted != "" {
				return false, fmt.Errorf("%w: halted: %s", errGiveUp, s.Halted)
			}
			low = min(low, s.Height)
		}
		final = low
		return low >= top, nil
	}); err != nil {
		t.Fatal(err)
	}
	checkChains(ctx, t, nw, final, acks)
	checkCounters(ctx, t, nw, final, pl)
	t.Logf("%d transactions from %d workers and %d accepted right before a kill, %d kill cycles, final height %d",
		total, pl.workers, len(bursts), pl.kills, final)
}

// checkChains reads blocks 1..final from every validator: identical ids and
// state roots at every height, and every acknowledged transaction in
// exactly one block, at its receipt's height, with a receipt at that
// height on every validator.
func checkChains(ctx context.Context, t *testing.T, nw *network, final uint64, acks []acked) {
	t.Helper()
	var ref []string // block id and root per height, from validator 0
	for v, c := range nw.clients {
		where := make(map[types.Hash][]uint64)
		for h := uint64(1); h <= final; h++ {
			b, err := c.Block(ctx, h)
			if err != nil {
				t.Fatalf("validator %d block %d: %v", v, h, err)
			}
			got := b.ID.String() + " " + b.StateRoot
			if v == 0 {
				ref = append(ref, got)
			} else if ref[h-1] != got {
				t.Fatalf("height %d: validator %d has %s, validator 0 %s", h, v, got, ref[h-1])
			}
			for _, tx := range b.Txs {
				where[tx.ID] = append(where[tx.ID], h)
			}
		}
		for _, a := range acks {
			hs := where[a.id]
			if len(hs) != 1 || hs[0] != a.height {
				t.Fatalf("validator %d: tx %s (accepted by %d, receipt height %d) is in blocks %v", v, a.id, a.via, a.height, hs)
			}
			r, err := c.Receipt(ctx, a.id)
			if err != nil {
				t.Fatalf("validator %d: receipt of %s: %v", v, a.id, err)
			}
			if r.Height != a.height {
				t.Fatalf("validator %d: receipt of %s at height %d, want %d", v, a.id, r.Height, a.height)
			}
		}
	}
}

// checkCounters reads every worker's counter at the final height on every
// validator: the reference model is one increment per transaction, so each
// must equal txsPerWorker (a lost or doubled transaction shows here too).
func checkCounters(ctx context.Context, t *testing.T, nw *network, final uint64, pl plan) {
	t.Helper()
	want := hex.EncodeToString(binary.BigEndian.AppendUint64(nil, uint64(pl.txsPerWorker)))
	for v, c := range nw.clients {
		for w := 0; w < pl.workers; w++ {
			s, err := c.State(ctx, types.StateKey{Module: kexec.CounterModule, Key: counterKey(w)}, final, false)
			if err != nil {
				t.Fatalf("validator %d: counter of worker %d: %v", v, w, err)
			}
			if s.Value == nil || *s.Value != want {
				t.Fatalf("validator %d: counter of worker %d at height %d is %v, want %s", v, w, final, s.Value, want)
			}
		}
	}
}

// bigCodeBytes is the size of the deploy bigDeploy sends: between the old
// 1 MiB gossip cap and types.DefaultTxLimits.MaxCodeTxBytes.
const bigCodeBytes = 2 << 20

// bigDeploy deploys contracts/counter_wat padded with a custom section to
// bigCodeBytes through validator 0 and waits for its receipt. Every
// validator must then count no oversized transaction gossip: a cap below
// the transaction would reject it at each receiver's topic validator.
func (nw *network) bigDeploy(ctx context.Context, t *testing.T) acked {
	t.Helper()
	code, err := os.ReadFile(filepath.Join("..", "..", "contracts", "counter_wat", "counter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	// A custom section (id 0, LEB128 size, name, bytes) may follow the
	// module's other sections and is ignored by execution.
	name := "e2e-padding"
	pad := bigCodeBytes - len(code) - 16 - len(name)
	body := append(append([]byte{byte(len(name))}, name...), make([]byte, pad)...)
	code = append(code, 0)
	code = binary.AppendUvarint(code, uint64(len(body)))
	code = append(code, body...)
	acct := devnet.NewAccount(200_000)
	tx := acct.Sign(types.DefaultTxLimits.MaxGas, types.Payload{Kind: types.Deploy, Code: code, Admin: acct.Addr})
	id, err := nw.clients[0].Submit(ctx, tx)
	if err != nil {
		t.Fatalf("submit a %d-byte deploy: %v", len(code), err)
	}
	a := acked{id: id, via: 0}
	if err := nw.waitReceipt(ctx, &a, 0); err != nil {
		t.Fatalf("%d-byte deploy: %v", len(code), err)
	}
	for v, c := range nw.clients {
		n, err := metric(ctx, c, `kairos_p2p_messages_total{kind="kairos/txs/2",outcome="oversize"}`)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("validator %d rejected %v oversized transaction messages", v, n)
		}
	}
	t.Logf("a %d-byte deploy committed at height %d", len(code), a.height)
	return a
}

// metric reads one sample of the validator's Prometheus metrics.
func metric(ctx context.Context, c *devnet.Client, sample string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.Base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, devnet.MaxResponseBytes))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s: no sample %s", c.Base, sample)
}
