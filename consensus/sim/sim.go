package sim

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// Time units in virtual nanoseconds.
const (
	Millisecond int64 = 1e6
	Second      int64 = 1e9
)

// Fault kinds, as counted in Result.Faults.
const (
	FLoss          = "loss"
	FDup           = "duplicate"
	FReorder       = "reorder"
	FPartition     = "partition"
	FOneWay        = "partition-oneway"
	FFlapping      = "partition-flapping"
	FIsolateAnchor = "isolate-anchor"
	FCrash         = "crash-restart"
	FWipe          = "wipe"
	FSkew          = "clock-skew"
	FSkewBeyond    = "clock-beyond-delta"
	FJump          = "clock-jump"
	FDrift         = "clock-drift"
	FTwin          = "byz-twin"
	FAcksWithheld  = "byz-acks-withheld"
	FAcksEarly     = "byz-acks-early"
	FAcksLate      = "byz-acks-late"
	FAcksAncient   = "byz-acks-ancient"
	FBadSig        = "byz-bad-signature"
	FReplay        = "byz-replay"
	FOversize      = "byz-oversize"
	FMalformed     = "byz-malformed"
)

// AllFaults lists every fault kind; Config.Faults picks from it.
var AllFaults = []string{FLoss, FDup, FReorder, FPartition, FOneWay, FFlapping, FIsolateAnchor, FCrash, FWipe,
	FSkew, FSkewBeyond, FJump, FDrift, FTwin, FAcksWithheld, FAcksEarly, FAcksLate, FAcksAncient, FBadSig,
	FReplay, FOversize, FMalformed}

// Config describes one run.
type Config struct {
	Seed       uint64
	Validators int
	Faults     []string // kinds that may be injected (each seed picks some); nil = none
	FaultTime  int64    // virtual ns with faults
	CalmTime   int64    // virtual ns after the faults stop (liveness checks)
	TxRate     float64  // client transactions per virtual second
	LatencyMin int64    // one-way latency base
	LatencyAvg int64    // mean of the exponential tail added to the base
	Ed25519    bool     // real signatures instead of the keyed-hash scheme
	Always     bool     // inject every listed kind (figures); otherwise each seed draws some
	FaultyDown bool     // the faulty validator is down for the whole run
	Faulty     *int     // which validator may misbehave; nil = drawn from the seed
	Params     *consensus.Params
	Script     []Step // scheduled faults (scenario files); added to the random ones
	Trace      func(string)
	// Executor, if set, executes every honest validator's released blocks
	// so that S2 (equal height ⇒ equal state root) is checked.
	Executor Executor
	// TxID, if set, names the client's n-th transaction (n from 0), so an
	// executor can map released ids to transactions it built.
	TxID func(n int) order.TxID
	// Restore makes restarts continue from an ordering state instead of
	// replaying the log from genesis: a crashed node from its own latest
	// one with its log compacted to its gc round, a wiped node from an
	// honest peer's (state sync; not with Executor). Peers then serve
	// certificates below their gc round from their logs.
	Restore bool
}

// Executor executes released blocks for the S2 check. The simulator calls
// it from its one goroutine, for each validator in height order, each
// height once per state: a validator's state survives a crash (heights it
// holds are not executed again when the restarted core re-emits them) and
// is dropped by Wipe when its disk is wiped.
type Executor interface {
	// Execute applies block b to validator v's state and returns the
	// state root after it.
	Execute(v int, b *order.Block) (types.Root, error)
	// Wipe drops validator v's state.
	Wipe(v int)
}

// Step is one scheduled action of a scenario.
type Step struct {
	At   int64
	Do   string // crash, restart, wipe, partition, oneway, heal, isolate, skew, byz
	Node int
	Arg  string
	Val  int64
}

// DefaultConfig is a LAN-like network with 4 validators and all faults.
func DefaultConfig(seed uint64) Config {
	return Config{Seed: seed, Validators: 4, Faults: AllFaults, FaultTime: 2 * Second, CalmTime: 3 * Second,
		TxRate: 200, LatencyMin: 500_000, LatencyAvg: 1 * Millisecond}
}

// Result summarises a run.
type Result struct {
	Seed        uint64
	VirtualTime int64
	Faults      map[string]int
	Commits     uint64 // highest committed sub-DAG index among honest nodes
	Rounds      uint64 // highest own round among honest nodes
	Submitted   int
	Seen        int     // txs that reached at least one honest validator
	Released    int     // txs released at the first honest node
	Executed    int     // heights executed (with Config.Executor)
	Latencies   []int64 // submit -> first honest release, per released tx
	Messages    uint64
	Verifies    uint64
	// LeaderWaits sums the honest validators' consensus.Stats.LeaderWaits
	// (their current cores' at the end).
	LeaderWaits uint64
	Violations  []string
	TraceHash   [32]byte
	// Settle is the virtual time the run went on after the end for a
	// lagging honest node to reach the L3 target (see settle); it is
	// included in VirtualTime.
	Settle int64
}

// ReplayCommand is how a failing seed is run again.
func ReplayCommand(seed uint64) string {
	return fmt.Sprintf("go run ./cmd/kairos sim --seed %d --seeds 1 --faults all -v", seed)
}

type evKind int

const (
	evDeliver evKind = iota
	evTimer
	evFetch
	evSubmit
	evTxArrive
	evScript
	evCrash
	evRestart
	evReplay
	evJunk
)

type event struct {
	at    int64
	seq   uint64
	kind  evKind
	slot  int
	from  uint32
	data  []byte
	msg   *decoded
	gen   uint64
	res   *consensus.FetchResult
	req   *consensus.Fetch
	tx    int
	step  *Step
	index int
}

type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int)  { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)    { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any      { o := *q; x := o[len(o)-1]; *q = o[:len(o)-1]; return x }
func (q queue) peekAt() int64  { return q[0].at }
func (q *queue) push(e *event) { heap.Push(q, e) }

type clock struct {
	offset int64
	ppm    int64
}

// epoch is the local clocks' reading at virtual time 0 (2023-11-14 in unix ns),
// so that local times look like real ones.
const epoch = 1_700_000_000 * Second

func (c clock) local(v int64) int64 { return epoch + v + c.offset + v/1_000_000*c.ppm }

// virtual returns the earliest virtual time >= from whose local reading is >= t.
func (c clock) virtual(t, from int64) int64 {
	v := (t - epoch - c.offset) * 1_000_000 / (1_000_000 + c.ppm)
	for c.local(v) < t {
		v += 1 + (t-c.local(v))/2
	}
	return max(v, from)
}

type slot struct {
	idx      uint32
	twin     bool
	core     *consensus.Core
	up       bool
	disk     []consensus.Record
	synced   int
	mempool  map[int]int64 // tx -> local receive time
	clk      clock
	timerGen uint64
	subs     []consensus.Digest
	// authorRound is the highest committed round of each author (S8
	// needs each author's certificates committed in round order).
	authorRound map[uint32]uint64
	blocks      []*order.Block
	log         map[order.TxID]bool
	lastTx      *order.Tx
	lastB       int64
	restarts    int
	wiped       bool
	verifies    uint64
	sent        [][]byte // byzantine replay pool
	executed    uint64   // height of the executor's state (survives crashes, not wipes)
	// state is the ordering state after the last released block (what a
	// node persists at a checkpoint); dropped by a wipe.
	state *consensus.OrderingState
}

type sim struct {
	cfg    Config
	r      *rand.Rand
	q      queue
	seq    uint64
	now    int64
	comm   *consensus.Committee
	signer []consensus.Signer
	slots  []*slot
	n      int
	faulty int // validator index allowed to misbehave, -1 none
	byz    map[string]bool
	res    *Result
	trace  [32]byte

	// network state
	loss, dup    float64
	cut          map[[2]uint32]bool // directed links down
	flapping     bool
	isolateUntil int64

	// checkers
	refSubs   []consensus.Digest
	refBlocks [][32]byte
	refRoots  []types.Root                   // state root after each height (S2)
	refOrder  [][32]byte                     // ordering state hash after each height (with Restore)
	headers   map[[2]uint64]consensus.Digest // honest (author, round) -> digest
	votes     map[[3]uint64]consensus.Digest // honest (voter, author, round) -> digest
	certs     map[[2]uint64]consensus.Digest
	honestAck map[order.TxID][2]int64
	maxMinAck int64
	txs       []txInfo
	txIndex   map[order.TxID]int
	calm      bool
	calmSubs  int // committed sub-DAGs when the faults stopped
	l3Height  int // L3 target: the highest honest block height at the end
	l3Subs    int // and the highest honest sub-DAG count

	crashOnHeader map[int]bool // scenario: crash right after the next own header
}

type txInfo struct {
	id        order.TxID
	submitted int64
	seenBy    map[uint32]bool // honest validators whose core saw it
	released  bool
}

// Run executes one simulation.
func Run(cfg Config) *Result {
	s := &sim{cfg: cfg, r: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), n: cfg.Validators, faulty: -1,
		byz: map[string]bool{}, cut: map[[2]uint32]bool{}, headers: map[[2]uint64]consensus.Digest{},
		votes: map[[3]uint64]consensus.Digest{}, certs: map[[2]uint64]consensus.Digest{},
		honestAck: map[order.TxID][2]int64{}, maxMinAck: math.MinInt64, txIndex: map[order.TxID]int{},
		res: &Result{Seed: cfg.Seed, Faults: map[string]int{}}}
	s.setup()
	end := cfg.FaultTime + cfg.CalmTime
	s.runUntil(end, func() bool { return true })
	s.now = end
	s.settle()
	for i, sl := range s.slots {
		if sl.core != nil {
			s.note("end slot %d up=%v %v", i, sl.up, sl.core)
		}
	}
	s.finish()
	s.res.VirtualTime = s.now
	s.res.TraceHash = s.trace
	return s.res
}

// runUntil handles events up to virtual time t while more() holds.
func (s *sim) runUntil(t int64, more func() bool) {
	for s.q.Len() > 0 && s.q.peekAt() <= t && more() {
		e := heap.Pop(&s.q).(*event)
		s.now = e.at
		if !s.calm && s.now >= s.cfg.FaultTime {
			s.stopFaults()
		}
		s.handle(e)
	}
}

// settle fixes the L3 target (the highest block height and sub-DAG count
// of any honest node at the end) and, if an honest node is below it, runs
// on for at most settleResends resend intervals until every honest node
// reaches it. The end is an arbitrary instant: a block released there a
// few milliseconds earlier has not reached the others yet, and a node
// whose fetch of a missing certificate went to a peer that did not hold it
// yet asks again only on its next resend tick (seed 40 of the all-Byzantine
// mix lagged 197 ms that way). Both are delays, not stalls; a node that is
// really stuck never reaches the target and L3 still fails. Safety checks
// keep running meanwhile; no transaction is submitted and no fault
// injected after the end.
func (s *sim) settle() {
	for _, sl := range s.slots {
		if sl.core != nil && s.honest(sl) {
			s.l3Height = max(s.l3Height, len(sl.blocks))
			s.l3Subs = max(s.l3Subs, len(sl.subs))
		}
	}
	end := s.now
	if s.cfg.CalmTime < 2*Second {
		return // finish demands no liveness
	}
	bound := end + settleResends*s.comm.Params.ResendInterval
	s.runUntil(bound, s.lagging)
	if s.lagging() {
		s.now = bound
	}
	s.res.Settle = s.now - end
}

// settleResends bounds settle: how many of a core's resend ticks (each
// re-asks one random peer for every missing certificate) a lagging honest
// node gets to catch up after the end.
const settleResends = 10

// lagging reports whether an honest node is below the L3 target.
func (s *sim) lagging() bool {
	for _, sl := range s.slots {
		if sl.core != nil && s.honest(sl) && (len(sl.blocks) < s.l3Height || len(sl.subs) < s.l3Subs) {
			return true
		}
	}
	return false
}

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	s.q.push(e)
}

func (s *sim) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	h := sha256.New()
	h.Write(s.trace[:])
	fmt.Fprintf(h, "%d %s", s.now, msg)
	h.Sum(s.trace[:0])
	if s.cfg.Trace != nil {
		s.cfg.Trace(fmt.Sprintf("%8.3fms %s", float64(s.now)/1e6, msg))
	}
}

func (s *sim) violate(format string, a ...any) {
	msg := fmt.Sprintf("t=%dns: ", s.now) + fmt.Sprintf(format, a...)
	if len(s.res.Violations) < 20 {
		s.res.Violations = append(s.res.Violations, msg)
	}
	s.note("VIOLATION %s", msg)
}

func (s *sim) has(kind string) bool {
	for _, f := range s.cfg.Faults {
		if f == kind {
			return true
		}
	}
	return false
}

// pick decides whether this seed injects kind.
func (s *sim) pick(kind string, p float64) bool {
	if !s.has(kind) || (!s.cfg.Always && s.r.Float64() >= p) {
		return false
	}
	s.res.Faults[kind]++
	return true
}

func (s *sim) setup() {
	p := consensus.DefaultParams()
	if s.cfg.Params != nil {
		p = *s.cfg.Params
	}
	vals := make([]consensus.Validator, s.n)
	s.signer = make([]consensus.Signer, s.n)
	var ver consensus.Verifier
	if s.cfg.Ed25519 {
		for i := range vals {
			seed := sha256.Sum256([]byte(fmt.Sprintf("sim-validator-%d", i)))
			k := ed25519.NewKeyFromSeed(seed[:])
			vals[i] = consensus.Validator{Key: k.Public().(ed25519.PublicKey), Weight: 1}
			s.signer[i] = consensus.Ed25519Signer(k)
		}
	} else {
		hs := hashScheme{}
		for i := range vals {
			secret := sha256.Sum256([]byte(fmt.Sprintf("sim-secret-%d", i)))
			pub := sha256.Sum256(secret[:])
			hs[string(pub[:])] = secret[:]
			vals[i] = consensus.Validator{Key: pub[:], Weight: 1}
			s.signer[i] = hashSigner(secret[:])
		}
		ver = hs
	}
	comm, err := consensus.NewCommittee("sim", 0, vals, p, ver)
	if err != nil {
		panic(err)
	}
	s.comm = comm
	for i := 0; i < s.n; i++ {
		s.slots = append(s.slots, &slot{idx: uint32(i), mempool: map[int]int64{}})
	}
	s.faulty = s.n - 1 - s.r.IntN(s.n) // at most F weight misbehaves: one validator
	if s.cfg.Faulty != nil {
		s.faulty = *s.cfg.Faulty
	}
	if s.comm.F() == 0 {
		s.faulty = -1 // nothing is tolerated: every validator is honest
	}
	s.planFaults()
	for i, sl := range s.slots {
		if s.cfg.FaultyDown && int(sl.idx) == s.faulty {
			s.res.Faults["validator-down"]++
			continue
		}
		s.startSlot(i)
	}
	// Open-loop clients: Poisson arrivals until shortly before the end so
	// that L2 can demand every transaction be released.
	stop := s.cfg.FaultTime + s.cfg.CalmTime - 2*Second
	if s.cfg.TxRate > 0 {
		for t := int64(0); ; {
			t += int64(s.r.ExpFloat64() / s.cfg.TxRate * float64(Second))
			if t >= stop {
				break
			}
			s.push(&event{at: t, kind: evSubmit})
		}
	}
	for i := range s.cfg.Script {
		st := &s.cfg.Script[i]
		s.push(&event{at: st.At, kind: evScript, step: st})
	}
}

func (s *sim) startSlot(i int) {
	sl := s.slots[i]
	st, blocks, subs := s.restoreFor(i)
	core, err := consensus.New(consensus.Config{Committee: s.comm, Me: sl.idx, Signer: s.signer[sl.idx],
		Records: append([]consensus.Record(nil), sl.disk...), Restore: st, Hooks: s.hooks(sl)})
	if err != nil {
		panic(err)
	}
	sl.core, sl.up, sl.state = core, true, st // crash() already counted the old core's verifications
	sl.log, sl.lastTx, sl.lastB = map[order.TxID]bool{}, nil, math.MinInt64
	sl.resume(blocks, subs)
	sl.authorRound = map[uint32]uint64{}
	s.step(i, consensus.Start{Now: sl.clk.local(s.now)})
	// The mempool survives a restart (not a wipe): the node sees its
	// payloads again.
	ids := make([]int, 0, len(sl.mempool))
	for tx := range sl.mempool {
		ids = append(ids, tx)
	}
	sort.Ints(ids)
	for _, tx := range ids {
		s.step(i, consensus.TxSeen{Now: sl.mempool[tx], ID: s.txs[tx].id})
	}
}

func (s *sim) honest(sl *slot) bool { return int(sl.idx) != s.faulty }

// planFaults draws this seed's faults.
func (s *sim) planFaults() {
	ft := s.cfg.FaultTime
	delta := s.comm.Params.MaxClockSkew
	at := func() int64 { return s.r.Int64N(max(ft, 1)) }
	if s.pick(FLoss, 0.5) {
		s.loss = 0.01 + s.r.Float64()*0.09
	}
	if s.pick(FDup, 0.5) {
		s.dup = 0.02 + s.r.Float64()*0.1
	}
	if s.pick(FReorder, 0.5) {
		s.cfg.LatencyAvg *= 4 // a longer tail reorders more
	}
	for i, sl := range s.slots {
		sl.clk.offset = s.r.Int64N(delta+1) - delta/2
		if s.pick(FDrift, 0.3) {
			sl.clk.ppm = s.r.Int64N(201) - 100
		}
		if s.pick(FJump, 0.15) {
			s.push(&event{at: at(), kind: evScript, step: &Step{Do: "jump", Node: i, Val: s.r.Int64N(2*delta+1) - delta}})
		}
	}
	if s.pick(FSkew, 0.4) {
		s.slots[s.r.IntN(s.n)].clk.offset = s.r.Int64N(delta+1) - delta/2
	}
	if s.pick(FSkewBeyond, 0.2) {
		s.slots[s.r.IntN(s.n)].clk.offset = delta + s.r.Int64N(3*delta)
	}
	type part struct {
		kind string
		p    float64
	}
	for _, k := range []part{{FPartition, 0.3}, {FOneWay, 0.3}, {FFlapping, 0.2}, {FIsolateAnchor, 0.3}} {
		if s.pick(k.kind, k.p) {
			start := at()
			dur := 100*Millisecond + s.r.Int64N(500*Millisecond)
			s.push(&event{at: start, kind: evScript, step: &Step{Do: k.kind, Node: s.r.IntN(s.n), Val: dur}})
		}
	}
	for k := s.r.IntN(3); k > 0; k-- {
		if s.pick(FCrash, 0.5) {
			i := s.r.IntN(s.n)
			t := at()
			s.push(&event{at: t, kind: evCrash, slot: i})
			s.push(&event{at: min(t+50*Millisecond+s.r.Int64N(800*Millisecond), ft), kind: evRestart, slot: i})
		}
	}
	// The faulty validator misbehaves in one or more ways, or loses its disk.
	if s.faulty < 0 {
		return
	}
	if s.pick(FWipe, 0.2) {
		t := at()
		s.push(&event{at: t, kind: evCrash, slot: s.faulty})
		s.push(&event{at: t + 100*Millisecond, kind: evRestart, slot: s.faulty, gen: 1})
	}
	for _, k := range []string{FTwin, FAcksWithheld, FAcksEarly, FAcksLate, FAcksAncient, FBadSig, FReplay, FOversize, FMalformed} {
		if s.pick(k, 0.25) {
			s.byz[k] = true
		}
	}
	if s.byz[FTwin] {
		s.slots = append(s.slots, &slot{idx: uint32(s.faulty), twin: true, mempool: map[int]int64{}})
	}
	if s.byz[FReplay] || s.byz[FOversize] || s.byz[FMalformed] {
		for t := int64(0); t < ft; t += 20*Millisecond + s.r.Int64N(80*Millisecond) {
			s.push(&event{at: t, kind: evJunk, slot: s.faulty})
		}
	}
}

func (s *sim) hooks(sl *slot) consensus.Hooks {
	if s.honest(sl) {
		return consensus.Hooks{}
	}
	return consensus.Hooks{Header: func(h *consensus.Header) {
		if len(h.Acks) == 0 {
			return
		}
		switch {
		case s.byz[FAcksWithheld] && s.r.IntN(2) == 0:
			h.Acks = h.Acks[:len(h.Acks)/2]
		case s.byz[FAcksEarly] && s.r.IntN(2) == 0:
			lo := h.Acks[0].TRecv
			for _, a := range h.Acks {
				lo = min(lo, a.TRecv)
			}
			for i := range h.Acks {
				h.Acks[i].TRecv = lo
			}
		case s.byz[FAcksLate] && s.r.IntN(2) == 0:
			for i := range h.Acks {
				h.Acks[i].TRecv = h.Time
			}
		case s.byz[FAcksAncient] && s.r.IntN(4) == 0:
			for i := range h.Acks {
				h.Acks[i].TRecv -= 10 * Second // outside (T_prev, Time]: voters refuse
			}
		}
	}}
}

func (s *sim) stopFaults() {
	s.calm = true
	s.loss, s.dup, s.flapping, s.isolateUntil = 0, 0, false, 0
	s.cut = map[[2]uint32]bool{}
	for i, sl := range s.slots {
		if !sl.up && !(s.cfg.FaultyDown && int(sl.idx) == s.faulty) {
			s.note("calm: restart %d", i)
			s.startSlot(i)
		}
	}
	for _, sl := range s.slots {
		sl.clk.offset = max(min(sl.clk.offset, s.comm.Params.MaxClockSkew/2), -s.comm.Params.MaxClockSkew/2)
	}
	s.calmSubs = len(s.refSubs)
}

func (s *sim) handle(e *event) {
	switch e.kind {
	case evDeliver:
		sl := s.slots[e.slot]
		if !sl.up {
			return
		}
		if e.msg.err != nil {
			s.note("slot %d rejects %d bytes from %d: %v", e.slot, len(e.data), e.from, errKind(e.msg.err))
			return
		}
		s.checkSigned(e.from, e.msg.m)
		s.step(e.slot, consensus.MsgIn{Now: sl.clk.local(s.now), From: e.from, Msg: e.msg.m})
	case evTimer:
		sl := s.slots[e.slot]
		if !sl.up || e.gen != sl.timerGen {
			return
		}
		if t := sl.clk.local(s.now); t < int64(e.index) {
			s.push(&event{at: sl.clk.virtual(int64(e.index), s.now+1), kind: evTimer, slot: e.slot, gen: e.gen, index: e.index})
			return
		}
		s.step(e.slot, consensus.Tick{Now: sl.clk.local(s.now)})
	case evFetch:
		sl := s.slots[e.slot]
		if e.req != nil {
			s.answerFetch(e.slot, e.req)
			return
		}
		if !sl.up {
			return
		}
		e.res.Now = sl.clk.local(s.now)
		s.step(e.slot, *e.res)
	case evSubmit:
		s.submit()
	case evTxArrive:
		s.txArrive(e.slot, e.tx)
	case evScript:
		s.script(e.step)
	case evCrash:
		s.crash(e.slot, false)
	case evRestart:
		if e.gen == 1 {
			s.crash(e.slot, true)
		}
		if !s.slots[e.slot].up {
			s.note("restart %d", e.slot)
			s.startSlot(e.slot)
		}
	case evJunk:
		s.junk(e.slot)
	}
}

func errKind(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ":"); i >= 0 {
		if j := strings.Index(msg[i+1:], ":"); j >= 0 {
			return msg[:i+1+j]
		}
	}
	return msg
}

func (s *sim) crash(i int, wipe bool) {
	sl := s.slots[i]
	if sl.up {
		sl.verifies += sl.core.Stats().Verifies
	}
	sl.up = false
	sl.timerGen++
	sl.disk = sl.disk[:sl.synced] // unsynced writes are lost
	sl.restarts++
	if wipe {
		// The payloads go with the disk: L2 cannot demand a transaction
		// only this node held (an honest node is wiped only by scripts).
		for tx := range sl.mempool {
			delete(s.txs[tx].seenBy, sl.idx)
		}
		sl.disk, sl.synced, sl.mempool, sl.wiped, sl.state = nil, 0, map[int]int64{}, true, nil
		if s.cfg.Executor != nil {
			s.cfg.Executor.Wipe(i)
			sl.executed = 0
		}
	}
	s.note("crash %d wipe=%v", i, wipe)
}

// step delivers one event to a slot's core and performs the actions.
func (s *sim) step(i int, ev consensus.Event) {
	sl := s.slots[i]
	acts := sl.core.Step(ev)
	for _, a := range acts {
		switch a := a.(type) {
		case consensus.Send:
			s.send(i, []uint32{a.To}, a.Msg)
		case consensus.Broadcast:
			if a.Msg.Header != nil {
				s.note("slot %d header round %d time %d acks %d", i, a.Msg.Header.Round, a.Msg.Header.Time, len(a.Msg.Header.Acks))
			}
			defer s.crashAfterHeader(i, a.Msg)
			var to []uint32
			for v := uint32(0); v < uint32(s.n); v++ {
				if v != sl.idx {
					to = append(to, v)
				}
			}
			s.send(i, to, a.Msg)
		case consensus.Persist:
			sl.disk = append(sl.disk, a.Rec)
			if a.Sync {
				sl.synced = len(sl.disk)
			}
		case consensus.SetTimer:
			sl.timerGen++
			s.push(&event{at: sl.clk.virtual(a.At, s.now), kind: evTimer, slot: i, gen: sl.timerGen, index: int(a.At)})
		case consensus.Fetch:
			s.fetch(i, a)
		case consensus.Committed:
			s.onCommitted(sl, a)
		case consensus.Released:
			sl.state = a.State
			s.onReleased(sl, a.Block)
		}
	}
}

func (s *sim) crashAfterHeader(i int, m *consensus.Message) {
	if m.Header != nil && s.crashOnHeader[i] && s.slots[i].up {
		delete(s.crashOnHeader, i)
		s.crash(i, false)
	}
}

func (s *sim) linkUp(from, to uint32) bool {
	if s.cut[[2]uint32{from, to}] {
		return false
	}
	if s.isolateUntil > s.now {
		lead := s.currentLeader()
		if from == lead || to == lead {
			return false
		}
	}
	return true
}

func (s *sim) currentLeader() uint32 {
	var r uint64
	for _, sl := range s.slots {
		if sl.up && s.honest(sl) {
			r = max(r, sl.core.Round())
		}
	}
	return s.comm.Leader(r &^ 1)
}

func (s *sim) latency() int64 {
	return s.cfg.LatencyMin + int64(s.r.ExpFloat64()*float64(s.cfg.LatencyAvg))
}

func (s *sim) send(i int, to []uint32, m *consensus.Message) {
	sl := s.slots[i]
	if !s.honest(sl) && s.byz[FBadSig] && s.r.IntN(3) == 0 {
		m = corrupt(m)
		s.res.Faults["byz-bad-signature-msgs"]++
	}
	data := consensus.EncodeMessage(m)
	if !s.honest(sl) && len(sl.sent) < 256 {
		sl.sent = append(sl.sent, data)
	}
	s.transmit(sl.idx, to, data)
}

// decoded is one transmission decoded once for all its recipients (the
// core treats received messages as read-only).
type decoded struct {
	m   *consensus.Message
	err error
}

func (s *sim) transmit(from uint32, to []uint32, data []byte) {
	m, err := consensus.DecodeMessage(data)
	msg := &decoded{m, err}
	for _, v := range to {
		if !s.linkUp(from, v) {
			continue
		}
		for j, dst := range s.slots {
			if dst.idx != v {
				continue
			}
			s.res.Messages++
			if s.r.Float64() < s.loss {
				continue
			}
			s.push(&event{at: s.now + s.latency(), kind: evDeliver, slot: j, from: from, data: data, msg: msg})
			if s.r.Float64() < s.dup {
				s.push(&event{at: s.now + s.latency(), kind: evDeliver, slot: j, from: from, data: data, msg: msg})
			}
		}
	}
}

// corrupt returns a copy of m with one signature byte flipped.
func corrupt(m *consensus.Message) *consensus.Message {
	c := *m
	switch {
	case m.Header != nil:
		h := *m.Header
		h.Sig = flip(h.Sig)
		c.Header = &h
	case m.Vote != nil:
		v := *m.Vote
		v.Sig = flip(v.Sig)
		c.Vote = &v
	case m.Cert != nil:
		ct := *m.Cert
		ct.Sigs = append([][]byte(nil), ct.Sigs...)
		if len(ct.Sigs) > 0 {
			ct.Sigs[0] = flip(ct.Sigs[0])
		}
		c.Cert = &ct
	}
	return &c
}

func flip(b []byte) []byte {
	c := append([]byte(nil), b...)
	if len(c) > 0 {
		c[0] ^= 0x80
	}
	return c
}

// oversized is one shared buffer just over the message limit.
var oversized = make([]byte, consensus.MaxMessageBytes+1)

// junk makes the faulty validator send replays, oversized or malformed
// bytes to everyone.
func (s *sim) junk(i int) {
	sl := s.slots[i]
	if !sl.up {
		return
	}
	var to []uint32
	for v := uint32(0); v < uint32(s.n); v++ {
		if v != sl.idx {
			to = append(to, v)
		}
	}
	switch k := s.r.IntN(3); {
	case k == 0 && s.byz[FReplay] && len(sl.sent) > 0:
		s.transmit(sl.idx, to, sl.sent[s.r.IntN(len(sl.sent))])
		s.res.Faults["byz-replay-msgs"]++
	case k == 1 && s.byz[FOversize]:
		s.transmit(sl.idx, to, oversized)
		s.res.Faults["byz-oversize-msgs"]++
	case k == 2 && s.byz[FMalformed]:
		b := make([]byte, 1+s.r.IntN(64))
		for j := range b {
			b[j] = byte(s.r.IntN(256))
		}
		s.transmit(sl.idx, to, b)
		s.res.Faults["byz-malformed-msgs"]++
	}
	s.push(&event{at: s.now + 20*Millisecond + s.r.Int64N(80*Millisecond), kind: evJunk, slot: i})
}

// fetch models a request/response exchange with one random reachable
// peer: the answer reflects the peer's state when the request arrives.
func (s *sim) fetch(i int, f consensus.Fetch) {
	req := f
	s.push(&event{at: s.now + s.latency(), kind: evFetch, slot: i, req: &req})
}

func (s *sim) answerFetch(i int, f *consensus.Fetch) {
	sl := s.slots[i]
	var peers []int
	for j, p := range s.slots {
		if j != i && p.up && p.idx != sl.idx && s.linkUp(sl.idx, p.idx) && s.linkUp(p.idx, sl.idx) {
			peers = append(peers, j)
		}
	}
	if (len(peers) == 0 && s.n > 1) || s.r.Float64() < s.loss {
		return // lost; the core asks again on its resend tick
	}
	res := &consensus.FetchResult{}
	if f.OwnRound {
		// Production asks >= Q peers and takes the highest answer; here
		// every reachable peer answers.
		for _, j := range peers {
			res.OwnRound = max(res.OwnRound, s.slots[j].core.SignedRound(sl.idx))
		}
		res.HasOwnRound = true
	}
	if len(peers) == 0 {
		// A network of one: nobody else can hold anything.
		s.push(&event{at: s.now + s.latency(), kind: evFetch, slot: i, res: res})
		return
	}
	p := s.slots[peers[s.r.IntN(len(peers))]]
	if len(f.Digests) > 0 {
		res.Certs = p.core.Certificates(f.Digests, 0)
	}
	if f.FromRound > 0 && s.cfg.Restore {
		res.Certs = append(res.Certs, s.logCerts(p, f.FromRound)...)
	} else if f.FromRound > 0 {
		res.Certs = append(res.Certs, p.core.Certificates(nil, f.FromRound)...)
	}
	for _, id := range f.Txs {
		if _, ok := s.txIndex[id]; ok {
			res.Txs = append(res.Txs, id)
		}
	}
	s.push(&event{at: s.now + s.latency(), kind: evFetch, slot: i, res: res})
}

func (s *sim) submit() {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(s.txs)))
	id := order.TxID(sha256.Sum256(append([]byte(fmt.Sprintf("sim-tx-%d-", s.cfg.Seed)), b[:]...)))
	tx := len(s.txs)
	if s.cfg.TxID != nil {
		id = s.cfg.TxID(tx)
	}
	s.txs = append(s.txs, txInfo{id: id, submitted: s.now, seenBy: map[uint32]bool{}})
	s.txIndex[id] = tx
	s.res.Submitted++
	// Clients submit to 1, f+1 or all validators.
	targets := s.r.Perm(s.n)
	switch s.r.IntN(3) {
	case 0:
		targets = targets[:1]
	case 1:
		targets = targets[:int(s.comm.F())+1]
	}
	for _, v := range targets {
		for j, sl := range s.slots {
			if int(sl.idx) == v {
				s.push(&event{at: s.now + s.latency(), kind: evTxArrive, slot: j, tx: tx, gen: 1})
			}
		}
	}
}

// txArrive: a validator receives a payload from a client or by gossip.
func (s *sim) txArrive(i, tx int) {
	sl := s.slots[i]
	if !sl.up {
		return
	}
	if _, ok := sl.mempool[tx]; ok {
		return
	}
	now := sl.clk.local(s.now)
	sl.mempool[tx] = now
	if s.honest(sl) {
		s.txs[tx].seenBy[sl.idx] = true
	}
	s.step(i, consensus.TxSeen{Now: now, ID: s.txs[tx].id})
	// Honest mempools gossip the payload; the faulty one may keep it.
	if s.honest(sl) || s.r.IntN(2) == 0 {
		for j, dst := range s.slots {
			if j != i && s.linkUp(sl.idx, dst.idx) && s.r.Float64() >= s.loss {
				s.push(&event{at: s.now + s.latency(), kind: evTxArrive, slot: j, tx: tx})
			}
		}
	}
}

func (s *sim) script(st *Step) {
	s.note("script %s node %d %s %d", st.Do, st.Node, st.Arg, st.Val)
	v := uint32(st.Node)
	switch st.Do {
	case "crash":
		s.crash(st.Node, false)
	case "wipe":
		s.crash(st.Node, true)
	case "restart":
		if !s.slots[st.Node].up {
			s.startSlot(st.Node)
		}
	case "crash-anchor":
		lead := s.currentLeader()
		for i, sl := range s.slots {
			if sl.idx == lead && sl.up {
				s.crash(i, false)
				s.push(&event{at: s.now + st.Val, kind: evRestart, slot: i})
			}
		}
	case "crash-on-header":
		if s.crashOnHeader == nil {
			s.crashOnHeader = map[int]bool{}
		}
		s.crashOnHeader[st.Node] = true
	case "jump":
		s.slots[st.Node].clk.offset += st.Val
	case "skew":
		s.slots[st.Node].clk.offset = st.Val
	case FPartition:
		// {v, v+1} | the rest, both directions.
		side := func(x uint32) bool { return x == v || x == (v+1)%uint32(s.n) }
		for a := uint32(0); a < uint32(s.n); a++ {
			for b := uint32(0); b < uint32(s.n); b++ {
				if side(a) != side(b) {
					s.cut[[2]uint32{a, b}] = true
				}
			}
		}
		s.healLater(st.Val)
	case FOneWay, "oneway":
		for b := uint32(0); b < uint32(s.n); b++ {
			if b != v {
				s.cut[[2]uint32{v, b}] = true
			}
		}
		s.healLater(st.Val)
	case FFlapping:
		s.flapping = true
		s.flap(v, st.Val)
	case "flap":
		s.flap(v, st.Val)
	case FIsolateAnchor, "isolate":
		s.isolateUntil = s.now + st.Val
	case "heal":
		s.cut = map[[2]uint32]bool{}
		s.flapping = false
	}
}

func (s *sim) healLater(d int64) {
	if d > 0 {
		s.push(&event{at: s.now + d, kind: evScript, step: &Step{Do: "heal"}})
	}
}

// flap toggles node v's links every 20-100 ms until dur is spent.
func (s *sim) flap(v uint32, dur int64) {
	if dur <= 0 || s.calm {
		s.cut = map[[2]uint32]bool{}
		return
	}
	down := !s.cut[[2]uint32{v, (v + 1) % uint32(s.n)}]
	for b := uint32(0); b < uint32(s.n); b++ {
		if b != v {
			s.cut[[2]uint32{v, b}], s.cut[[2]uint32{b, v}] = down, down
		}
	}
	d := 20*Millisecond + s.r.Int64N(80*Millisecond)
	s.push(&event{at: s.now + d, kind: evScript, step: &Step{Do: "flap", Node: int(v), Val: dur - d}})
}
