package consensus

import (
	"fmt"
	"slices"

	"github.com/kairos-network/kairos/types"
)

// CheckpointCert is a checkpoint certificate: checkpoint votes of weight
// >= Q that agree on (Height, BlockID, StateRoot, OrderingStateHash).
// Clients verify state proofs against it; a node whose own state root
// differs from a certified one has a determinism bug and must stop.
type CheckpointCert struct {
	_                 struct{} `cbor:",toarray"`
	Height            uint64
	BlockID           [32]byte
	StateRoot         types.Root
	OrderingStateHash [32]byte
	Signers           []uint32 // ascending, distinct
	Sigs              [][]byte
}

// MaxCheckpointHeights bounds the heights a Checkpoints collector keeps
// votes for; votes for heights further below the highest seen are dropped.
const MaxCheckpointHeights = 64

// CheckCheckpointCert verifies a checkpoint certificate.
func (c *Committee) CheckCheckpointCert(cc *CheckpointCert) error {
	if len(cc.Signers) != len(cc.Sigs) {
		return fmt.Errorf("%w: %d signers, %d sigs", ErrMalformed, len(cc.Signers), len(cc.Sigs))
	}
	var w uint64
	for i, s := range cc.Signers {
		if int(s) >= len(c.Validators) {
			return fmt.Errorf("%w: checkpoint signer %d", ErrUnknown, s)
		}
		if i > 0 && s <= cc.Signers[i-1] {
			return fmt.Errorf("%w: checkpoint signers not ascending", ErrMalformed)
		}
		w += c.Validators[s].Weight
	}
	if w < c.q {
		return fmt.Errorf("%w: checkpoint weight %d < %d", ErrNoQuorum, w, c.q)
	}
	for i, s := range cc.Signers {
		v := CheckpointVote{Height: cc.Height, BlockID: cc.BlockID, StateRoot: cc.StateRoot,
			OrderingStateHash: cc.OrderingStateHash, Signer: s, Sig: cc.Sigs[i]}
		if err := c.CheckCheckpointVote(&v); err != nil {
			return err
		}
	}
	return nil
}

type checkpointKey struct {
	block, ordering [32]byte
	root            types.Root
}

// Checkpoints collects checkpoint votes into certificates. Not safe for
// concurrent use.
type Checkpoints struct {
	c       *Committee
	votes   map[uint64]map[checkpointKey]map[uint32][]byte
	done    map[uint64]bool
	highest uint64
}

// NewCheckpoints returns an empty collector.
func NewCheckpoints(c *Committee) *Checkpoints {
	return &Checkpoints{c: c, votes: map[uint64]map[checkpointKey]map[uint32][]byte{}, done: map[uint64]bool{}}
}

// Add checks a vote and returns the certificate when this vote completes a
// quorum of matching votes for its height (once per height).
func (k *Checkpoints) Add(v *CheckpointVote) (*CheckpointCert, error) {
	if err := k.c.CheckCheckpointVote(v); err != nil {
		return nil, err
	}
	if v.Height+MaxCheckpointHeights <= k.highest || k.done[v.Height] {
		return nil, nil
	}
	k.highest = max(k.highest, v.Height)
	for h := range k.votes {
		if h+MaxCheckpointHeights <= k.highest {
			delete(k.votes, h)
			delete(k.done, h)
		}
	}
	key := checkpointKey{block: v.BlockID, ordering: v.OrderingStateHash, root: v.StateRoot}
	if k.votes[v.Height] == nil {
		k.votes[v.Height] = map[checkpointKey]map[uint32][]byte{}
	}
	byKey := k.votes[v.Height]
	if byKey[key] == nil {
		byKey[key] = map[uint32][]byte{}
	}
	byKey[key][v.Signer] = v.Sig
	var w uint64
	for s := range byKey[key] {
		w += k.c.Validators[s].Weight
	}
	if w < k.c.q {
		return nil, nil
	}
	cc := &CheckpointCert{Height: v.Height, BlockID: v.BlockID, StateRoot: v.StateRoot, OrderingStateHash: v.OrderingStateHash}
	for s := range byKey[key] {
		cc.Signers = append(cc.Signers, s)
	}
	slices.Sort(cc.Signers)
	for _, s := range cc.Signers {
		cc.Sigs = append(cc.Sigs, byKey[key][s])
	}
	k.done[v.Height] = true
	delete(k.votes, v.Height)
	return cc, nil
}
