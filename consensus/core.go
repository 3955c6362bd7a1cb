package consensus

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/kairos-network/kairos/consensus/order"
)

// Limits on per-node queues that peers or clients can grow.
const (
	// MaxRoundsAhead bounds how far above the highest certified round a
	// header may be and still be kept waiting for a vote.
	MaxRoundsAhead = 64
	// MaxUnacked bounds transactions seen but not yet acked in a certified
	// own header.
	MaxUnacked = 1 << 20
	// amnesiaMargin is added to the highest round peers report this node
	// signed at, after an empty-disk start.
	amnesiaMargin = 2
)

// Hooks let the simulator turn a core into a Byzantine one. Production
// code leaves them nil.
type Hooks struct {
	// Header may rewrite an own header before it is signed.
	Header func(h *Header)
}

// Config builds a Core.
type Config struct {
	Committee *Committee
	Me        uint32
	Signer    Signer
	Records   []Record // the persisted log, replayed on Start
	// Restore, if set, is the ordering state to continue from (a
	// compacted log's checkpoint, or a state sync's): Records then hold
	// only what is at or above its gc round, and blocks are released from
	// Restore.Height+1 on.
	Restore *OrderingState
	Hooks   Hooks
}

type ar struct {
	author uint32
	round  uint64
}

type node struct {
	cert      *Certificate
	digest    Digest
	committed bool
}

type waitHeader struct {
	h *Header
	d Digest
	// Rule 4's result for the self-parent time acksFor, when checked: the
	// acks are distinct and in range, and need holds the acked ids whose
	// payloads were missing. A header waits for payloads across many
	// steps; checking only need again keeps each step O(missing) instead
	// of O(acks), which at thousands of acks per header was most of a
	// loaded node's driver time.
	checked bool
	acksFor int64
	need    []TxID
}

type seenTx struct {
	id TxID
	at int64
}

// Stats are counters for the simulator and metrics.
type Stats struct {
	Invalid uint64 // messages rejected (bad signature, shape, rules)
	// Conflicts counts certificates for an (author, round) that already has
	// another one: impossible with at most F faulty weight, so they are
	// reported here and never inserted.
	Conflicts uint64
	Verifies  uint64 // signature verifications
	Headers   uint64 // own headers proposed
	// Anchors counts committed anchors (direct and the earlier ones they
	// reach). LeaderWaits counts own headers proposed only because the
	// leader timeout ran out: the round's anchor (even rounds) or its F+1
	// support (odd rounds) had not arrived. Each such round held the DAG
	// for up to the timeout, the commit-latency tail's first suspect.
	Anchors     uint64
	LeaderWaits uint64
	// LastReject names the rule the last rejected message broke.
	LastReject string
}

// Core is the TDAG state machine of one validator. It is not safe for
// concurrent use; Step returns actions the caller owns.
type Core struct {
	c      *Committee
	me     uint32
	signer Signer
	hooks  Hooks
	recs   []Record
	out    []Action
	now    int64
	stats  Stats

	// DAG.
	dag      map[Digest]*node
	rounds   map[uint64]map[uint32]Digest
	pending  map[Digest]*Certificate // waiting for parents
	missing  map[Digest]bool
	missTx   map[TxID]bool
	highest  uint64 // highest round with any certificate
	gcRound  uint64 // rounds below are dropped
	signedBy map[uint32]uint64

	// Voting.
	voted   map[ar]Digest
	waiting map[ar]*waitHeader

	// Own proposals.
	ready     bool   // false until the amnesia check answered
	floor     uint64 // never sign at or below this round
	round     uint64 // round of the last own header
	own       *Header
	ownDigest Digest
	ownVotes  map[uint32][]byte
	ownDone   bool
	lastCert  *node
	lastTime  int64 // Time of the last own header
	waitRound uint64
	waitStart int64
	misses    uint
	resendAt  int64
	progress  uint64 // round at the last resend tick
	timerAt   int64

	// Transactions.
	inflight map[Digest][]seenTx // acks in own certificates not yet committed
	have     map[TxID]int64
	unacked  []seenTx
	inUnack  map[TxID]bool

	// Commit.
	lastAnchor uint64 // round of the last committed anchor (0 = none)
	subIndex   uint64
	ord        *order.Orderer
	// restored holds the certificates (digest → round) a restored
	// ordering state lists as committed that have not re-entered the DAG
	// yet.
	restored map[Digest]uint64
}

// New returns a core; deliver Start next.
func New(cfg Config) (*Core, error) {
	if cfg.Committee == nil || int(cfg.Me) >= len(cfg.Committee.Validators) || cfg.Signer == nil {
		return nil, fmt.Errorf("%w: incomplete config", ErrBadParams)
	}
	c := cfg.Committee.clone()
	ord, err := order.New(order.Params{Weights: c.weights(), TxExpiry: c.Params.TxExpiry, Retain: 2 * c.Params.TxExpiry, EmptyEvery: c.Params.EmptyBlockInterval})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadParams, err)
	}
	core := &Core{
		c: c, me: cfg.Me, signer: cfg.Signer, hooks: cfg.Hooks, recs: cfg.Records,
		dag: map[Digest]*node{}, rounds: map[uint64]map[uint32]Digest{}, pending: map[Digest]*Certificate{},
		missing: map[Digest]bool{}, missTx: map[TxID]bool{}, signedBy: map[uint32]uint64{},
		voted: map[ar]Digest{}, waiting: map[ar]*waitHeader{}, ownVotes: map[uint32][]byte{},
		have: map[TxID]int64{}, inflight: map[Digest][]seenTx{}, inUnack: map[TxID]bool{}, ord: ord, timerAt: -1,
	}
	if cfg.Restore != nil {
		if err := c.checkOrderingState(cfg.Restore); err != nil {
			return nil, err
		}
		if err := core.restore(cfg.Restore); err != nil {
			return nil, err
		}
	}
	return core, nil
}

// Step applies one event and returns the actions to perform, in order.
func (c *Core) Step(ev Event) []Action {
	c.out = nil
	c.now = ev.now()
	switch e := ev.(type) {
	case Start:
		c.start()
	case MsgIn:
		c.onMessage(e.Msg)
	case Tick:
		c.onTick()
	case TxSeen:
		c.seeTx(e.ID, e.Now)
	case FetchResult:
		c.onFetch(e)
	}
	c.advance()
	c.armTimer()
	c.stats.Verifies = c.c.Verifies()
	return c.out
}

func (c *Core) emit(a Action) { c.out = append(c.out, a) }

func (c *Core) start() {
	for _, r := range c.recs {
		switch {
		case r.Own != nil:
			h := r.Own
			c.round, c.lastTime, c.own, c.ownDone = h.Round, h.Time, h, false
			c.ownDigest = c.c.Digest(h)
			c.ownVotes = map[uint32][]byte{c.me: c.c.SignVote(c.signer, h, c.ownDigest, c.me).Sig}
			c.voted[ar{c.me, h.Round}] = c.ownDigest
		case r.Vote != nil:
			c.voted[ar{r.Vote.Author, r.Vote.Round}] = r.Vote.Digest
		case r.Cert != nil:
			c.insertCert(r.Cert, c.c.Digest(&r.Cert.Header), false)
		}
	}
	if !slices.ContainsFunc(c.recs, func(r Record) bool { return r.Own != nil || r.Vote != nil }) {
		// Nothing signed on disk: this may be a wiped validator, also one
		// that crashed again (with fetched certificates persisted) before
		// peers answered. Do not sign anything until peers say how far we
		// had signed (the amnesia guard).
		c.emit(Fetch{OwnRound: true})
		return
	}
	c.recs = nil
	c.ready = true
	if c.own != nil && !c.ownDone {
		c.emit(Broadcast{Msg: &Message{Header: c.own}}) // re-sent, never re-created
		c.tryCertify()
	}
	c.emit(Fetch{FromRound: c.highest + 1})
}

func (c *Core) onFetch(e FetchResult) {
	if e.HasOwnRound && !c.ready {
		// A vote may have gone to a header that was never certified, so
		// peers can under-report by a round or two: keep a margin.
		c.ready = true
		if e.OwnRound > 0 {
			c.floor = e.OwnRound + amnesiaMargin
		}
		c.round = max(c.round, c.floor)
		c.emit(Fetch{FromRound: max(1, c.gcRound)})
	}
	for _, id := range e.Txs {
		delete(c.missTx, id)
		c.seeTx(id, e.Now)
	}
	for _, id := range e.Executed {
		delete(c.missTx, id)
		if _, ok := c.have[id]; !ok {
			c.have[id] = e.Now
		}
	}
	for _, cert := range e.Certs {
		c.onCert(cert)
	}
}

func (c *Core) seeTx(id TxID, at int64) {
	if _, ok := c.have[id]; ok {
		return
	}
	c.have[id] = at
	// A payload asked for may arrive by gossip before the fetch answers:
	// the next resend tick must not fetch it again.
	delete(c.missTx, id)
	if c.ord.Done(id) || len(c.unacked) >= MaxUnacked {
		return
	}
	c.unacked = append(c.unacked, seenTx{id, at})
	c.inUnack[id] = true
}

func (c *Core) onMessage(m *Message) {
	switch {
	case m.Header != nil:
		c.onHeader(m.Header)
	case m.Vote != nil:
		c.onVote(m.Vote)
	case m.Cert != nil:
		c.onCert(m.Cert)
	}
}

func (c *Core) onHeader(h *Header) {
	key := ar{h.Author, h.Round}
	if h.Round < c.gcRound || h.Round > c.highest+MaxRoundsAhead || h.Author == c.me {
		return
	}
	d, err := c.c.CheckHeader(h)
	if err != nil {
		c.reject("bad header")
		return
	}
	if v, ok := c.voted[key]; ok {
		if v == d {
			c.sendVote(h, d) // the author may have lost it; same vote again
		}
		return // never a second vote for the same (author, round)
	}
	if _, ok := c.waiting[key]; !ok {
		c.waiting[key] = &waitHeader{h: h, d: d}
	}
}

func (c *Core) sendVote(h *Header, d Digest) {
	v := c.c.SignVote(c.signer, h, d, c.me)
	c.emit(Send{To: h.Author, Msg: &Message{Vote: &v}})
}

// tryVote applies the voting rules; it returns true when the header is
// settled (voted or rejected) and may leave the waiting set.
func (c *Core) tryVote(w *waitHeader) bool {
	h, d := w.h, w.d
	if !c.ready || h.Round <= c.floor || h.Round < c.gcRound {
		return h.Round < c.gcRound
	}
	// Rule 2: parents.
	if h.Round > 1 {
		var w uint64
		seen := map[uint32]bool{}
		var need []Digest
		for _, p := range h.Parents {
			n := c.dag[p]
			if n == nil {
				if h.Round-1 >= c.gcRound {
					need = append(need, p)
				}
				continue
			}
			a := n.cert.Header.Author
			if n.cert.Header.Round != h.Round-1 || seen[a] {
				c.reject("parent round or duplicate author")
				return true
			}
			seen[a] = true
			w += c.c.Validators[a].Weight
		}
		if len(need) > 0 {
			c.want(need)
			return false
		}
		if w < c.c.q && h.Round-1 >= c.gcRound {
			c.reject("parents below quorum")
			return true
		}
	}
	// The self parent must be the author's latest certificate we know of
	// below this round. When we know none (it is below our window) the
	// previous time is unknown and the ordering layer's clamp still holds.
	tPrev := int64(-1 << 62)
	var latest *node
	for r := h.Round - 1; r >= c.gcRound && r > 0; r-- {
		if pd, ok := c.rounds[r][h.Author]; ok {
			latest = c.dag[pd]
			break
		}
	}
	if sp := c.dag[h.SelfParent]; sp != nil {
		sh := &sp.cert.Header
		if sh.Author != h.Author || sh.Round != h.SelfParentRound || h.Time <= sh.Time || (latest != nil && latest != sp) {
			c.reject("self parent mismatch")
			return true
		}
		tPrev = sh.Time
	} else if latest != nil || c.selfEdge(h) {
		if h.SelfParent == (Digest{}) {
			c.reject("self parent missing")
			return true
		}
		// We may simply lag behind the author. A certificate of this
		// header could not enter our DAG without its self parent either.
		c.want([]Digest{h.SelfParent})
		return false
	}
	// Rule 3: not too far in the future; wait, do not reject.
	if h.Time > c.now+c.c.Params.MaxClockSkew {
		return false
	}
	// Rule 4: acks distinct, in (T_prev, Time], payloads held.
	var need []TxID
	if !w.checked || w.acksFor != tPrev {
		ids := make(map[TxID]bool, len(h.Acks))
		for _, a := range h.Acks {
			if ids[a.TxID] || a.TRecv <= tPrev || a.TRecv > h.Time {
				c.reject("ack out of range or duplicate")
				return true
			}
			ids[a.TxID] = true
			if !c.holds(a.TxID) {
				need = append(need, a.TxID)
			}
		}
	} else {
		for _, id := range w.need {
			if !c.holds(id) {
				need = append(need, id)
			}
		}
	}
	w.checked, w.acksFor, w.need = true, tPrev, need
	if len(need) > 0 {
		var ask []TxID
		for _, id := range need {
			if !c.missTx[id] {
				c.missTx[id] = true
				ask = append(ask, id)
			}
		}
		if len(ask) > 0 {
			c.emit(Fetch{Txs: ask})
		}
		return false
	}
	// Rule 5: one vote per (author, round), durable before it is sent.
	c.voted[ar{h.Author, h.Round}] = d
	c.emit(Persist{Rec: Record{Vote: &VoteRecord{Author: h.Author, Round: h.Round, Digest: d}}, Sync: true})
	c.sendVote(h, d)
	return true
}

// holds reports whether this node has the payload of id, or no longer
// needs it (released or expired).
func (c *Core) holds(id TxID) bool {
	_, ok := c.have[id]
	return ok || c.ord.Done(id)
}

func (c *Core) want(ds []Digest) {
	var ask []Digest
	for _, d := range ds {
		if !c.missing[d] && c.dag[d] == nil && len(c.missing) < c.c.Params.MaxPending {
			c.missing[d] = true
			ask = append(ask, d)
		}
	}
	if len(ask) > 0 {
		c.emit(Fetch{Digests: ask})
	}
}

func (c *Core) onVote(v *Vote) {
	if c.own == nil || c.ownDone || v.HeaderDigest != c.ownDigest || v.Round != c.own.Round || v.Author != c.me {
		return
	}
	if _, ok := c.ownVotes[v.Voter]; ok {
		return
	}
	if err := c.c.CheckVote(v); err != nil {
		c.reject("bad vote")
		return
	}
	c.ownVotes[v.Voter] = v.Sig
	c.tryCertify()
}

// tryCertify forms the certificate of the own header once its votes
// (including our own) weigh >= Q.
func (c *Core) tryCertify() {
	var w uint64
	for s := range c.ownVotes {
		w += c.c.Validators[s].Weight
	}
	if w < c.c.q {
		return
	}
	cert := &Certificate{Header: *c.own}
	for s := range c.ownVotes {
		cert.Signers = append(cert.Signers, s)
	}
	slices.Sort(cert.Signers)
	for _, s := range cert.Signers {
		cert.Sigs = append(cert.Sigs, c.ownVotes[s])
	}
	c.ownDone = true
	// Our acks are now certified: they leave the queue until the
	// certificate is committed, or come back if it is collected unused.
	acked := make(map[TxID]bool, len(c.own.Acks))
	for _, a := range c.own.Acks {
		acked[a.TxID] = true
	}
	var flying []seenTx
	c.unacked = slices.DeleteFunc(c.unacked, func(s seenTx) bool {
		if acked[s.id] {
			flying = append(flying, s)
			return true
		}
		return false
	})
	c.inflight[c.ownDigest] = flying
	c.insertCert(cert, c.ownDigest, true)
	c.emit(Broadcast{Msg: &Message{Cert: cert}})
}

func (c *Core) onCert(cert *Certificate) {
	h := &cert.Header
	if h.Round < c.gcRound {
		return
	}
	d := c.c.Digest(h)
	if c.dag[d] != nil {
		return
	}
	if pc := c.pending[d]; pc != nil {
		// Checked already. What it waits for may have fallen below the gc
		// round since (a self parent can be far older than the parents),
		// so a copy from a peer is a cue to look again.
		deps := map[Digest]bool{}
		if c.absentDeps(&pc.Header, deps); len(deps) == 0 {
			c.insertCert(pc, d, true)
		}
		return
	}
	if err := c.c.checkCertificate(cert, d); err != nil {
		c.reject("bad certificate")
		return
	}
	c.insertCert(cert, d, true)
}

// insertCert adds a verified certificate once its parents are present;
// otherwise it waits in pending and the parents are fetched.
func (c *Core) insertCert(cert *Certificate, d Digest, persist bool) {
	h := &cert.Header
	if c.dag[d] != nil || h.Round < c.gcRound {
		return
	}
	if other, ok := c.rounds[h.Round][h.Author]; ok && other != d {
		c.stats.Conflicts++
		return
	}
	var need []Digest
	for _, p := range h.Parents {
		if c.dag[p] == nil && h.Round-1 >= c.gcRound {
			need = append(need, p)
		}
	}
	if c.selfEdge(h) && c.dag[h.SelfParent] == nil {
		need = append(need, h.SelfParent)
	}
	if len(need) > 0 {
		if len(c.pending) < c.c.Params.MaxPending {
			c.pending[d] = cert
		}
		c.want(need)
		if h.Round > c.highest+2 {
			c.emit(Fetch{FromRound: c.highest + 1})
		}
		return
	}
	delete(c.pending, d)
	delete(c.missing, d)
	_, done := c.restored[d]
	n := &node{cert: cert, digest: d, committed: done}
	delete(c.restored, d)
	c.dag[d] = n
	if c.rounds[h.Round] == nil {
		c.rounds[h.Round] = map[uint32]Digest{}
	}
	c.rounds[h.Round][h.Author] = d
	c.highest = max(c.highest, h.Round)
	c.signedBy[h.Author] = max(c.signedBy[h.Author], h.Round)
	for _, s := range cert.Signers {
		c.signedBy[s] = max(c.signedBy[s], h.Round)
	}
	if h.Author == c.me && (c.lastCert == nil || c.lastCert.cert.Header.Round < h.Round) {
		c.lastCert = n
		if c.own != nil && c.ownDigest == d {
			c.ownDone = true
		}
	}
	if persist {
		// An own certificate is durable before it is broadcast: a restart
		// that lost it would name an older self parent in the next header,
		// and the self-parent chain would skip a certificate peers hold.
		c.emit(Persist{Rec: Record{Cert: cert}, Sync: h.Author == c.me})
	}
	c.tryCommit(h.Round)
	// Certificates that waited for this one.
	var ready []Digest
	for pd, pc := range c.pending {
		if pc.Header.SelfParent == d || slices.Contains(pc.Header.Parents, d) {
			ready = append(ready, pd)
		}
	}
	sortDigests(ready)
	for _, pd := range ready {
		if pc := c.pending[pd]; pc != nil {
			c.insertCert(pc, pd, persist)
		}
	}
}

func sortDigests(ds []Digest) {
	sort.Slice(ds, func(i, j int) bool { return bytes.Compare(ds[i][:], ds[j][:]) < 0 })
}

func (c *Core) leaderCert(r uint64) *node {
	if d, ok := c.rounds[r][c.c.Leader(r)]; ok {
		return c.dag[d]
	}
	return nil
}

// tryCommit applies the commit rule after a certificate of round q is
// inserted: the anchor of round q-1 commits when round-q certificates
// referencing it weigh >= F+1.
func (c *Core) tryCommit(q uint64) {
	if q%2 == 0 || q < 3 || q-1 <= c.lastAnchor {
		return
	}
	r := q - 1
	a := c.leaderCert(r)
	if a == nil {
		return
	}
	var w uint64
	for _, d := range c.rounds[q] {
		if slices.Contains(c.dag[d].cert.Header.Parents, a.digest) {
			w += c.c.Validators[c.dag[d].cert.Header.Author].Weight
		}
	}
	if w < c.c.f+1 {
		return
	}
	chain := []*node{a}
	for rr := r - 2; rr > c.lastAnchor && rr >= 2 && rr >= c.gcRound; rr -= 2 {
		if l := c.leaderCert(rr); l != nil && c.path(chain[len(chain)-1], l) {
			chain = append(chain, l)
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		c.commitAnchor(chain[i])
	}
}

// selfEdge reports whether h's self parent is a DAG edge as far as this
// node can tell now: it is at or above the gc round and at most
// GCDepth/2 rounds below h. The self parent is an edge so that an author's
// certificates commit in round order: otherwise a later certificate could
// commit first, and the ordering layer's clamp would then raise the acks
// of the earlier one above the honest values (S8). The span limit keeps a
// node that lags a little from waiting for a self parent that every peer
// has already dropped (a validator back after a long absence names a
// certificate from before it); parents have GCDepth rounds of that margin,
// self parents half of it.
func (c *Core) selfEdge(h *Header) bool {
	return h.SelfParentRound >= max(c.gcRound, 1) && h.Round-h.SelfParentRound <= c.c.Params.GCDepth/2
}

// edges returns n's DAG predecessors at or above the gc round: its parents
// and, if selfEdge holds, its self parent. Which edges exist is the same at
// every node: a certificate enters the DAG only after every predecessor
// selfEdge and the parent rule name at that moment, the gc round only
// grows, and at commit time it is a function of the commit sequence. A
// self parent whose round is not the one the header names is no edge (a
// Byzantine author's lie cannot make nodes disagree about it).
func (c *Core) edges(n *node) []*node {
	h := &n.cert.Header
	out := make([]*node, 0, len(h.Parents)+1)
	for _, p := range h.Parents {
		if pn := c.dag[p]; pn != nil && pn.cert.Header.Round >= c.gcRound {
			out = append(out, pn)
		}
	}
	if c.selfEdge(h) {
		if sp := c.dag[h.SelfParent]; sp != nil && sp.cert.Header.Round == h.SelfParentRound && sp.cert.Header.Author == h.Author {
			out = append(out, sp)
		}
	}
	return out
}

// path reports whether to is in the causal history of from.
func (c *Core) path(from, to *node) bool {
	target := to.cert.Header.Round
	level := []*node{from}
	seen := map[Digest]bool{from.digest: true}
	for len(level) > 0 {
		var next []*node
		for _, n := range level {
			if n == to {
				return true
			}
			if n.cert.Header.Round <= target {
				continue
			}
			for _, pn := range c.edges(n) {
				if !seen[pn.digest] {
					seen[pn.digest] = true
					next = append(next, pn)
				}
			}
		}
		level = next
	}
	return false
}

func (c *Core) commitAnchor(a *node) {
	var sub []*node
	stack := []*node{a}
	a.committed = true
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		sub = append(sub, n)
		for _, pn := range c.edges(n) {
			if !pn.committed {
				pn.committed = true
				stack = append(stack, pn)
			}
		}
	}
	sort.Slice(sub, func(i, j int) bool {
		hi, hj := &sub[i].cert.Header, &sub[j].cert.Header
		if hi.Round != hj.Round {
			return hi.Round < hj.Round
		}
		return hi.Author < hj.Author
	})
	c.subIndex++
	c.stats.Anchors++
	certs := make([]*Certificate, len(sub))
	in := make([]order.Cert, len(sub))
	for i, n := range sub {
		delete(c.inflight, n.digest)
		certs[i] = n.cert
		h := &n.cert.Header
		in[i] = order.Cert{Author: int(h.Author), Time: h.Time, Acks: h.Acks}
	}
	c.emit(Committed{Index: c.subIndex, Anchor: a.digest, Certs: certs})
	// Payloads acked by others that we never received: fetch them, so we
	// hold what we will execute and can add our own ack (otherwise a
	// transaction that reached fewer than Q validators would hold the
	// watermark back until it expires).
	var ask []TxID
	for _, x := range in {
		for _, ack := range x.Acks {
			if _, ok := c.have[ack.TxID]; !ok && !c.missTx[ack.TxID] && !c.ord.Done(ack.TxID) && len(c.missTx) < MaxUnacked {
				c.missTx[ack.TxID] = true
				ask = append(ask, ack.TxID)
			}
		}
	}
	if len(ask) > 0 {
		c.emit(Fetch{Txs: ask})
	}
	b := c.ord.Apply(in)
	c.lastAnchor = a.cert.Header.Round
	c.misses = 0
	c.requeueOrphans()
	if g := gcRoundAfter(c.lastAnchor, c.c.Params.GCDepth); g > 0 {
		c.gc(g)
	}
	if b != nil {
		for _, tx := range b.Txs {
			delete(c.have, tx.ID)
			delete(c.missTx, tx.ID)
		}
		// The state after the whole sub-DAG, gc included: what a node
		// restored at this height continues from.
		c.emit(Released{Block: b, State: c.orderingState()})
	}
}

// requeueOrphans acks again the transactions of own certificates that the
// last committed anchor, two or more rounds above, did not reach. Such a
// certificate may still be committed later through another path; then the
// ordering layer keeps our first ack and ignores the second.
func (c *Core) requeueOrphans() {
	var orphans []Digest
	for d := range c.inflight {
		if n := c.dag[d]; n == nil || (!n.committed && n.cert.Header.Round+2 <= c.lastAnchor) {
			orphans = append(orphans, d)
		}
	}
	sortDigests(orphans)
	for _, d := range orphans {
		for _, s := range c.inflight[d] {
			if !c.ord.Done(s.id) {
				c.unacked = append(c.unacked, s)
			} else {
				delete(c.inUnack, s.id)
			}
		}
		delete(c.inflight, d)
	}
}

// gc drops everything below round g. Rounds are visited in order; the maps
// are only deleted from.
func (c *Core) gc(g uint64) {
	for r := c.gcRound; r < g; r++ {
		delete(c.rounds, r)
	}
	c.gcRound = max(c.gcRound, g)
	for d, r := range c.restored {
		if r < g {
			delete(c.restored, d)
		}
	}
	for d, n := range c.dag {
		// Keep our latest certificate: our next header names it.
		if n.cert.Header.Round < g && n != c.lastCert {
			delete(c.dag, d)
		}
	}
	for d, p := range c.pending {
		if p.Header.Round < g {
			delete(c.pending, d)
		}
	}
	for k := range c.voted {
		if k.round < g {
			delete(c.voted, k)
		}
	}
	for k := range c.waiting {
		if k.round < g {
			delete(c.waiting, k)
		}
	}
	// Forget digests nothing waits for any more (say, a bogus parent of a
	// header just dropped): they would never arrive, and a full missing
	// set stops the fetches that liveness needs.
	still := map[Digest]bool{}
	for _, p := range c.pending {
		c.absentDeps(&p.Header, still)
	}
	for _, w := range c.waiting {
		c.absentDeps(w.h, still)
	}
	for d := range c.missing {
		if !still[d] {
			delete(c.missing, d)
		}
	}
}

// absentDeps adds to set the predecessors of h at or above the gc round
// that are not in the DAG.
func (c *Core) absentDeps(h *Header, set map[Digest]bool) {
	if h.Round-1 >= c.gcRound {
		for _, p := range h.Parents {
			if c.dag[p] == nil {
				set[p] = true
			}
		}
	}
	if c.selfEdge(h) && c.dag[h.SelfParent] == nil {
		set[h.SelfParent] = true
	}
}

// quorumRound returns the highest round whose certificates weigh >= Q.
func (c *Core) quorumRound() uint64 {
	for r := c.highest; r > 0 && r >= c.gcRound; r-- {
		var w uint64
		for a := range c.rounds[r] {
			w += c.c.Validators[a].Weight
		}
		if w >= c.c.q {
			return r
		}
	}
	return 0
}

func (c *Core) leaderTimeout() int64 {
	t := c.c.Params.LeaderTimeout
	for i := uint(0); i < c.misses && t < c.c.Params.LeaderTimeoutMax; i++ {
		t *= 2
	}
	return min(t, c.c.Params.LeaderTimeoutMax)
}

// advance votes on waiting headers and proposes the next own header when
// the round-advance rule allows it.
func (c *Core) advance() {
	if !c.ready {
		return
	}
	keys := make([]ar, 0, len(c.waiting))
	for k := range c.waiting {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].round != keys[j].round {
			return keys[i].round < keys[j].round
		}
		return keys[i].author < keys[j].author
	})
	for _, k := range keys {
		if c.tryVote(c.waiting[k]) {
			delete(c.waiting, k)
		}
	}
	r := c.quorumRound()
	next := r + 1
	if next <= c.round || next <= c.floor {
		return
	}
	if c.waitRound != r {
		c.waitRound, c.waitStart = r, c.now
	}
	if c.round > 0 && c.now < c.lastTime+c.roundDelay() {
		return
	}
	timedOut := c.now >= c.waitStart+c.leaderTimeout()
	if r >= 2 && r%2 == 0 {
		if c.leaderCert(r) == nil && !timedOut {
			return
		}
		if c.leaderCert(r) == nil {
			c.misses++
			c.stats.LeaderWaits++
		}
	} else if r >= 3 {
		var yes, no uint64
		a := c.leaderCert(r - 1)
		for au, d := range c.rounds[r] {
			if a != nil && slices.Contains(c.dag[d].cert.Header.Parents, a.digest) {
				yes += c.c.Validators[au].Weight
			} else {
				no += c.c.Validators[au].Weight
			}
		}
		if yes < c.c.f+1 && no < c.c.q {
			if !timedOut {
				return
			}
			c.stats.LeaderWaits++
		}
	}
	c.propose(next, r)
}

// roundDelay is min_round_delay, raised to IdleRoundDelay while this node
// has nothing to order: no transaction waiting for its ack, none acked in
// an own certificate not yet committed, none committed but not released.
// Every input is local state the core already keeps (no clock, no map
// order); it only paces own headers, never what is committed.
func (c *Core) roundDelay() int64 {
	p := &c.c.Params
	if p.IdleRoundDelay <= p.MinRoundDelay || len(c.unacked) > 0 || c.ord.Pending() > 0 {
		return p.MinRoundDelay
	}
	for _, txs := range c.inflight {
		if len(txs) > 0 {
			return p.MinRoundDelay
		}
	}
	return p.IdleRoundDelay
}

func (c *Core) propose(round, parentRound uint64) {
	h := &Header{Round: round, Author: c.me, Time: max(c.now, c.lastTime+1)}
	tPrev := int64(-1 << 62)
	if c.lastCert != nil {
		h.SelfParent = c.lastCert.digest
		h.SelfParentRound = c.lastCert.cert.Header.Round
		tPrev = c.lastCert.cert.Header.Time
		h.Time = max(h.Time, tPrev+1)
	}
	if round > 1 {
		as := make([]uint32, 0, len(c.rounds[parentRound]))
		for a := range c.rounds[parentRound] {
			as = append(as, a)
		}
		slices.Sort(as)
		for _, a := range as {
			h.Parents = append(h.Parents, c.rounds[parentRound][a])
		}
	}
	for _, s := range c.unacked {
		if len(h.Acks) == c.c.Params.MaxAcks {
			break
		}
		if c.ord.Done(s.id) {
			continue
		}
		// After a backward clock jump a receive time can exceed Time.
		h.Acks = append(h.Acks, Ack{TxID: s.id, TRecv: min(max(s.at, tPrev+1), h.Time)})
	}
	if c.hooks.Header != nil {
		c.hooks.Header(h)
	}
	c.c.SignHeader(c.signer, h)
	d := c.c.Digest(h)
	c.round, c.lastTime, c.own, c.ownDigest, c.ownDone = round, h.Time, h, d, false
	c.ownVotes = map[uint32][]byte{c.me: c.c.SignVote(c.signer, h, d, c.me).Sig}
	c.voted[ar{c.me, round}] = d
	c.stats.Headers++
	c.emit(Persist{Rec: Record{Own: h}, Sync: true})
	c.emit(Broadcast{Msg: &Message{Header: h}})
	c.tryCertify() // a validator holding a quorum alone certifies at once
	c.resendAt = c.now + c.c.Params.ResendInterval
}

func (c *Core) onTick() {
	if c.now < c.resendAt {
		return
	}
	c.resendAt = c.now + c.c.Params.ResendInterval
	if !c.ready {
		c.emit(Fetch{OwnRound: true})
		return
	}
	stalled := c.progress == c.round
	if c.own != nil && !c.ownDone {
		c.emit(Broadcast{Msg: &Message{Header: c.own}})
	} else if stalled && c.lastCert != nil {
		c.emit(Broadcast{Msg: &Message{Cert: c.lastCert.cert}})
	}
	c.progress = c.round
	if stalled && len(c.pending) > 0 {
		// Certificates wait for parents a digest fetch did not bring:
		// peers may have dropped them from memory (a node back from a
		// restart or a sync lags), but serve round ranges from their logs.
		from := uint64(1<<64 - 1)
		for _, p := range c.pending {
			from = min(from, p.Header.Round)
		}
		c.emit(Fetch{FromRound: max(from-1, c.gcRound, 1)})
	}
	if len(c.missing) > 0 {
		ds := make([]Digest, 0, len(c.missing))
		for d := range c.missing {
			ds = append(ds, d)
		}
		sortDigests(ds)
		c.emit(Fetch{Digests: ds})
	}
	if len(c.missTx) > 0 {
		ids := make([]TxID, 0, len(c.missTx))
		for id := range c.missTx {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
		c.emit(Fetch{Txs: ids})
	}
	// Payloads of ids that never made it into a block are forgotten after
	// twice the expiry; only voting availability depends on this.
	for id, at := range c.have {
		if at < c.now-2*c.c.Params.TxExpiry && !c.inUnack[id] {
			delete(c.have, id)
		}
	}
}

// armTimer asks for the earliest moment something may change by itself:
// the resend interval, the end of min_round_delay, the leader timeout, or a
// waiting header's Time - Δ.
func (c *Core) armTimer() {
	at := c.resendAt
	if at <= c.now {
		at = c.now + c.c.Params.ResendInterval
		c.resendAt = at
	}
	if c.ready {
		if t := c.lastTime + c.roundDelay(); t > c.now {
			at = min(at, t)
		}
		if t := c.waitStart + c.leaderTimeout(); t > c.now {
			at = min(at, t)
		}
		for _, w := range c.waiting {
			if t := w.h.Time - c.c.Params.MaxClockSkew; t > c.now {
				at = min(at, t)
			}
		}
	}
	if at != c.timerAt {
		c.timerAt = at
		c.emit(SetTimer{At: at})
	}
}

func (c *Core) reject(why string) {
	c.stats.Invalid++
	c.stats.LastReject = why
}

// Stats returns counters.
func (c *Core) Stats() Stats { return c.stats }

// GCRound returns the round below which the core dropped everything; a
// node serves older certificates from its log.
func (c *Core) GCRound() uint64 { return c.gcRound }

// Round returns the round of the last own header.
func (c *Core) Round() uint64 { return c.round }

// Sizes returns the lengths of the core's queues (for L4 checks).
func (c *Core) Sizes() map[string]int {
	return map[string]int{"dag": len(c.dag), "pending": len(c.pending), "missing": len(c.missing),
		"waiting": len(c.waiting), "voted": len(c.voted), "have": len(c.have), "unacked": len(c.unacked),
		"ordering": c.ord.Pending()}
}

// Certificates serves a peer's fetch: the certificates with the given
// digests, then those of rounds >= fromRound (if > 0), at most
// MaxFetchCerts, in (round, author) order. The result is shared.
func (c *Core) Certificates(ds []Digest, fromRound uint64) []*Certificate {
	var out []*Certificate
	for _, d := range ds {
		if n := c.dag[d]; n != nil && len(out) < MaxFetchCerts {
			out = append(out, n.cert)
		}
	}
	if fromRound > 0 {
		for r := max(fromRound, c.gcRound); r <= c.highest && len(out) < MaxFetchCerts; r++ {
			as := make([]uint32, 0, len(c.rounds[r]))
			for a := range c.rounds[r] {
				as = append(as, a)
			}
			slices.Sort(as)
			for _, a := range as {
				if len(out) < MaxFetchCerts {
					out = append(out, c.dag[c.rounds[r][a]].cert)
				}
			}
		}
	}
	return out
}

// SignedRound answers a wiped validator's amnesia check: the highest round
// of anything signed by v that this node holds — certificates v authored or
// signed, v's headers it voted on or keeps waiting, and v's votes on its own
// current header. The asking core adds a margin on top (amnesiaMargin), for
// signatures that reached no one who answers.
func (c *Core) SignedRound(v uint32) uint64 {
	r := c.signedBy[v]
	for k := range c.voted {
		if k.author == v {
			r = max(r, k.round)
		}
	}
	for k := range c.waiting {
		if k.author == v {
			r = max(r, k.round)
		}
	}
	if _, ok := c.ownVotes[v]; ok && c.own != nil {
		r = max(r, c.own.Round)
	}
	return r
}

// String summarises the core's progress for traces.
func (c *Core) String() string {
	return fmt.Sprintf("v%d ready=%v floor=%d round=%d highest=%d quorum=%d gc=%d anchor=%d waiting=%d pending=%d missing=%d missTx=%d own=%v stats=%+v",
		c.me, c.ready, c.floor, c.round, c.highest, c.quorumRound(), c.gcRound, c.lastAnchor, len(c.waiting), len(c.pending),
		len(c.missing), len(c.missTx), c.own != nil && !c.ownDone, c.stats)
}
