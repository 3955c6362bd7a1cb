package sdk

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/types"
)

// Checkpoint errors.
var (
	ErrCheckpoint = errors.New("sdk: checkpoint certificate rejected")
	ErrNoQuorum   = errors.New("sdk: checkpoint signers below quorum")
	ErrCommittee  = errors.New("sdk: bad committee")
)

// Validator is one member of the committee the client trusts.
type Validator struct {
	Key    ed25519.PublicKey
	Weight uint64
}

// Committee is the validator set whose checkpoints the client accepts:
// the chain id, the epoch and the validators in index order, as in the
// chain's genesis.
type Committee struct {
	ChainID    string
	Epoch      uint64
	Validators []Validator
}

// Quorum is the weight a certificate needs: total - f, f = (total-1)/3,
// as the consensus computes it.
func (c *Committee) Quorum() uint64 {
	var w uint64
	for _, v := range c.Validators {
		w += v.Weight
	}
	if w == 0 {
		return 0
	}
	return w - (w-1)/3
}

// CheckpointCert mirrors the node's canonical checkpoint certificate
// (consensus.CheckpointCert): a state root at a height, signed by a quorum.
type CheckpointCert struct {
	_                 struct{} `cbor:",toarray"`
	Height            uint64
	BlockID           [32]byte
	StateRoot         types.Root
	OrderingStateHash [32]byte
	Signers           []uint32 // ascending, distinct
	Sigs              [][]byte
}

// checkpointVote mirrors consensus.CheckpointVote: each signer signs its
// encoding with Sig unset.
type checkpointVote struct {
	_                 struct{} `cbor:",toarray"`
	Height            uint64
	BlockID           [32]byte
	StateRoot         types.Root
	OrderingStateHash [32]byte
	Signer            uint32
	Sig               []byte
}

const tagCheckpoint = "kairos/consensus/checkpoint/v1"

// signingHash is sha256(tag ‖ 0 ‖ len(chain) ‖ chain ‖ epoch ‖ body), the
// consensus domain separation.
func (c *Committee) signingHash(body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagCheckpoint))
	h.Write([]byte{0})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(c.ChainID))))
	h.Write([]byte(c.ChainID))
	h.Write(binary.BigEndian.AppendUint64(nil, c.Epoch))
	h.Write(body)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// VerifyCheckpoint checks cc's signers (known, ascending, distinct), their
// weight against the quorum and every signature.
func (c *Committee) VerifyCheckpoint(cc *CheckpointCert) error {
	if len(c.Validators) == 0 {
		return fmt.Errorf("%w: no validators", ErrCommittee)
	}
	if len(cc.Signers) != len(cc.Sigs) {
		return fmt.Errorf("%w: %d signers, %d signatures", ErrCheckpoint, len(cc.Signers), len(cc.Sigs))
	}
	var w uint64
	for i, s := range cc.Signers {
		if int(s) >= len(c.Validators) {
			return fmt.Errorf("%w: unknown signer %d", ErrCheckpoint, s)
		}
		if i > 0 && s <= cc.Signers[i-1] {
			return fmt.Errorf("%w: signers not ascending", ErrCheckpoint)
		}
		w += c.Validators[s].Weight
	}
	if q := c.Quorum(); w < q {
		return fmt.Errorf("%w: weight %d < %d", ErrNoQuorum, w, q)
	}
	for i, s := range cc.Signers {
		v := checkpointVote{Height: cc.Height, BlockID: cc.BlockID, StateRoot: cc.StateRoot,
			OrderingStateHash: cc.OrderingStateHash, Signer: s}
		d := c.signingHash(types.MustEncode(&v))
		key := c.Validators[s].Key
		if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, d[:], cc.Sigs[i]) {
			return fmt.Errorf("%w: bad signature of validator %d", ErrCheckpoint, s)
		}
	}
	return nil
}
