package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// State sync (consensus.md, "Catch-up and restarts"): a node with an empty
// disk asks its peers for their latest compacted checkpoint — the
// checkpoint certificate and the ordering state it certifies — then for
// the state snapshot of that height: the manifest, then the chunks, which
// the install reads as it builds the tree (state.Importer.InstallFromChecked),
// each fetched from several peers in turn and checked against the
// manifest's chunk hash (once: the importer takes it as a state.CheckedChunk
// and does not hash it again) before the importer verifies it against the
// root;
// nothing is staged, and a crashed sync resumes from the install's last
// durable batch. It then starts its core from the ordering state; the core
// then fetches the certificates after it (DAG-sync; peers serve rounds
// below their gc round from their logs). A running node that fell behind
// its peers' blocks (syncReplace) still stages every chunk: Replace
// builds the difference to its own state from the staging area.
const (
	protoSyncState    protocol.ID = "/kairos/sync/state/1"
	protoSyncManifest protocol.ID = "/kairos/sync/manifest/1"
	protoSyncChunk    protocol.ID = "/kairos/sync/chunk/1"

	// DefaultSyncChunkLeaves is how many leaves a served snapshot chunk holds:
	// about 70 KB with 100-byte values. A chunk must fit one p2p response
	// (16 MiB), so a state with many values near the 1 MiB value limit
	// cannot be synced yet.
	DefaultSyncChunkLeaves = 512
	// maxSyncRequestBytes bounds a state-sync request before it is
	// decoded: two integers.
	maxSyncRequestBytes = 32
	// syncWorkers bounds the chunk fetches in flight.
	syncWorkers = 4
	// maxSyncRejects bounds the rejected answers a node remembers.
	maxSyncRejects = 64
)

// State-sync errors.
var (
	// ErrSyncAnswer: a peer's answer to a sync request does not match the
	// checkpoint certificate it should prove (another peer is asked).
	ErrSyncAnswer = errors.New("node: state sync answer does not match its checkpoint")
	// ErrSyncRequest: a sync request is malformed or over its size limit.
	ErrSyncRequest = errors.New("node: bad state sync request")
	// ErrSyncFailed: no peer completed a state sync.
	ErrSyncFailed = errors.New("node: state sync failed")
	// errNotRunning answers peers while this node syncs (its core does not
	// exist yet).
	errNotRunning = errors.New("node: syncing, no consensus core yet")
)

type syncStateResponse struct {
	_     struct{} `cbor:",toarray"`
	Cert  consensus.CheckpointCert
	State []byte // canonical consensus.OrderingState
}

type syncChunkRequest struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Index  uint32
}

// snapServe is the snapshot this node serves: one height, exported once
// and kept, so that every chunk request is a lookup.
type snapServe struct {
	mu       sync.Mutex
	height   uint64
	manifest []byte
	chunks   [][]byte
}

// syncState is what a syncing node remembers of its peers' answers.
type syncState struct {
	mu      sync.Mutex
	rejects []error // last maxSyncRejects rejected answers
	chunks  int     // chunks of the manifest being imported
	resumed int     // of them, staged or built by an earlier, interrupted sync
	fetched int     // of them, fetched by this one
	blocks  int     // blocks fetched and executed by catch-up
	moves   int     // syncs restarted at a newer checkpoint
	rejoins int     // catch-ups while running (see watchLag)
	// replaces counts state syncs while running (syncReplace): catch-ups
	// of a node behind the peers' retained blocks.
	replaces int

	// coreReplaced is set by a catch-up while running, on the driver, for
	// the driver: the new core needs its Start step (driver only).
	coreReplaced bool

	// hookMu serializes the calls of the afterChunk test hook, which the
	// install's chunk source makes from several goroutines.
	hookMu sync.Mutex
}

func (s *syncState) reject(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejects) == maxSyncRejects {
		s.rejects = s.rejects[1:]
	}
	s.rejects = append(s.rejects, err)
}

// Rejected returns the answers this node refused during state sync, oldest
// first (at most maxSyncRejects).
func (n *Node) Rejected() []error {
	n.sync.mu.Lock()
	defer n.sync.mu.Unlock()
	return append([]error(nil), n.sync.rejects...)
}

func (n *Node) handleSync() {
	n.host.HandleRequest(protoSyncState, n.serveSyncState)
	n.host.HandleRequest(protoSyncManifest, n.serveSyncManifest)
	n.host.HandleRequest(protoSyncChunk, n.serveSyncChunk)
	n.host.HandleRequest(protoSyncBlock, n.serveSyncBlock)
	n.host.HandleRequest(protoGenesis, n.serveGenesis)
}

func decodeSyncRequest(req []byte, v any) error {
	if len(req) > maxSyncRequestBytes {
		return fmt.Errorf("%w: %d bytes", ErrSyncRequest, len(req))
	}
	if err := types.Decode(req, v); err != nil {
		return fmt.Errorf("%w: %w", ErrSyncRequest, err)
	}
	return nil
}

// serveSyncState answers with the last compacted ordering state and its
// certificate: the log still holds the certificates after it.
func (n *Node) serveSyncState(ctx context.Context, _ peer.ID, req []byte) ([]byte, error) {
	if err := decodeSyncRequest(req, &struct{}{}); err != nil {
		return nil, err
	}
	// The record is the answer's encoding (encodeOrderingPair); the
	// asking peer checks the state against the certificate.
	rec, err := n.d.Get(ctx, keyOState)
	if errors.Is(err, ds.ErrNotFound) {
		return nil, fmt.Errorf("%w: no compacted checkpoint yet", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("node: read ordering state: %w", err)
	}
	return n.tamper(protoSyncState, rec), nil
}

// snapshot returns the manifest and chunks of height h, exporting them on
// first use. Only the height of the last compacted checkpoint is served.
func (n *Node) snapshot(ctx context.Context, h uint64) (*snapServe, error) {
	st, _, err := loadOrderingState(ctx, n.d, n.cfg.Committee)
	if err != nil {
		return nil, err
	}
	if st == nil || st.Height != h {
		return nil, fmt.Errorf("%w: snapshot of height %d", ErrNotFound, h)
	}
	s := &n.snap
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.height == h && s.manifest != nil {
		return s, nil
	}
	var chunks [][]byte
	m, err := n.store.ExportSnapshot(ctx, h, n.cfg.SyncChunkLeaves, func(_ int, c []byte) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	mb, err := state.EncodeManifest(m)
	if err != nil {
		return nil, err
	}
	s.height, s.manifest, s.chunks = h, mb, chunks
	return s, nil
}

func (n *Node) serveSyncManifest(ctx context.Context, _ peer.ID, req []byte) ([]byte, error) {
	s, _, err := n.requestedSnapshot(ctx, req)
	if err != nil {
		return nil, err
	}
	return n.tamper(protoSyncManifest, s.manifest), nil
}

func (n *Node) serveSyncChunk(ctx context.Context, _ peer.ID, req []byte) ([]byte, error) {
	s, r, err := n.requestedSnapshot(ctx, req)
	if err != nil {
		return nil, err
	}
	if int(r.Index) >= len(s.chunks) {
		return nil, fmt.Errorf("%w: chunk %d of %d", ErrNotFound, r.Index, len(s.chunks))
	}
	return n.tamper(protoSyncChunk, s.chunks[r.Index]), nil
}

// requestedSnapshot decodes a manifest or chunk request and returns the
// snapshot of its height.
func (n *Node) requestedSnapshot(ctx context.Context, req []byte) (*snapServe, syncChunkRequest, error) {
	var r syncChunkRequest
	if err := decodeSyncRequest(req, &r); err != nil {
		return nil, r, err
	}
	s, err := n.snapshot(ctx, r.Height)
	return s, r, err
}

// startConsensus runs on the driver before its first step. With an empty disk it
// syncs the state of the peers' latest compacted checkpoint (or finds the
// network at genesis); with a disk behind that checkpoint it catches up by
// blocks; then it builds the core.
func (n *Node) startConsensus() error {
	b := n.boot
	n.boot = bootState{}
	var restore *consensus.OrderingState
	var err error
	if n.fresh {
		restore, err = n.stateSync()
	} else if restore, err = n.catchUp(); restore == nil && err == nil {
		restore = b.state
	}
	if err != nil {
		return err
	}
	return n.startCore(restore, b.recs)
}

// tamper lets tests make this node a peer that serves bad answers.
func (n *Node) tamper(p protocol.ID, b []byte) []byte {
	if n.cfg.tamperSync == nil {
		return b
	}
	return n.cfg.tamperSync(p, b)
}

// syncCandidate is a verified answer to protoSyncState.
type syncCandidate struct {
	cert  *consensus.CheckpointCert
	raw   []byte
	state *consensus.OrderingState
}

// findCheckpoint asks every peer for its last compacted checkpoint and
// returns the highest verified one, or nil when answers of weight > F say
// there is none yet (a network at genesis). It asks again while fewer
// answered, up to fetchRetries times.
func (n *Node) findCheckpoint(comm *consensus.Committee) *syncCandidate {
	var best *syncCandidate
	answered := map[uint32]bool{}
	var w uint64
	for attempt := 0; attempt < fetchRetries && n.ctx.Err() == nil; attempt++ {
		for v := range n.peers {
			if uint32(v) == n.me || answered[uint32(v)] {
				continue
			}
			var r syncStateResponse
			err := n.request(uint32(v), protoSyncState, &struct{}{}, &r)
			switch {
			case errors.Is(err, p2p.ErrRemote):
				// "none yet", or a store error: an answer either way.
			case err != nil:
				continue // not reachable (yet)
			default:
				c, err := checkSyncState(comm, uint32(v), &r)
				if err != nil {
					n.sync.reject(err)
					n.log.Warn("state sync: rejected checkpoint", "peer", v, "err", err)
				} else if best == nil || c.cert.Height > best.cert.Height {
					best = c
				}
			}
			answered[uint32(v)] = true
			w += comm.Validators[v].Weight
		}
		if w > comm.F() {
			break
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(fetchRetryDelay):
		}
	}
	return best
}

// checkSyncState verifies a peer's checkpoint: a quorum certificate, and
// an ordering state whose hash it certifies.
func checkSyncState(comm *consensus.Committee, from uint32, r *syncStateResponse) (*syncCandidate, error) {
	if err := comm.CheckCheckpointCert(&r.Cert); err != nil {
		return nil, fmt.Errorf("%w: peer %d: certificate: %w", ErrSyncAnswer, from, err)
	}
	if sha256.Sum256(r.State) != r.Cert.OrderingStateHash {
		return nil, fmt.Errorf("%w: peer %d: ordering state of height %d does not hash to the certified one", ErrSyncAnswer, from, r.Cert.Height)
	}
	st, err := comm.DecodeOrderingState(r.State)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %d: %w", ErrSyncAnswer, from, err)
	}
	if st.Height != r.Cert.Height {
		return nil, fmt.Errorf("%w: peer %d: ordering state of height %d under a certificate of %d", ErrSyncAnswer, from, st.Height, r.Cert.Height)
	}
	return &syncCandidate{cert: &r.Cert, raw: r.State, state: st}, nil
}

// stateSync installs the state of the highest checkpoint peers offer and
// returns its ordering state, or nil when the network has none yet. A
// peer whose manifest or chunk fails verification is skipped for it and
// another asked. Peers serve their latest compacted checkpoint only, so a
// sync slower than their compactions moves on to the newer one.
func (n *Node) stateSync() (*consensus.OrderingState, error) {
	comm := *n.cfg.Committee // own copy: verification counts are not shared
	c := n.findCheckpoint(&comm)
	if c == nil {
		return nil, nil
	}
	// The next importer discards what the install of an abandoned
	// checkpoint wrote.
	c, err := n.followMoves(c, func(c *syncCandidate) (*syncCandidate, error) { return n.installSnapshot(&comm, c) })
	if err != nil {
		return nil, err
	}
	// Served to other syncing peers until this node's first compaction.
	if err := n.store.Pin(n.ctx, c.cert.Height); err != nil {
		return nil, err
	}
	return c.state, nil
}

// syncBatchBytes, when > 0, is the install batch size of a state sync
// (state.Importer.SetBatchBytes): tests make a small state's install span
// many durable batches, so that an interrupted sync resumes mid-way.
var syncBatchBytes int

// installSnapshot fetches the manifest of c's height and installs the
// snapshot into the empty store, reading its chunks from the peers as the
// install needs them. When it cannot finish because the peers serve a
// newer checkpoint only, it returns that one with the error.
func (n *Node) installSnapshot(comm *consensus.Committee, c *syncCandidate) (*syncCandidate, error) {
	cc := c.cert
	n.log.Info("state sync", "height", cc.Height, "root", cc.StateRoot)
	newer := func(err error) (*syncCandidate, error) { return n.newerCheckpoint(comm, cc.Height), err }
	m, err := n.syncManifest(cc)
	if err != nil {
		return newer(err)
	}
	im, err := state.NewImporter(n.ctx, n.d, m)
	if err != nil {
		return nil, err
	}
	if syncBatchBytes > 0 {
		im.SetBatchBytes(syncBatchBytes)
	}
	n.sync.mu.Lock()
	n.sync.chunks, n.sync.resumed, n.sync.fetched = len(m.Chunks), 0, 0
	n.sync.mu.Unlock()
	// Written before the install: a restart that finds them with an
	// empty store syncs again (open treats it as fresh), and the
	// importer of the same manifest goes on from its last durable batch.
	if err := n.persistSynced(c); err != nil {
		return nil, err
	}
	err = im.InstallFromChecked(n.ctx, n.store, n.chunkSource(m))
	if errors.Is(err, ErrSyncFailed) {
		return newer(err) // no peer served a chunk: they may have moved on
	}
	if err != nil {
		return nil, err
	}
	n.sync.mu.Lock()
	n.sync.resumed = im.Skipped()
	n.sync.mu.Unlock()
	return nil, nil
}

// syncPeers returns the validators other than this node.
func (n *Node) syncPeers() []uint32 {
	others := make([]uint32, 0, len(n.peers)-1)
	for v := range n.peers {
		if uint32(v) != n.me {
			others = append(others, uint32(v))
		}
	}
	return others
}

// chunkSource reads chunk i of m for the install: from peer i mod (peers)
// first, so that several peers share the work (the install asks for a few
// chunks at once), then from the others in turn, pausing fetchRetryDelay
// after each round in which none served it, fetchRetries rounds at most. A
// chunk whose bytes do not hash to the manifest's entry is refused and
// asked of the next peer, so one bad peer does not stop the install; the
// importer then verifies it against the root without hashing it again
// (state.CheckedChunk).
func (n *Node) chunkSource(m *state.Manifest) state.CheckedChunkSource {
	others := n.syncPeers()
	return func(ctx context.Context, i int) (state.CheckedChunk, error) {
		req := types.MustEncode(&syncChunkRequest{Height: m.Height, Index: uint32(i)})
		var last error
		for try := 0; try < fetchRetries*len(others); try++ {
			if try > 0 && try%len(others) == 0 {
				select {
				case <-ctx.Done():
					return state.CheckedChunk{}, ctx.Err()
				case <-time.After(fetchRetryDelay):
				}
			}
			v := others[(i+try)%len(others)]
			b, err := n.host.Request(ctx, n.peers[v], protoSyncChunk, req)
			if err != nil {
				last = err
				continue
			}
			c, err := m.CheckChunk(i, b)
			if err != nil {
				last = fmt.Errorf("peer %d: %w", v, err)
				n.sync.reject(last)
				n.log.Warn("state sync: rejected chunk", "peer", v, "chunk", i, "err", err)
				continue
			}
			n.sync.mu.Lock()
			n.sync.fetched++
			n.sync.mu.Unlock()
			if n.cfg.afterChunk != nil {
				n.sync.hookMu.Lock()
				err := n.cfg.afterChunk(i)
				n.sync.hookMu.Unlock()
				if err != nil {
					return state.CheckedChunk{}, err
				}
			}
			return c, nil
		}
		return state.CheckedChunk{}, fmt.Errorf("%w: chunk %d: %w", ErrSyncFailed, i, last)
	}
}

// movedOn logs and counts a sync restarted at a newer checkpoint.
func (n *Node) movedOn(from, to *syncCandidate) {
	n.log.Info("state sync: peers moved on", "from", from.cert.Height, "to", to.cert.Height)
	n.sync.mu.Lock()
	n.sync.moves++
	n.sync.mu.Unlock()
}

// persistSynced writes, in one batch, what a node synced to c's height
// holds of it: c's ordering state and certificate (where a restart
// continues from), the certificate as the latest checkpoint, the root
// record of the height (served; its block is not held) and the pruned
// mark at the height (nothing below it is held).
func (n *Node) persistSynced(c *syncCandidate) error {
	cc := c.cert
	b, err := n.d.Batch(n.ctx)
	if err != nil {
		return err
	}
	cb := types.MustEncode(cc)
	for k, v := range map[ds.Key][]byte{keyOState: encodeOrderingPair(cc, c.raw), heightKey(nsCP, cc.Height): cb,
		keyCPLatest: cb, heightKey(nsRoot, cc.Height): cc.StateRoot[:], keyPrunedTo: types.MustEncode(cc.Height)} {
		if err := b.Put(n.ctx, k, v); err != nil {
			return err
		}
	}
	return b.Commit(n.ctx)
}

// dropStaleNonces removes from the pool the transactions whose nonce is at
// or below their sender's account nonce in the latest state: after a state
// sync over a running node they are the ones executed in the blocks it
// skipped (it has no receipts to tell), and none of them can execute again
// (a transaction needs the account's nonce + 1).
func (n *Node) dropStaleNonces() error {
	var stale []types.Hash
	for _, e := range n.pool.Entries() {
		rec, err := n.store.Get(n.ctx, exec.AccountKey(e.Tx.SenderAddress()))
		if err != nil {
			return err
		}
		if rec == nil {
			continue
		}
		nonce, err := exec.Nonce(rec)
		if err != nil {
			return err
		}
		if e.Tx.Body.Nonce <= nonce {
			stale = append(stale, e.ID)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	n.log.Info("state sync: dropped transactions executed in skipped blocks", "count", len(stale))
	return n.pool.Remove(n.ctx, stale)
}

// fetchSnapshot fetches and stages the snapshot of c's height, or of a
// newer checkpoint when the peers moved on meanwhile, and returns the
// importer and the checkpoint it holds (for syncReplace).
func (n *Node) fetchSnapshot(comm *consensus.Committee, c *syncCandidate) (*state.Importer, *syncCandidate, error) {
	// The staging area of an abandoned checkpoint is cleared by the next
	// importer.
	var im *state.Importer
	c, err := n.followMoves(c, func(c *syncCandidate) (next *syncCandidate, err error) {
		im, next, err = n.syncSnapshot(comm, c)
		return next, err
	})
	if err != nil {
		return nil, nil, err
	}
	return im, c, nil
}

// followMoves runs step on c and, each time it fails because the peers
// compacted past c and serve only a newer checkpoint (step returns that
// one), starts over there, up to fetchRetries times. It returns the
// checkpoint step succeeded on.
func (n *Node) followMoves(c *syncCandidate, step func(*syncCandidate) (*syncCandidate, error)) (*syncCandidate, error) {
	for moves := 0; ; moves++ {
		next, err := step(c)
		if err == nil {
			return c, nil
		}
		if next == nil || moves == fetchRetries {
			return nil, err
		}
		n.movedOn(c, next)
		c = next
	}
}

// newerCheckpoint returns the checkpoint the peers offer now if it is above
// height h, else nil.
func (n *Node) newerCheckpoint(comm *consensus.Committee, h uint64) *syncCandidate {
	if next := n.findCheckpoint(comm); next != nil && next.cert.Height > h {
		return next
	}
	return nil
}

// syncReplace runs on the driver with the executor held, for a running
// node behind the blocks its peers keep: it fetches the snapshot of their
// compacted checkpoint c (or a newer one), replaces its state with it
// (state.Importer.Replace, one atomic switch), drops its own blocks (the
// ones in between it never gets) and makes c the checkpoint a restart
// continues from, and returns c's ordering state for the new core.
//
// The state switches first: a crash before the node's records leaves a
// state above its ordering state, which a restart accepts (it replays the
// log and catches up again); the other order would leave an ordering
// state above the state, which open refuses as ErrCorrupt.
func (n *Node) syncReplace(comm *consensus.Committee, c *syncCandidate) (*consensus.OrderingState, error) {
	im, c, err := n.fetchSnapshot(comm, c)
	if err != nil {
		return nil, err
	}
	n.cmp.run.Lock()
	defer n.cmp.run.Unlock()
	prev, _, err := loadOrderingState(n.ctx, n.d, n.cfg.Committee)
	if err != nil {
		return nil, err
	}
	old, _ := n.store.Latest()
	cc := c.cert
	n.log.Info("state sync while running", "from", old, "to", cc.Height)
	if _, err := im.Replace(n.ctx, n.store); err != nil {
		return nil, err
	}
	if err := n.pruneBlocks(n.ctx, old); err != nil {
		return nil, err
	}
	if err := n.persistSynced(c); err != nil {
		return nil, err
	}
	if err := n.dropStaleNonces(); err != nil {
		return nil, err
	}
	// The new checkpoint is the one served to syncing peers; the old
	// compaction's pin is below the state's minimum now.
	if prev != nil {
		if err := n.store.Unpin(n.ctx, prev.Height); err != nil {
			return nil, err
		}
	}
	if err := n.store.Pin(n.ctx, cc.Height); err != nil {
		return nil, err
	}
	n.sync.mu.Lock()
	n.sync.replaces++
	n.sync.mu.Unlock()
	return c.state, nil
}

// syncSnapshot fetches and stages the snapshot of c's height. When it
// cannot finish because the peers serve a newer checkpoint only, it
// returns that one with the error.
func (n *Node) syncSnapshot(comm *consensus.Committee, c *syncCandidate) (*state.Importer, *syncCandidate, error) {
	cc := c.cert
	n.log.Info("state sync", "height", cc.Height, "root", cc.StateRoot)
	m, err := n.syncManifest(cc)
	if err != nil {
		return nil, n.newerCheckpoint(comm, cc.Height), err
	}
	im, err := state.NewImporter(n.ctx, n.d, m)
	if err != nil {
		return nil, nil, err
	}
	n.sync.mu.Lock()
	n.sync.chunks, n.sync.resumed, n.sync.fetched = len(m.Chunks), len(m.Chunks)-len(im.Missing()), 0
	n.sync.mu.Unlock()
	next, err := n.syncChunks(comm, im, m)
	return im, next, err
}

// syncManifest fetches the manifest of cc's height from the peers in turn
// and returns the first that matches cc's root.
func (n *Node) syncManifest(cc *consensus.CheckpointCert) (*state.Manifest, error) {
	var m *state.Manifest
	n.tryPeers(func(v uint32) bool {
		b, err := n.host.Request(n.ctx, n.peers[v], protoSyncManifest, types.MustEncode(&syncChunkRequest{Height: cc.Height}))
		if err != nil {
			return false
		}
		got, err := state.DecodeManifest(b)
		if err == nil && (got.Height != cc.Height || got.Root != cc.StateRoot) {
			err = fmt.Errorf("%w: manifest of height %d root %s, certified %d %s", ErrSyncAnswer, got.Height, got.Root, cc.Height, cc.StateRoot)
		}
		if err != nil {
			n.sync.reject(fmt.Errorf("peer %d: manifest: %w", v, err))
			return false
		}
		m = got
		return true
	})
	if m == nil {
		return nil, fmt.Errorf("%w: no peer served the manifest of height %d", ErrSyncFailed, cc.Height)
	}
	return m, nil
}

// syncChunks fetches the missing chunks, at most syncWorkers at a time,
// chunk i first from peer i mod (peers) so that several peers share the
// work; a chunk a peer fails to serve or that fails verification is asked
// of the next peer. The importer checks and stages each chunk serially.
func (n *Node) syncChunks(comm *consensus.Committee, im *state.Importer, m *state.Manifest) (*syncCandidate, error) {
	type result struct {
		index int
		peer  uint32
		data  []byte
	}
	others := n.syncPeers()
	tries := map[int]int{}
	for rounds := 0; !im.Done(); rounds++ {
		if n.ctx.Err() != nil {
			return nil, n.ctx.Err()
		}
		if rounds > fetchRetries*len(others) {
			return nil, fmt.Errorf("%w: %d chunks missing", ErrSyncFailed, len(im.Missing()))
		}
		missing := im.Missing()
		peerOf := make([]uint32, len(missing))
		for k, i := range missing {
			peerOf[k] = others[(i+tries[i])%len(others)]
			tries[i]++
		}
		// Chunks are added as they arrive: at most syncWorkers fetched
		// chunks wait in memory, however many the manifest lists.
		results := make(chan result, syncWorkers)
		go func() {
			sem := make(chan struct{}, syncWorkers)
			var wg sync.WaitGroup
			for k, i := range missing {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					v := peerOf[k]
					b, err := n.host.Request(n.ctx, n.peers[v], protoSyncChunk, types.MustEncode(&syncChunkRequest{Height: m.Height, Index: uint32(i)}))
					if err == nil {
						results <- result{i, v, b}
					}
				}()
			}
			wg.Wait()
			close(results)
		}()
		var stop error
		for r := range results {
			staged, err := im.Add(n.ctx, r.data)
			if err != nil {
				n.sync.reject(fmt.Errorf("peer %d: chunk %d: %w", r.peer, r.index, err))
				n.log.Warn("state sync: rejected chunk", "peer", r.peer, "chunk", r.index, "err", err)
				continue
			}
			if staged && stop == nil {
				n.sync.mu.Lock()
				n.sync.fetched++
				n.sync.mu.Unlock()
				if n.cfg.afterChunk != nil {
					stop = n.cfg.afterChunk(r.index)
				}
			}
		}
		if stop != nil {
			return nil, stop
		}
		if !im.Done() && len(im.Missing()) == len(missing) {
			// No progress: the peers may serve a newer checkpoint only.
			if c := n.newerCheckpoint(comm, m.Height); c != nil {
				return c, fmt.Errorf("%w: peers moved from height %d to %d", ErrSyncFailed, m.Height, c.cert.Height)
			}
			select {
			case <-n.ctx.Done():
			case <-time.After(fetchRetryDelay):
			}
		}
	}
	return nil, nil
}
