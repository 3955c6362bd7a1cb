package consensus

import (
	"fmt"
	"time"

	"github.com/kairos-network/kairos/consensus/order"
)

// Validator is one member of the committee.
type Validator struct {
	PeerID string // libp2p peer id; not used by the state machine
	Key    []byte // public key checked by Committee.Verifier
	Weight uint64
}

// Params are the genesis parameters of consensus.md; all times are ns.
type Params struct {
	MaxClockSkew  int64 // Δ: votes wait while header.Time > now + Δ
	MinRoundDelay int64 // minimum time between own headers
	// IdleRoundDelay replaces MinRoundDelay while the node has nothing to
	// order (no unacked, in-flight or unreleased transaction): an idle
	// network makes fewer rounds, and the first transaction seen brings
	// the minimum back. Below MinRoundDelay (or 0) it has no effect. Keep
	// it under LeaderTimeout, or idle anchors would time out.
	IdleRoundDelay   int64
	LeaderTimeout    int64 // wait for anchor / support; doubles per consecutive miss
	LeaderTimeoutMax int64 // cap of the doubling
	GCDepth          uint64
	MaxAcks          int   // acks per header
	TxExpiry         int64 // an id with < Q acks is dropped after this
	MaxPending       int   // certificates buffered while their parents are fetched
	ResendInterval   int64 // re-send own header / re-request fetches this often
	// EmptyBlockInterval (ns, 0 = never): an idle chain releases an empty
	// block whenever the watermark crosses a multiple of it (see
	// order.Params.EmptyEvery), so it still checkpoints and compacts.
	EmptyBlockInterval int64
	// CheckpointInterval: validators sign checkpoint votes at heights that
	// are multiples of it (1..MaxCheckpointInterval).
	CheckpointInterval uint64
	// CompactEvery: validators compact their consensus logs at certified
	// heights that are multiples of it (a multiple of CheckpointInterval),
	// the same heights on all of them, so each can serve the snapshot of
	// the latest one to a syncing peer.
	CompactEvery uint64
}

// Limits that are not genesis parameters but still bound what a peer can
// make a node hold or do.
const (
	// MaxValidators bounds the committee size (and so parents per header).
	MaxValidators = 1024
	// MaxAcksLimit is the largest MaxAcks a committee may choose.
	MaxAcksLimit = 10_000
	// MaxTxBytes is the largest transaction payload a validator acks.
	MaxTxBytes = 64 << 10
	// MaxFetchCerts bounds the certificates one fetch asks for or returns.
	MaxFetchCerts = 1000
	// MaxCheckpointInterval is the largest CheckpointInterval (consensus.md):
	// a catching-up node verifies that many blocks by their parent links
	// before a certificate covers them.
	MaxCheckpointInterval = 100
)

// DefaultParams are the start values of consensus.md, except
// MinRoundDelay: 10 ms instead of 20, since rounds are the unit of the
// commit latency and a busy node's rounds are slower than either (see
// RATIONALE.md, "Why is min_round_delay 10 ms?").
func DefaultParams() Params {
	ms := int64(time.Millisecond)
	return Params{
		MaxClockSkew:     100 * ms,
		MinRoundDelay:    10 * ms,
		IdleRoundDelay:   100 * ms,
		LeaderTimeout:    200 * ms,
		LeaderTimeoutMax: 2000 * ms,
		GCDepth:          50,
		MaxAcks:          MaxAcksLimit,
		TxExpiry:         10_000 * ms,
		MaxPending:       4096,
		ResendInterval:   200 * ms,
		// An idle chain gets a block (and so a checkpoint) every 10 s of
		// consensus time: cheap, and it bounds the log an idle network
		// keeps and how late a deferred transaction expires.
		EmptyBlockInterval: 10_000 * ms,
		CheckpointInterval: 1,
		CompactEvery:       256,
	}
}

// Committee is the genesis of one epoch: chain, validators and params. It
// also counts signature verifications (not safe for concurrent use; each
// Core owns its Committee value).
type Committee struct {
	ChainID    string
	Epoch      uint64
	Validators []Validator
	Params     Params
	Verifier   Verifier

	w, f, q  uint64
	verifies uint64
}

// NewCommittee validates the genesis and derives W, F, Q (W >= 3F+1,
// Q = W - F). A nil verifier means Ed25519.
func NewCommittee(chainID string, epoch uint64, vals []Validator, p Params, v Verifier) (*Committee, error) {
	if len(vals) == 0 || len(vals) > MaxValidators {
		return nil, fmt.Errorf("%w: %d validators", ErrBadParams, len(vals))
	}
	ws := make([]uint64, len(vals))
	for i, x := range vals {
		if x.Weight == 0 {
			return nil, fmt.Errorf("%w: validator %d has weight 0", ErrBadParams, i)
		}
		ws[i] = x.Weight
	}
	if p.MaxAcks <= 0 || p.MaxAcks > MaxAcksLimit || p.GCDepth < 4 || p.MinRoundDelay < 0 || p.IdleRoundDelay < 0 ||
		p.LeaderTimeout <= 0 || p.LeaderTimeoutMax < p.LeaderTimeout || p.TxExpiry <= 0 ||
		p.MaxClockSkew < 0 || p.MaxPending <= 0 || p.ResendInterval <= 0 || p.EmptyBlockInterval < 0 ||
		p.CheckpointInterval < 1 || p.CheckpointInterval > MaxCheckpointInterval ||
		p.CompactEvery < p.CheckpointInterval || p.CompactEvery%p.CheckpointInterval != 0 {
		return nil, fmt.Errorf("%w: %+v", ErrBadParams, p)
	}
	if v == nil {
		v = Ed25519{}
	}
	c := &Committee{ChainID: chainID, Epoch: epoch, Validators: vals, Params: p, Verifier: v}
	c.w, c.f, c.q = order.Quorums(ws)
	return c, nil
}

// clone returns a copy with its own verification counter.
func (c *Committee) clone() *Committee { d := *c; d.verifies = 0; return &d }

// W, F and Q return the total weight, the tolerated faulty weight and the
// quorum weight.
func (c *Committee) W() uint64 { return c.w }

// F is the largest faulty weight tolerated.
func (c *Committee) F() uint64 { return c.f }

// Q is the quorum weight W - F.
func (c *Committee) Q() uint64 { return c.q }

// Verifies returns how many signature verifications this committee value
// has performed.
func (c *Committee) Verifies() uint64 { return c.verifies }

// Leader returns the anchor author of even round r.
func (c *Committee) Leader(r uint64) uint32 { return uint32((r / 2) % uint64(len(c.Validators))) }

func (c *Committee) weights() []uint64 {
	ws := make([]uint64, len(c.Validators))
	for i, v := range c.Validators {
		ws[i] = v.Weight
	}
	return ws
}
