package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// Limits of one run (one process on a shared machine).
const (
	MaxSenders = 10_000
	MaxTxs     = 1_000_000 // rate × duration
	// MaxPipeline bounds a sender's queue of due, unsent transactions; it
	// stays under the mempool's per-sender limit.
	MaxPipeline = 512
)

// Workload constants.
const (
	txGas    = 1 << 20
	funding  = 1 << 40
	validity = 10 * time.Minute
	waitPoll = 20 * time.Millisecond // peers and funding receipts
	readers  = 8                     // concurrent receipt reads at the end
	// maxIdlePerAPI is how many idle connections to each API are kept for
	// reuse; more senders than this may be submitting at once only when
	// the node is far behind.
	maxIdlePerAPI = 128
)

var (
	// ErrConfig reports an unusable configuration.
	ErrConfig = errors.New("loadgen: bad config")
	// ErrFund reports a funding transaction that did not execute ok.
	ErrFund = errors.New("loadgen: funding failed")
)

type sender struct {
	key   ed25519.PrivateKey
	addr  types.Address
	sink  types.Address
	api   int
	nonce uint64 // of the last transaction signed
}

func (s *sender) sign(method string, to types.Address, amount uint64) *types.Tx {
	s.nonce++
	access := []types.Access{{Module: exec.TokenModule, Key: exec.BalanceKey(to), Mode: types.Write}}
	if method == "transfer" {
		access = append(access, types.Access{Module: exec.TokenModule, Key: exec.BalanceKey(s.addr), Mode: types.Write})
	}
	return types.SignTx(types.TxBody{ChainID: devnet.ChainID, Sender: s.key.Public().(ed25519.PublicKey), Nonce: s.nonce,
		ValidUntil: time.Now().Add(validity).UnixNano(), GasLimit: txGas, Access: access,
		Payload: types.Payload{Kind: types.Call, Module: exec.TokenModule, Method: method, Args: exec.TransferArgs(to, amount)}}, s.key)
}

// Gen is a load generator with funded senders.
type Gen struct {
	// Batch submits through POST /v1/txs/batch: the submissions that
	// reach an API's batcher while its previous batch is served go in one
	// request (one signature batch on the node); otherwise each
	// transaction is its own POST /v1/txs.
	Batch bool
	// BatchWorkers is how many batch requests to one API may be in
	// flight at once (1..MaxBatchWorkers; 0 = DefaultBatchWorkers).
	BatchWorkers int
	// CPU, if set, reads the process's CPU time; Result.LoadCPU is then
	// its growth from the first send to the end of the drain, without
	// the signing before and the receipt reads after (work of the
	// generator only, not of a node under load).
	CPU     func() time.Duration
	clients []*devnet.Client
	senders []*sender
}

// New waits until every validator behind apis sees the others, then funds
// senders accounts (deterministic keys, so a rerun on the same chain
// continues their nonces).
func New(ctx context.Context, apis []string, senders int) (*Gen, error) {
	if len(apis) == 0 || senders < 1 || senders > MaxSenders {
		return nil, fmt.Errorf("%w: %d APIs, %d senders (1..%d)", ErrConfig, len(apis), senders, MaxSenders)
	}
	g := &Gen{}
	// Many senders submit at once: without enough idle connections kept,
	// most submissions open (and the API accepts) a new TCP connection,
	// which cost the process more than the validators' signature checks.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 0, maxIdlePerAPI
	for _, u := range apis {
		c := devnet.NewClient(u)
		c.HTTP.Transport = tr
		g.clients = append(g.clients, c)
	}
	if err := g.waitPeers(ctx); err != nil {
		return nil, err
	}
	for i := range senders {
		seed := sha256.Sum256(fmt.Appendf(nil, "kairos-loadgen-sender-%d", i))
		k := ed25519.NewKeyFromSeed(seed[:])
		s := &sender{key: k, addr: types.AddressFromPublicKey(k.Public().(ed25519.PublicKey)), api: i % len(apis)}
		s.sink = types.Address(sha256.Sum256(append([]byte("kairos-loadgen-sink"), s.addr[:]...)))
		n, err := g.clients[s.api].Nonce(ctx, s.addr)
		if err != nil {
			return nil, err
		}
		s.nonce = n
		g.senders = append(g.senders, s)
	}
	ids := make([]types.Hash, senders)
	for i, s := range g.senders {
		id, err := g.clients[s.api].Submit(ctx, s.sign("mint", s.addr, funding))
		if err != nil {
			return nil, fmt.Errorf("%w: sender %d: %w", ErrFund, i, err)
		}
		ids[i] = id
	}
	for i, id := range ids {
		r, err := g.clients[g.senders[i].api].Receipt(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: sender %d: %w", ErrFund, i, err)
		}
		if r.Receipt.Status != types.StatusOK.String() {
			return nil, fmt.Errorf("%w: sender %d: %s %s", ErrFund, i, r.Receipt.Status, r.Receipt.Error)
		}
	}
	return g, nil
}

func (g *Gen) waitPeers(ctx context.Context) error {
	for {
		ok := 0
		for _, c := range g.clients {
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if s.Peers >= len(g.clients)-1 {
				ok++
			}
		}
		if ok == len(g.clients) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: waiting for peers: %w", ctx.Err())
		case <-time.After(waitPoll):
		}
	}
}

// Result is one run's figures. Latencies are of the ok transactions.
type Result struct {
	Offered   float64 // tx/s asked for
	Sent      int     // transactions due in the run
	Rejected  int     // submissions the API refused
	Failed    int     // executed with a status other than ok
	Lost      int     // accepted but not executed before the drain bound
	OK        int
	Committed float64       // ok transactions / (last ok block seen − start)
	LoadCPU   time.Duration // process CPU from the first send to the drain's end (Gen.CPU)
	Requests  int           // submission requests sent (batches, or single transactions)
	P50, P90  time.Duration
	P99, Max  time.Duration
	// FirstProblem describes the first rejected or failed transaction.
	FirstProblem string
}

type txRec struct {
	due     time.Time
	id      types.Hash
	api     int
	seen    time.Time // block holding it first seen on its API
	status  string
	why     string // the receipt's error
	err     error  // submission refused
	settled bool   // counted in Run's remaining
}

// Run offers rate tx/s for duration, then waits up to drain for the
// receipts, and returns the figures.
func (g *Gen) Run(ctx context.Context, rate float64, duration, drain time.Duration) (*Result, error) {
	total := int(rate * duration.Seconds())
	if rate <= 0 || total < 1 || total > MaxTxs || drain <= 0 {
		return nil, fmt.Errorf("%w: rate %v × duration %v = %d transactions (1..%d), drain %v", ErrConfig, rate, duration, total, MaxTxs, drain)
	}
	workers := g.BatchWorkers
	if workers == 0 {
		workers = DefaultBatchWorkers
	}
	if workers < 1 || workers > MaxBatchWorkers {
		return nil, fmt.Errorf("%w: %d batch workers (1..%d)", ErrConfig, workers, MaxBatchWorkers)
	}
	// Sign everything first, so signing cost does not bend the schedule.
	recs := make([]txRec, total)
	txs := make([]*types.Tx, total)
	for k := range txs {
		s := g.senders[k%len(g.senders)]
		txs[k] = s.sign("transfer", s.sink, 1)
		recs[k].id, recs[k].api = txs[k].ID(), s.api
	}
	byID := make([]map[types.Hash]int, len(g.clients))
	for i := range byID {
		byID[i] = map[types.Hash]int{}
	}
	for k := range recs {
		byID[recs[k].api][recs[k].id] = k
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// settle counts transaction k as done (seen in a block, or refused)
	// once, even when a refused submission still reached the node.
	var mu sync.Mutex // guards recs[*].seen, .err, .settled and remaining
	remaining := total
	allSeen := make(chan struct{})
	settle := func(k int) {
		if !recs[k].settled {
			recs[k].settled = true
			if remaining--; remaining == 0 {
				close(allSeen)
			}
		}
	}
	var watchErr error
	var wg sync.WaitGroup
	for a, c := range g.clients {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := watch(wctx, c, st.Height, func(ids []types.Hash, at time.Time) {
				mu.Lock()
				defer mu.Unlock()
				for _, id := range ids {
					if k, ok := byID[a][id]; ok && recs[k].seen.IsZero() {
						recs[k].seen = at
						settle(k)
					}
				}
			})
			if err != nil && wctx.Err() == nil {
				mu.Lock()
				watchErr = err
				mu.Unlock()
				stopWatch()
			}
		}()
	}
	// One goroutine per sender submits its transactions in nonce order,
	// alone or through its API's batcher.
	var singles atomic.Int64
	submit := func(k int) error {
		singles.Add(1)
		_, err := g.clients[recs[k].api].Submit(ctx, txs[k])
		return err
	}
	requests := singles.Load
	if g.Batch {
		bctx, stopBatchers := context.WithCancel(ctx)
		defer stopBatchers()
		bs := newBatchers(bctx, g.clients, workers)
		requests = func() int64 {
			var n int64
			for _, b := range bs {
				n += b.posts.Load()
			}
			return n
		}
		defer func() {
			for _, b := range bs {
				close(b.in)
			}
		}()
		submit = func(k int) error { return bs[recs[k].api].submit(txs[k]) }
	}
	queues := make([]chan int, len(g.senders))
	var sendWG sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan int, MaxPipeline)
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			for k := range queues[i] {
				if err := submit(k); err != nil {
					mu.Lock()
					recs[k].err = err
					settle(k)
					mu.Unlock()
				}
			}
		}()
	}
	var cpu0 time.Duration
	if g.CPU != nil {
		cpu0 = g.CPU()
	}
	start := time.Now()
	for k := range recs {
		recs[k].due = start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		if d := time.Until(recs[k].due); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		queues[k%len(queues)] <- k
	}
	for _, q := range queues {
		close(q)
	}
	sendWG.Wait()
	select {
	case <-allSeen:
	case <-wctx.Done():
	case <-time.After(drain):
	}
	stopWatch()
	wg.Wait()
	var loadCPU time.Duration
	if g.CPU != nil {
		loadCPU = g.CPU() - cpu0
	}
	if err := errors.Join(watchErr, ctx.Err()); err != nil {
		return nil, err
	}
	if err := g.readReceipts(ctx, recs); err != nil {
		return nil, err
	}
	r := summarize(recs, rate, start)
	r.LoadCPU, r.Requests = loadCPU, int(requests())
	return r, nil
}

// readReceipts reads the receipt of every transaction seen in a block.
func (g *Gen) readReceipts(ctx context.Context, recs []txRec) error {
	next := make(chan int)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for w := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				if errs[w] != nil {
					continue
				}
				r, err := g.clients[recs[k].api].Receipt(ctx, recs[k].id)
				if err != nil {
					errs[w] = err
					continue
				}
				recs[k].status, recs[k].why = r.Receipt.Status, r.Receipt.Error
			}
		}()
	}
	for k := range recs {
		if !recs[k].seen.IsZero() {
			next <- k
		}
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

func summarize(recs []txRec, rate float64, start time.Time) *Result {
	r := &Result{Offered: rate, Sent: len(recs)}
	var lat []time.Duration
	var last time.Time
	for _, t := range recs {
		switch {
		case t.err != nil && t.seen.IsZero():
			r.Rejected++
			if r.FirstProblem == "" {
				r.FirstProblem = "rejected: " + t.err.Error()
			}
		case t.seen.IsZero():
			r.Lost++
		case t.status != types.StatusOK.String():
			r.Failed++
			if r.FirstProblem == "" {
				r.FirstProblem = t.status + ": " + t.why
			}
		default:
			r.OK++
			lat = append(lat, t.seen.Sub(t.due))
			if t.seen.After(last) {
				last = t.seen
			}
		}
	}
	if len(lat) == 0 {
		return r
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.P50, r.P90, r.P99, r.Max = q(0.50), q(0.90), q(0.99), lat[len(lat)-1]
	r.Committed = float64(r.OK) / last.Sub(start).Seconds()
	return r
}
