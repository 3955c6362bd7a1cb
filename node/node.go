package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node/mempool"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Errors of a node. A node that stops for one of them reports it through
// Err.
var (
	ErrConfig = errors.New("node: bad config")
	// ErrStateDiverged: this node's state root at a height differs from a
	// checkpoint certificate signed by a quorum. It is a determinism bug;
	// the node stops rather than serve or sign a wrong state.
	ErrStateDiverged = errors.New("node: state root differs from a certified checkpoint")
	// ErrCorrupt marks a persisted record that does not decode.
	ErrCorrupt = errors.New("node: corrupt record")
	// ErrFormat: the data directory holds node records of another format
	// (an older build's); they are not converted (make clean).
	ErrFormat = errors.New("node: unsupported record format")
	// ErrPersist: a consensus record could not be made durable; the node
	// stops because sending what follows it could equivocate after a crash.
	ErrPersist = errors.New("node: persist failed")
	// ErrStopped is returned by calls on a node that has stopped.
	ErrStopped = errors.New("node: stopped")
	// ErrBlockGap: consensus released a block that does not follow the
	// last one. The core releases blocks in height order, so this is a bug.
	ErrBlockGap = errors.New("node: released block does not follow the last one")
)

// Limits on queues that peers and clients can grow.
const (
	// MaxInbox bounds consensus inputs waiting for the driver; a message
	// arriving at a full inbox is dropped (consensus re-sends and fetches).
	MaxInbox = 4096
	// MaxOutbox bounds encoded messages waiting to be sent to one peer; a
	// full outbox drops the message (same reason).
	MaxOutbox = 1024
	// MaxFetches bounds fetch requests in flight; a fetch beyond it is
	// skipped, and the core asks again on its next resend tick.
	MaxFetches = 4
	// MaxFetchTxs bounds transaction ids in one fetch request.
	MaxFetchTxs = 1024
	// MaxFetchResponseBytes bounds one fetch response this node builds.
	MaxFetchResponseBytes = 8 << 20
	// MaxPendingCheckpoints bounds checkpoint certificates kept for heights
	// not yet executed.
	MaxPendingCheckpoints = 1024
)

// Config describes one validator node.
type Config struct {
	Committee *consensus.Committee // genesis; validator keys are ed25519 public keys
	Key       ed25519.PrivateKey   // this validator's key, also its libp2p identity
	Dir       string               // data directory (pebble database under Dir/db)
	// Runner executes transactions; nil = the node's own MuxRunner: the
	// Native modules plus wasm modules on one PooledEngine (Pool, nil =
	// exec.DefaultPoolConfig) with its compilation cache under Dir/wasm,
	// closed with the node.
	Runner    exec.Runner
	Native    map[types.Address]exec.NativeModule
	Pool      *exec.PoolConfig
	Workers   int             // executor workers; 0 = GOMAXPROCS
	Clock     Clock           // nil = SystemClock
	Logger    *slog.Logger    // nil = discard
	Bootstrap []peer.AddrInfo // peers to dial at start (and redial)
	Listen    []string        // libp2p listen multiaddrs; nil = 127.0.0.1, a free TCP port
	// KeepVersions is how many state versions stay readable (0 = all).
	KeepVersions uint64
	// RetainBlocks is how many heights of blocks, transaction records and
	// receipts are kept below the last compacted checkpoint (0 =
	// DefaultRetainBlocks).
	RetainBlocks uint64
	// SyncChunkLeaves is how many leaves a snapshot chunk served to a
	// syncing peer holds (0 = DefaultSyncChunkLeaves).
	SyncChunkLeaves int
	Mempool         mempool.Config // ChainID is taken from the committee
	// GossipBatchDelay is how long a client's transaction may wait for
	// others to share its gossip message (0 = DefaultGossipBatchDelay).
	GossipBatchDelay time.Duration

	// afterStateCommit, when set (by tests), runs between a block's state
	// commit and its root record: the fault point where the state is ahead
	// of what the node serves.
	afterStateCommit func(height uint64)
	// tamperSync, when set (by tests), rewrites this node's answers to
	// state-sync requests: a peer serving bad data.
	tamperSync func(p protocol.ID, resp []byte) []byte
	// afterChunk, when set (by tests), runs after each snapshot chunk this
	// node fetches while syncing, with the chunk's index (calls are
	// serialized); an error stops the sync (and the node).
	afterChunk func(index int) error
}

// Node is a running validator.
type Node struct {
	cfg   Config
	me    uint32
	log   *slog.Logger
	clock Clock
	store *state.Store
	d     ds.Batching
	pool  *mempool.Mempool
	host  *p2p.Host
	x     *exec.Executor
	wasm  *exec.PooledEngine // the engine of the node's own runner, or nil

	peers []peer.ID          // by validator index
	index map[peer.ID]uint32 // validator index by peer id
	txs   *p2p.Topic
	certs *p2p.Topic

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	inbox       chan input            // consensus inputs for the driver
	calls       chan func()           // closures the driver runs between steps (fetch answers)
	outbox      []chan []byte         // per validator; nil for this node
	gossip      chan []byte           // certificates to publish
	txOut       *txBatcher            // client transactions to gossip
	decoded     decodedCerts          // certificate messages decoded recently
	fetches     chan struct{}         // semaphore of MaxFetches
	blocks      chan struct{}         // signals queued released blocks
	logSeq      uint64                // next consensus log sequence (driver only)
	core        *consensus.Core       // owned by the driver goroutine
	round       atomic.Uint64         // last own round, for Status
	invalid     atomic.Uint64         // consensus messages the core rejected
	conflicts   atomic.Uint64         // certificates conflicting with one held (equivocation)
	anchors     atomic.Uint64         // anchors committed by the current core
	leaderWaits atomic.Uint64         // own headers the leader timeout let out (consensus.Stats)
	dropped     atomic.Uint64         // inputs dropped at a full inbox or outbox
	executedTxs atomic.Uint64         // transactions executed since start
	deferredTxs atomic.Uint64         // transactions deferred since start (nonce ahead)
	isolated    atomic.Bool           // tests: consensus messages and requests to peers are dropped
	bodyFetches atomic.Uint64         // blocks whose execution fetched bodies from peers
	lat         *latency              // local stage times, for metrics only
	exe         executorState         // released blocks waiting for the executor
	executed    *executedIndex        // ids that may have a transaction record (executed.go)
	cp          checkpointState       // checkpoint votes and certificates
	cmp         compactState          // ordering states awaiting compaction
	logRead     int                   // consensus log records read at open
	fresh       bool                  // empty disk: the driver syncs before it starts the core
	boot        bootState             // what open read for the core; the driver starts it
	running     atomic.Bool           // the core exists and the driver serves calls
	snap        snapServe             // the snapshot served to syncing peers
	sync        syncState             // answers refused while syncing
	fatal       atomic.Pointer[error] // why the node stopped
	// served is the last height whose block, transactions, receipts and
	// root record are all stored. The state commits before the root
	// record, so the state's latest version may be one ahead; every height
	// the node reports to clients comes from here, so a client never sees
	// a height whose block it cannot fetch yet.
	served atomic.Pointer[servedHeight]
	// heights wakes WaitHeight callers whenever served moves, whoever
	// moves it (a block, a catch-up or a state sync).
	heights heightSignal
}

// servedHeight is a height the node serves and the state root after it.
type servedHeight struct {
	height uint64
	root   types.Root
}

// setServed records that height h (root after it) is fully stored and
// wakes the height waiters.
func (n *Node) setServed(h uint64, root types.Root) {
	n.served.Store(&servedHeight{height: h, root: root})
	n.heights.wake()
}

// servedLatest returns the last fully stored height and its root (0 before
// the executor is initialised).
func (n *Node) servedLatest() (uint64, types.Root) {
	if s := n.served.Load(); s != nil {
		return s.height, s.root
	}
	return 0, types.Root{}
}

// input is a consensus input stamped with the clock when the driver takes it.
type input func(now int64) consensus.Event

// New opens the node's store, starts its libp2p host and its loops.
func New(cfg Config) (*Node, error) {
	if cfg.Committee == nil || cfg.Key == nil || cfg.Dir == "" {
		return nil, fmt.Errorf("%w: committee, key and dir are required", ErrConfig)
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetainBlocks == 0 {
		cfg.RetainBlocks = DefaultRetainBlocks
	}
	if cfg.SyncChunkLeaves <= 0 || cfg.SyncChunkLeaves > state.SnapshotChunkLeavesMax {
		cfg.SyncChunkLeaves = DefaultSyncChunkLeaves
	}
	cfg.Mempool.ChainID = cfg.Committee.ChainID
	cfg.Mempool.SyncedWrites = true // state.OpenPebble writes with pebble.Sync
	n := &Node{cfg: cfg, clock: cfg.Clock, index: map[peer.ID]uint32{},
		inbox: make(chan input, MaxInbox), calls: make(chan func()), gossip: make(chan []byte, MaxOutbox),
		fetches: make(chan struct{}, MaxFetches), blocks: make(chan struct{}, 1), lat: newLatency(),
		txOut: newTxBatcher(), executed: newExecutedIndex()}
	n.cmp.jobs = make(chan compactJob, 1)
	pub := cfg.Key.Public().(ed25519.PublicKey)
	found := false
	for i, v := range cfg.Committee.Validators {
		id, err := p2p.PeerID(ed25519.PublicKey(v.Key))
		if err != nil {
			return nil, fmt.Errorf("%w: validator %d: %w", ErrConfig, i, err)
		}
		n.peers = append(n.peers, id)
		n.index[id] = uint32(i)
		if string(v.Key) == string(pub) {
			n.me, found = uint32(i), true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: key is not a validator's", ErrConfig)
	}
	n.log = cfg.Logger.With("validator", n.me)
	var err error
	if n.store, err = state.OpenPebble(filepath.Join(cfg.Dir, "db"), state.Options{KeepVersions: cfg.KeepVersions}); err != nil {
		return nil, err
	}
	if err := n.open(); err != nil {
		n.cancel()
		if n.host != nil {
			_ = n.host.Close()
		}
		n.wg.Wait()
		n.store.Close()
		if n.wasm != nil {
			_ = n.wasm.Close(context.Background())
		}
		return nil, err
	}
	return n, nil
}

// newRunner builds the node's own runner when the config names none: one
// engine per node, so compiled code and idle instances are shared by every
// block and bounded once (PoolConfig); the on-disk compilation cache makes
// a restart skip recompiling deployed modules.
func (n *Node) newRunner(ctx context.Context) error {
	if n.cfg.Runner != nil {
		return nil
	}
	pc := exec.DefaultPoolConfig()
	if n.cfg.Pool != nil {
		pc = *n.cfg.Pool
	}
	if pc.VM.CacheDir == "" {
		pc.VM.CacheDir = filepath.Join(n.cfg.Dir, "wasm")
	}
	e, err := exec.NewPooledEngine(ctx, pc)
	if err != nil {
		return fmt.Errorf("%w: wasm engine: %w", ErrConfig, err)
	}
	n.wasm = e
	n.cfg.Runner = exec.NewRunner(n.cfg.Native, e)
	return nil
}

func (n *Node) open() error {
	n.d = n.store.Datastore()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := checkFormat(n.ctx, n.d); err != nil {
		return err
	}
	// A compacted log starts at the last persisted ordering state; the
	// state itself is at that height or beyond (compaction waits for the
	// block's execution).
	st, _, err := loadOrderingState(n.ctx, n.d, n.cfg.Committee)
	if err != nil {
		return err
	}
	recs, next, err := loadLog(n.ctx, n.d)
	if err != nil {
		return err
	}
	n.logSeq, n.logRead = next, len(recs)
	// An empty store and log: a new or wiped node, or a state sync that
	// stopped before its install (it persists the ordering state first;
	// a new importer of the same manifest resumes from the install's last
	// durable batch).
	latest, _ := n.store.Latest()
	n.fresh = len(recs) == 0 && latest == 0
	if st != nil && latest < st.Height && !n.fresh {
		return fmt.Errorf("%w: ordering state at height %d, state at %d", ErrCorrupt, st.Height, latest)
	}
	// The served height is the state's from the start, not only once the
	// core runs (after a catch-up or sync, startCore sets it again): the
	// API answers before that, and the pool check below reads receipts.
	if err := n.exe.init(n.ctx, n); err != nil {
		return err
	}
	if err := loadExecuted(n.ctx, n.d, n.executed, latest+1); err != nil {
		return err
	}
	if n.pool, err = mempool.Open(n.ctx, n.d, n.cfg.Mempool, n.clock.Now()); err != nil {
		return err
	}
	// A crash between a block's commit and the pool's removal of its
	// transactions leaves executed ones in the persisted pool.
	for _, e := range n.pool.Entries() {
		if _, err := n.dropExecuted(n.ctx, e.ID); err != nil {
			return err
		}
	}
	if err := n.newRunner(n.ctx); err != nil {
		return err
	}
	n.x = exec.New(n.cfg.Runner, exec.Options{Workers: n.cfg.Workers})
	n.cp.init(n.cfg.Committee)
	n.boot = bootState{state: st, recs: recs}
	if err := n.startHost(); err != nil {
		return err
	}
	n.outbox = make([]chan []byte, len(n.peers))
	for i := range n.peers {
		if uint32(i) != n.me {
			n.outbox[i] = make(chan []byte, MaxOutbox)
			n.goLoop(func() { n.sender(uint32(i)) })
		}
	}
	n.goLoop(n.publisher)
	n.goLoop(n.txPublisher)
	n.goLoop(n.drive)
	n.goLoop(n.execute)
	n.goLoop(n.compactor)
	n.goLoop(n.watchLag)
	n.goLoop(func() { _ = n.host.Bootstrap(n.ctx) })
	return nil
}

// bootState is what open read from disk for the consensus core.
type bootState struct {
	state *consensus.OrderingState
	recs  []consensus.Record
}

// startCore builds the consensus core from the ordering state st (nil =
// genesis) and the log records, and readies the executor at the state's
// latest height. It runs in open, or on the driver after a state sync.
func (n *Node) startCore(st *consensus.OrderingState, recs []consensus.Record) error {
	var err error
	if n.core, err = consensus.New(consensus.Config{Committee: n.cfg.Committee, Me: n.me,
		Signer: consensus.Ed25519Signer(n.cfg.Key), Records: recs, Restore: st}); err != nil {
		return err
	}
	var from uint64
	if st != nil {
		from = st.Height
	}
	n.cmp.init(n.cfg.Committee.Params.CompactEvery, from)
	if err := n.exe.init(n.ctx, n); err != nil {
		return err
	}
	n.running.Store(true)
	return nil
}

func (n *Node) goLoop(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// halt stops the node for err (the first reason wins).
func (n *Node) halt(err error) {
	if n.fatal.CompareAndSwap(nil, &err) {
		n.log.Error("node halted", "err", err)
	}
	n.cancel()
}

// Halted is closed when the node stops, by Close or by itself (then Err
// says why).
func (n *Node) Halted() <-chan struct{} { return n.ctx.Done() }

// Err returns why the node stopped by itself, or nil.
func (n *Node) Err() error {
	if p := n.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Close stops the node and waits for its goroutines. Later calls return
// the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		herr := n.host.Close()
		n.wg.Wait()
		var werr error
		if n.wasm != nil {
			werr = n.wasm.Close(context.Background())
		}
		n.closeErr = errors.Join(herr, werr, n.store.Close())
	})
	return n.closeErr
}

// AddrInfo returns the node's libp2p address, for other nodes' Bootstrap.
func (n *Node) AddrInfo() peer.AddrInfo { return n.host.AddrInfo() }

// Index returns this node's validator index.
func (n *Node) Index() uint32 { return n.me }

// SubmitTx validates raw, holds it and queues it for gossip (in a batch
// with the other transactions submitted within GossipBatchDelay). It
// returns the transaction id; a transaction already held is not an error,
// and is not gossiped again.
func (n *Node) SubmitTx(ctx context.Context, raw []byte) (types.Hash, error) {
	r := n.SubmitTxs(ctx, [][]byte{raw})[0]
	return r.ID, r.Err
}

// Submitted is the outcome of one transaction of SubmitTxs: its id, or
// the error SubmitTx would have returned for it.
type Submitted struct {
	ID  types.Hash
	Err error
}

// SubmitTxs is SubmitTx for many client transactions at once (the API's
// batch endpoint): their signatures are checked in one batch and their
// new entries share one group commit. out[i] is the outcome of raws[i],
// the one SubmitTx gives when called for each in order.
func (n *Node) SubmitTxs(ctx context.Context, raws [][]byte) []Submitted {
	out := make([]Submitted, len(raws))
	if err := n.Err(); err != nil {
		for i := range out {
			out[i].Err = fmt.Errorf("%w: %w", ErrStopped, err)
		}
		return out
	}
	arrived := n.lat.now() // local observation for the latency histograms only
	for i, a := range n.pool.AddAll(ctx, raws, n.clock.Now()) {
		err := a.Err
		if err == nil && a.New {
			if err = n.admit(ctx, a.Entry, arrived); err == nil {
				n.txOut.add(a.Entry.Raw)
			}
		}
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].ID = a.Entry.ID
	}
	return out
}

// admit reports a transaction new to the pool to consensus, unless it was
// executed already (gossip arriving late, a client resubmitting): then it
// leaves the pool, since the ordering layer never releases an id twice and
// it would only occupy the pool until it expired. The receipt is checked
// after the add because the executor commits before it removes a block's
// transactions from the pool: either this check sees the receipt, or the
// executor's removal comes after the add. arrived is when it reached the
// node, for the latency histograms.
func (n *Node) admit(ctx context.Context, e *mempool.Entry, arrived time.Duration) error {
	if executed, err := n.dropExecuted(ctx, e.ID); executed || err != nil {
		return err
	}
	id, seen := consensus.TxID(e.ID), e.FirstSeen
	n.lat.pooled(id, arrived)
	// Not bounded by the caller's ctx: a held transaction must reach
	// consensus even if the client that sent it has gone.
	n.push(func(int64) consensus.Event { return consensus.TxSeen{Now: seen, ID: id} }, true)
	return nil
}

// dropExecuted removes id from the pool if it was executed or deferred
// (its body is then served from the transaction record) and reports
// whether it was.
func (n *Node) dropExecuted(ctx context.Context, id types.Hash) (bool, error) {
	if !n.isExecuted(id) {
		return false, nil
	}
	return true, n.pool.Remove(ctx, []types.Hash{id})
}

// isExecuted reports whether id was executed or deferred at a served
// height. The executed index answers most ids, new ones, without a disk
// read.
func (n *Node) isExecuted(id types.Hash) bool {
	if !n.executed.mayHave(id) {
		return false
	}
	_, _, err := n.Receipt(id)
	return err == nil || errors.Is(err, ErrDeferred)
}

// push hands an input to the driver. A blocking push waits for room (a new
// transaction must reach consensus, and the mempool bounds how many there
// are); a non-blocking one drops the input when the inbox is full.
func (n *Node) push(in input, block bool) {
	in = n.lat.timed(in)
	if block {
		select {
		case n.inbox <- in:
		case <-n.ctx.Done():
		}
		return
	}
	select {
	case n.inbox <- in:
	default:
		n.dropped.Add(1)
	}
}

// Status is a summary of the node's progress.
type Status struct {
	Validator        uint32
	Round            uint64 // last own consensus round
	Height           uint64 // last executed block that Block, Receipt and State serve
	StateRoot        types.Root
	CheckpointHeight uint64 // highest checkpoint certificate held
	Mempool          int    // pending transactions
	Peers            int
	Dropped          uint64 // consensus messages dropped at full queues
	Invalid          uint64 // consensus messages rejected by the core
	Conflicts        uint64 // certificates for an (author, round) that has another: equivocation seen
	Err              string // why the node halted, if it did
}

// Status returns the node's progress.
func (n *Node) Status() Status {
	h, root := n.servedLatest()
	count, _ := n.pool.Len()
	s := Status{Validator: n.me, Round: n.round.Load(), Height: h, StateRoot: root,
		CheckpointHeight: n.cp.latestHeight(), Mempool: count, Peers: len(n.host.Peers()), Dropped: n.dropped.Load(),
		Invalid: n.invalid.Load(), Conflicts: n.conflicts.Load()}
	if err := n.Err(); err != nil {
		s.Err = err.Error()
	}
	return s
}
