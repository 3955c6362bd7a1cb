package exec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Errors of the executor. They are node errors, never guest failures;
// each is wrapped with detail.
var (
	// ErrBlockMismatch reports transaction bodies that do not line up with
	// the block (count, or a nil body).
	ErrBlockMismatch = errors.New("exec: block and transaction bodies differ")
	// ErrBlockTooLarge reports a block over Options.MaxTxs transactions.
	ErrBlockTooLarge = errors.New("exec: too many transactions in block")
	// ErrState reports a failed read of the parent state.
	ErrState = errors.New("exec: parent state read failed")
	// ErrRunner reports a runner that returned a node error (Result.Fatal).
	ErrRunner = errors.New("exec: runner failed")
)

// BlockTxsMax is the default cap on transactions per block. Consensus
// bounds blocks much lower; this keeps a bad caller from making the DAG
// and the write set unbounded.
const BlockTxsMax = 1 << 16

// StateView is what the executor reads of the parent version. Both methods
// may be called from several goroutines at once. *state.Store (its latest
// version) satisfies it. Returned and passed slices belong to the callee:
// the executor copies what it keeps.
type StateView interface {
	// Get returns the value of k, or nil when absent.
	Get(ctx context.Context, k types.StateKey) ([]byte, error)
	// Iterate calls fn for every key of module starting with prefix, in
	// key byte order.
	Iterate(ctx context.Context, module types.Address, prefix []byte, fn func(key, value []byte) error) error
}

// BlockEnv is what a block gives its transactions.
type BlockEnv struct {
	Height uint64
	Time   int64 // the block time (unix ns), against which ValidUntil is checked
}

// TxEnv is what a runner learns about the transaction it runs.
type TxEnv struct {
	BlockEnv
	TS       int64 // the transaction's consensus timestamp (tx_time)
	TxID     types.Hash
	Index    int // position in execution order (see nonceOrder)
	Sender   types.Address
	Simulate bool // access is recorded, not enforced; debug output allowed
}

// Result is what a runner reports for one transaction. The writes are the
// ones made through the Overlay; the executor keeps them only when Status
// is StatusOK.
type Result struct {
	Status  types.Status
	GasUsed uint64
	Return  []byte
	Events  []types.Event
	Error   string // why a failed transaction failed
	// Fatal is a node error (a state read failed): the block is not
	// executed and ExecuteBlock returns it.
	Fatal error
}

// Runner executes one transaction on an overlay. It is called from several
// goroutines at once, one transaction per call, and must be deterministic:
// the same overlay contents, tx and env give the same Result and writes.
// Unless env.Simulate is set it must enforce tx's declared access list and
// answer StatusAccessViolation for an undeclared access.
type Runner interface {
	Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result
}

// BlockResult is the outcome of a block, ready for one state.Commit.
type BlockResult struct {
	Writes   []state.Write   // sorted by (module, key); nil Value = delete
	Receipts []types.Receipt // one per transaction, in block order
	Events   []types.Event   // all receipts' events, in block order
	GasUsed  uint64
}

// Options configure an Executor. The zero value runs one worker per core.
type Options struct {
	// Workers is the size of the worker pool; 0 means runtime.GOMAXPROCS.
	// The prefetch before execution reads with as many goroutines (with
	// two workers the helper while the caller numbers the keys; with more
	// after the numbering), in ExecuteSerial too.
	Workers int
	// MaxTxs caps the transactions of a block; 0 means BlockTxsMax.
	MaxTxs int

	// reverseMerge merges write sets in reverse block order: a deliberate
	// bug that lets a test prove the equality checks can fail.
	reverseMerge bool
}

// Executor executes blocks with a Runner. It holds no per-block state,
// only the working memory of its last block, for its next (see scratch).
type Executor struct {
	run   Runner
	opts  Options
	spare spareScratch // the working memory of its last block (see scratch)
}

// New returns an executor of r.
func New(r Runner, opts Options) *Executor {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxTxs <= 0 {
		opts.MaxTxs = BlockTxsMax
	}
	return &Executor{run: r, opts: opts}
}

// txOut is the outcome of one transaction: its receipt and the writes it
// leaves (empty value = delete), each key once.
type txOut struct {
	receipt types.Receipt
	writes  []write
}

// block is the per-block input shared by the serial and parallel paths.
type block struct {
	env     BlockEnv
	b       *types.Block
	txs     []*types.Tx
	senders []types.Address
	access  *accessTable // nil in a simulation
	own     [][]byte     // the prefetched parent values by entry (see feed)
	// The block's pending writes and account records are carved from
	// these, so a transaction allocates none of them (see runTx).
	wbuf   []write
	nonces []byte
	// order maps execution positions to block indexes (nil = identity):
	// b, txs and senders are in execution order, see nonceOrder.
	order []int
	sc    *scratch // holds senders, access's arrays, own, wbuf
}

// done gives the block's scratch back to x for its next block: call it
// only once nothing of the block but its merged result is used.
func (x *Executor) done(bl *block) {
	bl.sc.crew.stop()
	bl.sc.crew = nil
	x.spare.put(bl.sc)
	bl.sc = nil
}

func (x *Executor) prepare(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx) (*block, error) {
	if len(txs) != len(b.Txs) {
		return nil, fmt.Errorf("%w: %d bodies for %d transactions", ErrBlockMismatch, len(txs), len(b.Txs))
	}
	if len(txs) > x.opts.MaxTxs {
		return nil, fmt.Errorf("%w: %d > %d", ErrBlockTooLarge, len(txs), x.opts.MaxTxs)
	}
	for i, tx := range txs {
		if tx == nil {
			return nil, fmt.Errorf("%w: body %d is nil", ErrBlockMismatch, i)
		}
	}
	sc := x.spare.get()
	sc.crew = newCrew(x.opts.Workers - 1)
	bl := &block{env: BlockEnv{Height: b.Height, Time: b.Time}, b: b, txs: txs, senders: grow(&sc.senders, len(txs)), sc: sc}
	// With two workers the caller numbers the keys in one part while the
	// helper reads the prefetch (see feed). With more, one part would
	// bound the preparation (~0.9 ms for 5 000 transfers, while W-1
	// helpers read the prefetch in ~1/(W-1) ms): the numbering keeps its
	// parts on the crew, and the prefetch follows it.
	beside, parts := x.opts.Workers <= 2, 1
	if !beside {
		parts = x.opts.Workers
	}
	var f *feed
	bl.access = newAccessTableIn(sc, txs, bl.senders, true, parts, func(t *accessTable) {
		f = newFeed(ctx, parent, t, txs, x.opts.Workers)
		if beside {
			f.start(sc.crew)
		}
	})
	if !beside {
		f.start(sc.crew)
	}
	own, err := f.finish()
	if err != nil {
		sc.crew.stop()
		return nil, err
	}
	if bl.order = nonceOrder(txs, bl.access.senderGroups); bl.order != nil {
		own = permuteOwn(sc, own, bl.access.start, bl.order) // start still in block order
		bl.b, bl.txs, bl.senders = reorder(b, txs, bl.senders, bl.order)
		bl.access.permute(bl.order)
	}
	bl.own = own
	bl.wbuf = grow(&sc.wbuf, bl.access.start[len(txs)])
	bl.nonces = make([]byte, nonceLen*len(txs))
	return bl, nil
}

// ExecuteBlock executes b, whose transaction bodies are txs (txs[i] is the
// body of b.Txs[i]; the caller checked the ids when it fetched them), on
// top of parent, in parallel by declared access.
func (x *Executor) ExecuteBlock(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx) (*BlockResult, error) {
	bl, err := x.prepare(ctx, parent, b, txs)
	if err != nil {
		return nil, err
	}
	defer bl.sc.crew.stop() // on the error paths; done stops it first otherwise
	n := len(txs)
	outs := bl.sc.outcomes(n, bl.own)
	if n == 0 {
		defer x.done(bl)
		return x.merge(outs, bl.access, 1, false), nil
	}
	if bl.access.independent {
		return x.executeIndependent(ctx, bl, parent, outs)
	}
	d := bl.access.dag(bl.txs)
	if len(d.out) == 0 {
		return x.executeIndependent(ctx, bl, parent, outs)
	}
	// Only transactions with dependents publish, each at most a slot
	// write per entry.
	publishers := 0
	for i := range n {
		if len(d.dependents(i)) > 0 {
			publishers += bl.access.start[i+1] - bl.access.start[i]
		}
	}
	mv := newMVStore(bl.access, publishers)
	// The transactions ready from the start are claimed in chunks from a
	// cursor; those released later go through the channel, behind them,
	// as they would in one queue. A channel operation per transaction cost
	// more than a small transaction, and filling it was serial.
	pending := make([]atomic.Int32, n)
	ready := make(chan int, n)
	roots := make([]int32, 0, n)
	for i := range n {
		pending[i].Store(d.ndeps[i])
		if d.ndeps[i] == 0 {
			roots = append(roots, int32(i))
		}
	}
	var cursor atomic.Int64
	chunk := max(1, min(independentChunk, len(roots)/(4*x.opts.Workers)))
	var (
		remaining atomic.Int64
		fail      blockErr
	)
	remaining.Store(int64(n))
	// step runs transaction i and releases its dependents. It returns the
	// first dependent that became ready (or -1), which the same worker
	// runs next: a chain then stays on one worker instead of passing every
	// link through the channel.
	step := func(ctx context.Context, i int) int {
		if !fail.failed.Load() {
			// Without a dependency no earlier transaction wrote what i may
			// read, and without a dependent no later one reads what i
			// writes (either would be an edge): the version store is then
			// skipped, as in a conflict-free block.
			var layer blockLayer = mv
			if d.ndeps[i] == 0 {
				layer = emptyLayer{}
			}
			out, err := x.runTx(ctx, bl, layer, parent, i, false, nil)
			if err != nil {
				fail.set(i, err)
			} else {
				outs.set(i, out)
				if len(d.dependents(i)) > 0 {
					mv.publish(i, out.writes)
				}
			}
		}
		next := -1
		for _, dep := range d.dependents(i) {
			if pending[dep].Add(-1) == 0 {
				if next < 0 {
					next = int(dep)
				} else {
					ready <- int(dep)
				}
			}
		}
		if remaining.Add(-1) == 0 {
			close(ready)
		}
		return next
	}
	work := func(ctx context.Context, _ int) {
		for {
			lo := int(cursor.Add(int64(chunk))) - chunk
			if lo >= len(roots) {
				break
			}
			for _, r := range roots[lo:min(lo+chunk, len(roots))] {
				for i := int(r); i >= 0; {
					i = step(ctx, i)
				}
			}
		}
		for i := range ready {
			for i >= 0 {
				i = step(ctx, i)
			}
		}
	}
	bl.sc.crew.goWorkers(ctx, min(x.opts.Workers, n), work)
	if fail.err != nil {
		return nil, fail.err
	}
	defer x.done(bl)
	return restoreOrder(x.merge(outs, bl.access, x.opts.Workers, false), bl.order), nil
}

// blockErr is the node error that aborts a block, set by any worker.
type blockErr struct {
	failed atomic.Bool // set at the first error: workers stop running
	mu     sync.Mutex
	err    error
	idx    int // the transaction of err
}

// set records the error of transaction i. A node error aborts the block
// whichever it is; keeping the lowest index seen only makes the report
// stable when several workers fail at once.
func (b *blockErr) set(i int, err error) {
	b.failed.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil || i < b.idx {
		b.idx, b.err = i, err
	}
}

// independentChunk is how many consecutive transactions a worker claims
// at once in a block without conflicts: large enough that a range's
// cursor is touched rarely, small enough that the workers finish together.
const independentChunk = 32

// blockRange is the part of a conflict-free block one worker starts on:
// transactions next (claimed in chunks) to end. Padded to a cache line so
// the workers' cursors do not share one.
type blockRange struct {
	next atomic.Int64
	end  int64
	_    [48]byte
}

// executeIndependent runs a block whose DAG has no edge. No transaction
// reads or writes a key another one writes (that would be an edge), so
// none can see another's writes: they run on an empty block layer. Each
// worker owns a contiguous range of the block and claims chunks from its
// front: its transactions' write buffers, values and txOutcomes are
// adjacent in memory and apart from the other worker's, where chunks
// taken in turn from one cursor put both cores on the same cache lines at
// every chunk boundary. A worker done with its range claims chunks of the
// others', so one slowed by other load does not hold the block up.
func (x *Executor) executeIndependent(ctx context.Context, bl *block, parent StateView, outs *txOutcomes) (*BlockResult, error) {
	n := len(outs.receipts)
	var fail blockErr
	workers := min(x.opts.Workers, (n+independentChunk-1)/independentChunk)
	ranges := make([]blockRange, workers)
	for p := range ranges {
		ranges[p].next.Store(int64(p * n / workers))
		ranges[p].end = int64((p + 1) * n / workers)
	}
	work := func(ctx context.Context, p int) {
		for k := range workers {
			r := &ranges[(p+k)%workers]
			for !fail.failed.Load() {
				lo := r.next.Add(independentChunk) - independentChunk
				if lo >= r.end {
					break
				}
				for i := int(lo); i < int(min(lo+independentChunk, r.end)); i++ {
					out, err := x.runTx(ctx, bl, emptyLayer{}, parent, i, false, nil)
					if err != nil {
						fail.set(i, err)
						return
					}
					outs.set(i, out)
				}
			}
		}
	}
	bl.sc.crew.goWorkers(ctx, workers, work)
	if fail.err != nil {
		return nil, fail.err
	}
	defer x.done(bl)
	return restoreOrder(x.merge(outs, bl.access, x.opts.Workers, true), bl.order), nil
}

// ExecuteSerial executes b one transaction after the other, with the same
// prefetch as ExecuteBlock and no DAG. It is the baseline ExecuteBlock is
// measured against and must equal.
func (x *Executor) ExecuteSerial(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx) (*BlockResult, error) {
	bl, err := x.prepare(ctx, parent, b, txs)
	if err != nil {
		return nil, err
	}
	defer bl.sc.crew.stop() // on the error paths; done stops it first otherwise
	outs := bl.sc.outcomes(len(txs), bl.own)
	sl := newSerialLayer(bl.access)
	// One worker, as each goroutine of ExecuteBlock is: the baseline keeps
	// its instances the same way.
	w := new(worker)
	defer w.flush()
	ctx = withWorker(ctx, w)
	for i := range txs {
		out, err := x.runTx(ctx, bl, sl, parent, i, false, nil)
		if err != nil {
			return nil, err
		}
		outs.set(i, out)
		sl.publish(i, out.writes)
	}
	defer x.done(bl)
	return restoreOrder(x.merge(outs, bl.access, 1, false), bl.order), nil
}

// runTx applies the replay checks, runs the transaction on the worker's
// overlay (reset for it) and returns its receipt and the writes it leaves.
func (x *Executor) runTx(ctx context.Context, bl *block, layer blockLayer, parent StateView, i int, simulate bool, rec *recorder) (txOut, error) {
	if err := ctx.Err(); err != nil {
		return txOut{}, err
	}
	tx := bl.txs[i]
	env := TxEnv{BlockEnv: bl.env, Index: i, Sender: bl.senders[i], Simulate: simulate}
	if bl.b != nil {
		env.TS, env.TxID = bl.b.Txs[i].TS, bl.b.Txs[i].ID
	} else {
		env.TS, env.TxID = bl.env.Time, tx.ID()
	}
	// An executor worker runs one transaction at a time and its overlay
	// is not used once runTx returns (the writes it leaves are a view of
	// wbuf): one per worker stays in its core's cache, where one per
	// transaction was three fresh cache lines each.
	var o *overlay
	if w := workerOf(ctx); w != nil {
		o = &w.ov
	} else {
		o = new(overlay)
	}
	*o = overlay{ctx: ctx, layer: layer, tab: bl.access, parent: parent, idx: i, rec: rec}
	acctSlot, acctEntry, acct := int32(-1), -1, ""
	var record []byte // where the new account record goes
	if bl.access != nil {
		o.es = bl.access.all[i]
		acctSlot, acctEntry, acct = o.es[0].slot, 0, o.es[0].k // see entries
		// Room for a write per entry, which a transaction without prefix
		// writes never exceeds (capped, so more writes reallocate).
		from, to := bl.access.start[i], bl.access.start[i+1]
		if bl.own != nil {
			o.own = bl.own[from:to]
		}
		o.writes = bl.wbuf[from:from:to]
		record = bl.nonces[nonceLen*i : nonceLen*i : nonceLen*(i+1)]
	} else {
		acct = accountKey(env.Sender)
	}
	out := txOut{receipt: types.Receipt{TxID: env.TxID, Status: types.StatusInvalid}}
	cur, err := o.getRaw(acctSlot, acct, acctEntry)
	if err != nil {
		return txOut{}, err
	}
	nonce, err := decodeNonce(cur)
	if err != nil {
		return txOut{}, err
	}
	switch {
	case tx.Body.ValidUntil < env.Time:
		out.receipt.Error = fmt.Sprintf("expired: valid until %d < block time %d", tx.Body.ValidUntil, env.Time)
		return out, nil
	case tx.Body.Nonce != nonce+1:
		out.receipt.Error = fmt.Sprintf("bad nonce %d: account nonce is %d, want %d", tx.Body.Nonce, nonce, nonce+1)
		return out, nil
	}
	res := x.run.Run(ctx, o, tx, env)
	if res.Fatal != nil {
		return txOut{}, fmt.Errorf("%w: tx %d: %w", ErrRunner, i, res.Fatal)
	}
	if res.Status == types.StatusInvalid {
		out.receipt.Error = res.Error
		return out, nil
	}
	if res.GasUsed > tx.Body.GasLimit {
		// A runner must stop at the limit; clamp so a runner bug cannot
		// charge more than the sender agreed to.
		res = Result{Status: types.StatusOutOfGas, GasUsed: tx.Body.GasLimit, Error: "out of gas"}
	}
	out.receipt = types.Receipt{TxID: out.receipt.TxID, Status: res.Status, GasUsed: res.GasUsed, Error: res.Error}
	if res.Status == types.StatusOK {
		out.receipt.Return = res.Return
		out.receipt.Events = res.Events
	} else {
		o.writes, o.index = o.writes[:0], nil
	}
	o.set(acctSlot, acct, acctEntry, binary.BigEndian.AppendUint64(record, tx.Body.Nonce))
	out.writes = o.writes
	return out, nil
}
