package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/types"
)

// Protocols and topics of the node (consensus.md, "Transport"): headers,
// votes, certificates and checkpoint votes go over direct streams to every
// validator; certificates also over gossip; transactions over gossip;
// whatever is missing is fetched by request.
const (
	protoMsg      protocol.ID = "/kairos/consensus/1"
	protoCerts    protocol.ID = "/kairos/fetch/certs/1"
	protoTxs      protocol.ID = "/kairos/fetch/txs/1"
	protoOwnRound protocol.ID = "/kairos/fetch/ownround/1"
	topicTxs                  = "kairos/txs/2" // txBatch messages
	topicCerts                = "kairos/certs/1"

	// sendTimeout bounds one direct send; a stuck peer only delays its own
	// outbox.
	sendTimeout = 5 * time.Second
	// fetchRetries and fetchRetryDelay bound how long one fetch tries the
	// peers in turn (a node starting before its peers are connected).
	fetchRetries    = 20
	fetchRetryDelay = 100 * time.Millisecond
)

type certRequest struct {
	_         struct{} `cbor:",toarray"`
	Digests   []consensus.Digest
	FromRound uint64
}

type certResponse struct {
	_     struct{} `cbor:",toarray"`
	Certs []*consensus.Certificate
}

type txRequest struct {
	_   struct{} `cbor:",toarray"`
	IDs []types.Hash
}

type txResponse struct {
	_   struct{} `cbor:",toarray"`
	Raw [][]byte
}

type ownRoundResponse struct {
	_     struct{} `cbor:",toarray"`
	Round uint64
}

func (n *Node) startHost() error {
	others := make([]peer.ID, 0, len(n.peers))
	for i, id := range n.peers {
		if uint32(i) != n.me {
			others = append(others, id)
		}
	}
	listen := n.cfg.Listen
	if len(listen) == 0 {
		listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	cfg := p2p.NewConfig(n.cfg.Key).WithListenAddrs(listen...).
		WithAllowedPeers(others...).WithBootstrap(n.cfg.Bootstrap...).WithLogger(n.log)
	h, err := p2p.New(cfg)
	if err != nil {
		return err
	}
	n.host = h
	h.HandleDirect(protoMsg, n.onDirect)
	h.HandleRequest(protoCerts, n.serveCerts)
	h.HandleRequest(protoTxs, n.serveTxs)
	h.HandleRequest(protoOwnRound, n.serveOwnRound)
	n.handleSync()
	if n.txs, err = h.Join(topicTxs, p2p.DefaultMaxGossipBytes, n.validateTxs); err != nil {
		return err
	}
	if n.certs, err = h.Join(topicCerts, consensus.MaxMessageBytes, nil); err != nil {
		return err
	}
	for _, t := range []*p2p.Topic{n.txs, n.certs} {
		sub, err := t.Subscribe()
		if err != nil {
			return err
		}
		certs := t == n.certs
		n.goLoop(func() { n.drain(sub, certs) })
	}
	return nil
}

// drain consumes a subscription. Transactions were taken by the validator;
// certificates go to consensus.
func (n *Node) drain(sub *p2p.Subscription, certs bool) {
	defer sub.Cancel()
	for {
		m, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		if certs && !m.Local {
			n.onMessage(m.From, m.Data)
		}
	}
}

func (n *Node) onDirect(from peer.ID, data []byte) { n.onMessage(from, data) }

// onMessage decodes a consensus message from a validator and hands it to
// the driver, or a checkpoint vote to the checkpoint collector.
func (n *Node) onMessage(from peer.ID, data []byte) {
	v, ok := n.index[from]
	if !ok || n.isolated.Load() {
		return
	}
	key := sha256.Sum256(data)
	m, ok := n.decoded.get(key)
	if !ok {
		var err error
		if m, err = consensus.DecodeMessage(data); err != nil {
			n.log.Debug("bad message", "from", v, "err", err)
			return
		}
		if m.Cert != nil {
			n.decoded.put(key, m)
		}
	}
	if m.Checkpoint != nil {
		n.onCheckpointVote(m.Checkpoint)
		return
	}
	n.push(func(now int64) consensus.Event { return consensus.MsgIn{Now: now, From: v, Msg: m} }, false)
}

// send queues data for validator to (dropped when its outbox is full).
func (n *Node) send(to uint32, data []byte) {
	if int(to) >= len(n.outbox) || n.outbox[to] == nil || n.isolated.Load() {
		return
	}
	select {
	case n.outbox[to] <- data:
	default:
		n.dropped.Add(1)
	}
}

func (n *Node) broadcast(data []byte) {
	for i := range n.outbox {
		n.send(uint32(i), data)
	}
}

// sender writes validator to's outbox to its direct stream, in order.
func (n *Node) sender(to uint32) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case data := <-n.outbox[to]:
			ctx, cancel := context.WithTimeout(n.ctx, sendTimeout)
			if err := n.host.Send(ctx, n.peers[to], protoMsg, data); err != nil {
				n.log.Debug("send", "to", to, "err", err)
			}
			cancel()
		}
	}
}

func (n *Node) publisher() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case data := <-n.gossip:
			if n.isolated.Load() {
				continue
			}
			if err := n.certs.Publish(n.ctx, data); err != nil {
				n.log.Debug("publish certificate", "err", err)
			}
		}
	}
}

// call runs f on the driver goroutine (which owns the core) and waits.
// Once the driver took f (calls is unbuffered, and the driver runs what it
// takes at once) call waits for f to end whatever ctx does: callers read
// what f wrote, so returning at a cancellation while f still ran was a
// data race (TestCallWaitsForTakenFunction). Calls are short reads of the
// core, except a catch-up while running, which ends with the node's ctx.
func (n *Node) call(ctx context.Context, f func()) error {
	if !n.running.Load() {
		return errNotRunning // syncing: answer at once rather than at the timeout
	}
	done := make(chan struct{})
	select {
	case n.calls <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return ErrStopped
	}
	<-done
	return nil
}

func (n *Node) serveCerts(ctx context.Context, _ peer.ID, req []byte) ([]byte, error) {
	var r certRequest
	if err := types.Decode(req, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", consensus.ErrMalformed, err)
	}
	if len(r.Digests) > consensus.MaxFetchCerts {
		return nil, fmt.Errorf("%w: %d digests", consensus.ErrTooLarge, len(r.Digests))
	}
	var out []byte
	// Rounds the core dropped come from the log (compaction keeps them
	// for a while): a peer restored from an ordering state needs them.
	var old []*consensus.Certificate
	if r.FromRound > 0 {
		var gc uint64
		if err := n.call(ctx, func() { gc = n.core.GCRound() }); err != nil {
			return nil, err
		}
		if r.FromRound < gc {
			var err error
			if old, err = logCerts(ctx, n.d, n.cfg.Committee, r.FromRound, gc, consensus.MaxFetchCerts); err != nil {
				return nil, err
			}
		}
	}
	err := n.call(ctx, func() {
		// Encoded on the driver goroutine: the certificates are the core's.
		certs := append(old, n.core.Certificates(r.Digests, r.FromRound)...)
		certs = certs[:min(len(certs), consensus.MaxFetchCerts)]
		for {
			out = types.MustEncode(&certResponse{Certs: certs})
			if len(out) <= MaxFetchResponseBytes || len(certs) <= 1 {
				return
			}
			certs = certs[:len(certs)/2]
		}
	})
	return out, err
}

func (n *Node) serveTxs(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
	var r txRequest
	if err := types.Decode(req, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", consensus.ErrMalformed, err)
	}
	if len(r.IDs) > MaxFetchTxs {
		return nil, fmt.Errorf("%w: %d ids", consensus.ErrTooLarge, len(r.IDs))
	}
	var resp txResponse
	size := 0
	for _, id := range r.IDs {
		raw := n.txBody(id)
		if raw == nil || size+len(raw) > MaxFetchResponseBytes {
			continue
		}
		size += len(raw)
		resp.Raw = append(resp.Raw, raw)
	}
	return types.MustEncode(&resp), nil
}

func (n *Node) serveOwnRound(ctx context.Context, from peer.ID, _ []byte) ([]byte, error) {
	v, ok := n.index[from]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a validator", consensus.ErrUnknown, from)
	}
	var r uint64
	err := n.call(ctx, func() { r = n.core.SignedRound(v) })
	return types.MustEncode(&ownRoundResponse{Round: r}), err
}

// fetch performs a Fetch action in the background, unless MaxFetches are
// in flight (the core asks again on its resend tick).
func (n *Node) fetch(f consensus.Fetch) {
	select {
	case n.fetches <- struct{}{}:
	default:
		return
	}
	n.goLoop(func() {
		defer func() { <-n.fetches }()
		res := consensus.FetchResult{}
		if f.OwnRound {
			res.OwnRound, res.HasOwnRound = n.fetchOwnRound()
		}
		if len(f.Digests) > 0 || f.FromRound > 0 {
			res.Certs = n.fetchCerts(f.Digests, f.FromRound)
		}
		if len(f.Txs) > 0 {
			// Each peer's answer goes to consensus at once: a vote waiting
			// for these payloads should not also wait for the slowest.
			n.fetchTxs(f.Txs, func(got, executed []consensus.TxID) {
				n.push(func(now int64) consensus.Event {
					return consensus.FetchResult{Now: now, Txs: got, Executed: executed}
				}, true)
			})
		}
		if res.HasOwnRound || len(res.Certs) > 0 {
			n.push(func(now int64) consensus.Event { res.Now = now; return res }, true)
		}
	})
}

// tryPeers calls f on the other validators in turn, starting after this
// node, until f reports done or the retries run out.
func (n *Node) tryPeers(f func(v uint32) (done bool)) {
	for attempt := 0; attempt < fetchRetries; attempt++ {
		for k := 1; k < len(n.peers); k++ {
			if f((n.me + uint32(k) + uint32(attempt)) % uint32(len(n.peers))) {
				return
			}
			if n.ctx.Err() != nil {
				return
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(fetchRetryDelay):
		}
	}
}

func (n *Node) request(v uint32, proto protocol.ID, req any, resp any) error {
	if v == n.me {
		return fmt.Errorf("%w: request to self", ErrConfig)
	}
	if n.isolated.Load() {
		return errIsolated
	}
	b, err := n.host.Request(n.ctx, n.peers[v], proto, types.MustEncode(req))
	if err != nil {
		return err
	}
	return types.Decode(b, resp)
}

func (n *Node) fetchCerts(digests []consensus.Digest, from uint64) []*consensus.Certificate {
	var out []*consensus.Certificate
	n.tryPeers(func(v uint32) bool {
		var r certResponse
		if err := n.request(v, protoCerts, &certRequest{Digests: digests, FromRound: from}, &r); err != nil {
			return false
		}
		out = r.Certs
		return true // an answer, even an empty one: the peer may simply be behind
	})
	return out
}

// fetchTxs asks peers for payloads, adds the valid ones not executed yet
// to the mempool and hands each answer's new ids to deliver. Payloads
// executed here already are delivered at once, without a fetch: their
// bodies are in the transaction records.
//
// Payloads this node executed go back as executed: the core holds them for
// its votes but never acks them, so a transaction acked again after the
// orderer forgot its release cannot be released a second time.
func (n *Node) fetchTxs(ids []consensus.TxID, deliver func(got, executed []consensus.TxID)) {
	if len(ids) > MaxFetchTxs {
		ids = ids[:MaxFetchTxs]
	}
	// A replayed core, or one whose node fell behind, asks for payloads
	// this node executed: fetching them cost a signature check, a pool
	// write and its delete each (a sixth of the CPU of a run whose
	// validators fell seconds behind).
	var executed, rest []consensus.TxID
	for _, id := range ids {
		if n.isExecuted(types.Hash(id)) {
			executed = append(executed, id)
		} else {
			rest = append(rest, id)
		}
	}
	if len(executed) > 0 {
		deliver(nil, executed)
	}
	if ids = rest; len(ids) == 0 {
		return
	}
	want := map[types.Hash]bool{}
	for _, id := range ids {
		want[types.Hash(id)] = true
	}
	n.tryPeers(func(v uint32) bool {
		req := txRequest{}
		for _, id := range ids {
			if want[types.Hash(id)] {
				req.IDs = append(req.IDs, types.Hash(id))
			}
		}
		var r txResponse
		if err := n.request(v, protoTxs, &req, &r); err != nil {
			return false
		}
		var got, executed []consensus.TxID
		for _, a := range n.pool.AddAll(n.ctx, r.Raw, n.clock.Now()) {
			if a.Err != nil || !want[a.Entry.ID] {
				continue
			}
			delete(want, a.Entry.ID)
			// Executed meanwhile: not held in the pool, never acked.
			dropped, err := n.dropExecuted(n.ctx, a.Entry.ID)
			if err != nil {
				n.log.Debug("drop executed tx", "id", a.Entry.ID, "err", err)
			}
			if dropped {
				executed = append(executed, consensus.TxID(a.Entry.ID))
			} else {
				got = append(got, consensus.TxID(a.Entry.ID))
			}
		}
		if len(got) > 0 || len(executed) > 0 {
			deliver(got, executed)
		}
		return len(want) == 0
	})
}

// fetchOwnRound asks the other validators for the highest round this node
// signed at. It needs answers of weight Q - own weight: with this node's
// own (empty) knowledge that makes a quorum, which any certificate it
// signed for intersects.
func (n *Node) fetchOwnRound() (uint64, bool) {
	c := n.cfg.Committee
	need := c.Q() - c.Validators[n.me].Weight
	var w, r uint64
	for v := range n.peers {
		if uint32(v) == n.me {
			continue
		}
		var resp ownRoundResponse
		if err := n.request(uint32(v), protoOwnRound, &struct{}{}, &resp); err != nil {
			continue
		}
		w += c.Validators[v].Weight
		r = max(r, resp.Round)
	}
	return r, w >= need
}

// MaxDecodedCerts bounds the certificate messages remembered decoded.
const MaxDecodedCerts = 1024

// decodedCerts remembers recently decoded certificate messages by the
// sha256 of their bytes. Every certificate reaches a validator twice, by
// the author's direct stream and by gossip, with the same bytes; decoding
// it (a header with all its acks) once is enough. The driver gets the same
// *consensus.Message both times: the core does not modify what it
// receives, and the second copy still reaches it (a pending certificate
// takes a copy as a cue to check its parents again). Two generations of at
// most MaxDecodedCerts/2 keep the memory bounded.
type decodedCerts struct {
	mu       sync.Mutex
	cur, old map[[sha256.Size]byte]*consensus.Message
}

func (c *decodedCerts) get(k [sha256.Size]byte) (*consensus.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.cur[k]
	if !ok {
		m, ok = c.old[k]
	}
	return m, ok
}

func (c *decodedCerts) put(k [sha256.Size]byte, m *consensus.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= MaxDecodedCerts/2 {
		c.old, c.cur = c.cur, make(map[[sha256.Size]byte]*consensus.Message, MaxDecodedCerts/2)
	}
	c.cur[k] = m
}
