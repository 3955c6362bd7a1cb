package node

import (
	"errors"
	"testing"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/types"
)

// TestCheckBlockRun: a run of blocks fetched during catch-up is taken only
// when its last block is under a quorum certificate and every other block
// is at its height and the parent of the next.
func TestCheckBlockRun(t *testing.T) {
	comm := testCommittee(t, 4)
	certify := func(b *types.Block, signers int) consensus.CheckpointCert {
		cc := consensus.CheckpointCert{Height: b.Height, BlockID: b.ID()}
		for v := range signers {
			vote := &consensus.CheckpointVote{Height: b.Height, BlockID: b.ID(), Signer: uint32(v)}
			comm.SignCheckpoint(consensus.Ed25519Signer(validatorKey(v)), vote)
			cc.Signers, cc.Sigs = append(cc.Signers, uint32(v)), append(cc.Sigs, vote.Sig)
		}
		return cc
	}
	// chain returns blocks 5, 6, 7 linked by parent ids and the last one
	// certified by signers votes; mod changes the linked blocks, and relink
	// links them again afterwards.
	chain := func(signers int, mod func([]types.Block), relink bool) []syncBlockResponse {
		bs := []types.Block{{Height: 5, Time: 1}, {Height: 6, Time: 2}, {Height: 7, Time: 3}}
		link := func() {
			for i := 1; i < len(bs); i++ {
				bs[i].Parent = bs[i-1].ID()
			}
		}
		link()
		if mod != nil {
			mod(bs)
			if relink {
				link()
			}
		}
		run := make([]syncBlockResponse, len(bs))
		for i := range bs {
			run[i].Block = bs[i]
		}
		run[len(run)-1].Cert = certify(&bs[len(bs)-1], signers)
		return run
	}
	if err := checkBlockRun(comm, 5, chain(3, nil, false)); err != nil {
		t.Fatalf("good run: %v", err)
	}
	for name, run := range map[string][]syncBlockResponse{
		"no quorum on the last":     chain(2, nil, false),
		"a block replaced":          chain(3, func(bs []types.Block) { bs[0].Time = 9 }, false),
		"a middle block replaced":   chain(3, func(bs []types.Block) { bs[1].Watermark = 9 }, false),
		"a block of another height": chain(3, func(bs []types.Block) { bs[0].Height = 4 }, true),
	} {
		if err := checkBlockRun(comm, 5, run); !errors.Is(err, ErrSyncAnswer) {
			t.Errorf("%s: %v, want %v", name, err, ErrSyncAnswer)
		}
	}
}
