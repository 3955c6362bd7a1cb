package node

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// MaxTrackedTxs bounds the transactions whose stage times the node keeps
// for its latency histograms. A transaction that never reaches a block
// (expired, or acked only by others) is forgotten after about as many
// newer ones arrived, so the tracker cannot grow with what peers send.
const MaxTrackedTxs = 1 << 16

// Stages of a transaction's life on one node, the label values of
// kairos_tx_stage_seconds, in order.
const (
	StagePool    = "pool"    // arrival at the node → durable in the mempool, handed to the driver
	StageAck     = "ack"     // → acked in an own header (the header is built)
	StageCert    = "cert"    // own header → own certificate
	StageCommit  = "commit"  // own certificate → committed in an anchor's sub-DAG
	StageRelease = "release" // committed → released in a block
	StageExecute = "execute" // block released → executed, stored, receipt visible
	StageTotal   = "total"   // arrival → receipt visible
)

// Stages lists the stage labels in the order of a transaction's life.
var Stages = []string{StagePool, StageAck, StageCert, StageCommit, StageRelease, StageExecute, StageTotal}

// Indexes of Stages, for latency.obs.
const (
	sPool = iota
	sAck
	sCert
	sCommit
	sRelease
	sExecute
	sTotal
)

// latencyBuckets covers 0.25 ms to about 60 s in steps of 25%, fine
// enough that a p50 or p99 read from the buckets is within ~12%.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 1.25, 56)

// txTimes is one tracked transaction's local times, as offsets from the
// tracker's base (zero: not reached); offsets take a third of time.Time's
// room.
type txTimes struct {
	seen, pooled, acked, certified, committed, released time.Duration
}

// latency observes where a transaction's time goes on this node. Its
// times are offsets on the monotonic clock of time.Now and are read only by
// the histograms: nothing here feeds consensus, ordering or execution
// (the driver's inputs are stamped with Clock.Now, as before). Methods are
// called by the API and gossip handlers, the driver and the executor.
type latency struct {
	stage *prometheus.HistogramVec
	// obs holds stage's histogram of each of Stages: looking a label up
	// hashes it, and there are seven observations per transaction.
	obs        [sTotal + 1]prometheus.Observer
	commit     prometheus.Histogram // driver's synced group commit
	inboxWait  prometheus.Histogram // input pushed → taken by the driver
	inboxDepth prometheus.Histogram // inputs waiting when the driver takes a group
	voteWait   prometheus.Histogram // peer's header stepped → own vote on it
	round      prometheus.Histogram // own header → next own header
	// headerTransit is a peer header's Time → stepped here.
	headerTransit prometheus.Histogram

	base time.Time // lies before every observation, so an offset is never 0

	mu sync.Mutex
	// cur and old are two generations of tracked transactions: when cur
	// holds MaxTrackedTxs/2, old is dropped and cur becomes old. They are
	// keyed by the first 64 bits of a transaction id (trackKey) and hold
	// the times themselves: each transaction is looked up about seven
	// times, and a 32-byte key and a pointer to follow made those lookups
	// the tracker's main cost.
	cur, old map[uint64]txTimes
	// headers maps an own header's round to its acks' keys until its
	// certificate.
	headers map[uint64][]uint64
	// certs maps an own certificate's round to its acks' keys until it is
	// committed.
	certs map[uint64][]uint64
	// headerIn holds when a peer's header of (author, round) was first
	// stepped, until this node votes on it; driver only.
	headerIn map[authorRound]time.Duration
	// lastHeader is when the previous own header was built; driver only.
	lastHeader time.Duration
}

type authorRound struct {
	author uint32
	round  uint64
}

// maxOwnRounds bounds the own headers and certificates kept between
// stages (one per round; rounds below gc are never committed), and the
// peers' headers waiting for this node's vote.
const maxOwnRounds = 1024

func newLatency() *latency {
	l := &latency{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kairos_tx_stage_seconds",
			Help:    "Local time of a transaction in each stage on this node (see node.Stages).",
			Buckets: latencyBuckets}, []string{"stage"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_driver_commit_seconds",
			Help: "Duration of the consensus driver's synced group commit.", Buckets: latencyBuckets}),
		inboxWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_driver_inbox_wait_seconds",
			Help: "Time a consensus input waited in the driver's inbox.", Buckets: latencyBuckets}),
		inboxDepth: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_driver_inbox_depth",
			Help: "Inputs waiting in the driver's inbox when it takes the next group.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		voteWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_vote_wait_seconds",
			Help:    "Time from a peer's header reaching the core to this node's vote on it (waits for parents and payloads).",
			Buckets: latencyBuckets}),
		headerTransit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_header_transit_seconds",
			Help:    "Time from a peer's header Time (its author's clock) to this node's driver stepping it.",
			Buckets: latencyBuckets}),
		round: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_round_seconds",
			Help:    "Time between two consecutive own headers (the round pace this node sees).",
			Buckets: latencyBuckets}),
		cur: map[uint64]txTimes{}, old: map[uint64]txTimes{},
		headers: map[uint64][]uint64{}, certs: map[uint64][]uint64{}, headerIn: map[authorRound]time.Duration{},
		base: time.Now().Add(-time.Nanosecond),
	}
	for i, s := range Stages {
		l.obs[i] = l.stage.WithLabelValues(s)
	}
	return l
}

// now returns the current offset from l.base (> 0).
func (l *latency) now() time.Duration { return time.Since(l.base) }

func (l *latency) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.stage, l.commit, l.inboxWait, l.inboxDepth, l.voteWait, l.round, l.headerTransit}
}

// trackKey is the tracker's key for id. Two transactions whose ids share
// their first 64 bits (a chance of 2^-64 per pair; finding such a pair
// takes ~2^32 signed transactions) would share their times, which feed
// only the histograms.
func trackKey(id consensus.TxID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// get returns k's times and the generation that holds them (nil if none);
// l.mu held.
func (l *latency) get(k uint64) (txTimes, map[uint64]txTimes) {
	if t, ok := l.cur[k]; ok {
		return t, l.cur
	}
	if t, ok := l.old[k]; ok {
		return t, l.old
	}
	return txTimes{}, nil
}

// observe observes stage s, from from to to, if from was reached.
func (l *latency) observe(s int, from, to time.Duration) {
	if from != 0 {
		l.obs[s].Observe((to - from).Seconds())
	}
}

// pooled records a new transaction that arrived at seen and is now durable
// in the pool.
func (l *latency) pooled(id consensus.TxID, seen time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := trackKey(id)
	if _, gen := l.get(k); gen != nil {
		return
	}
	if len(l.cur) >= MaxTrackedTxs/2 {
		l.old, l.cur = l.cur, make(map[uint64]txTimes, len(l.cur))
	}
	l.cur[k] = txTimes{seen: seen, pooled: now}
	l.observe(sPool, seen, now)
}

// ownHeader records an own header built now with its acks. Driver only.
func (l *latency) ownHeader(h *consensus.Header) {
	now := l.now()
	if l.lastHeader != 0 {
		l.round.Observe((now - l.lastHeader).Seconds())
	}
	l.lastHeader = now
	acks := make([]uint64, len(h.Acks))
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, a := range h.Acks {
		k := trackKey(a.TxID)
		acks[i] = k
		if t, gen := l.get(k); gen != nil && t.acked == 0 {
			t.acked = now
			gen[k] = t
			l.observe(sAck, t.pooled, now)
		}
	}
	if len(l.headers) >= maxOwnRounds {
		clear(l.headers)
	}
	l.headers[h.Round] = acks
}

// ownCert records the certificate of the own header of round r.
func (l *latency) ownCert(r uint64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	acks, ok := l.headers[r]
	if !ok {
		return
	}
	delete(l.headers, r)
	for _, k := range acks {
		if t, gen := l.get(k); gen != nil && t.certified == 0 {
			t.certified = now
			gen[k] = t
			l.observe(sCert, t.acked, now)
		}
	}
	if len(l.certs) >= maxOwnRounds {
		clear(l.certs)
	}
	l.certs[r] = acks
}

// committed records a committed sub-DAG; only own certificates in it
// carry tracked stage times.
func (l *latency) committed(me uint32, certs []*consensus.Certificate) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range certs {
		if c.Header.Author != me {
			continue
		}
		acks, ok := l.certs[c.Header.Round]
		if !ok {
			continue
		}
		delete(l.certs, c.Header.Round)
		for _, k := range acks {
			if t, gen := l.get(k); gen != nil && t.committed == 0 {
				t.committed = now
				gen[k] = t
				l.observe(sCommit, t.certified, now)
			}
		}
	}
}

// released records a released block's transactions.
func (l *latency) released(b *order.Block) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tx := range b.Txs {
		k := trackKey(tx.ID)
		if t, gen := l.get(k); gen != nil && t.released == 0 {
			t.released = now
			gen[k] = t
			l.observe(sRelease, t.committed, now)
		}
	}
}

// executed records that ids' receipts are visible and forgets them: the
// executor calls it once per stored block.
func (l *latency) executed(ids []types.Hash) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range ids {
		k := trackKey(consensus.TxID(h))
		t, gen := l.get(k)
		if gen == nil {
			continue
		}
		l.observe(sExecute, t.released, now)
		l.observe(sTotal, t.seen, now)
		delete(gen, k)
	}
}

// header records that a peer's header reaches the core at the node's
// clock reading now; only its first arrival counts. Driver only.
func (l *latency) header(h *consensus.Header, now int64) {
	k := authorRound{h.Author, h.Round}
	if _, ok := l.headerIn[k]; ok {
		return
	}
	// The author's Time is its clock when it built the header, so this
	// spans its synced commit, the transport and this node's inbox (clock
	// skew included: exact in a devnet, where all share one clock).
	l.headerTransit.Observe(max(0, float64(now-h.Time)/1e9))
	if len(l.headerIn) >= maxOwnRounds {
		clear(l.headerIn)
	}
	l.headerIn[k] = l.now()
}

// voted records this node's vote on a peer's header. Driver only.
func (l *latency) voted(v *consensus.Vote) {
	k := authorRound{v.Author, v.Round}
	if at, ok := l.headerIn[k]; ok {
		l.voteWait.Observe((l.now() - at).Seconds())
		delete(l.headerIn, k)
	}
}

// timed wraps in so that the driver observes how long it waited in the
// inbox.
func (l *latency) timed(in input) input {
	pushed := l.now()
	return func(now int64) consensus.Event {
		l.inboxWait.Observe((l.now() - pushed).Seconds())
		return in(now)
	}
}
