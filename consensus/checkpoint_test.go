package consensus

import (
	"errors"
	"testing"
)

func TestCheckpoints(t *testing.T) {
	c, s := testCommittee(t, 4)
	vote := func(signer uint32, height uint64, block byte) *CheckpointVote {
		v := &CheckpointVote{Height: height, BlockID: [32]byte{block}, OrderingStateHash: [32]byte{7}, Signer: signer}
		c.SignCheckpoint(s[signer], v)
		return v
	}
	k := NewCheckpoints(c)
	// Two matching and one disagreeing vote: no certificate.
	for _, v := range []*CheckpointVote{vote(0, 5, 1), vote(1, 5, 1), vote(1, 5, 1), vote(2, 5, 2)} {
		if cc, err := k.Add(v); err != nil || cc != nil {
			t.Fatalf("early certificate %v or error %v", cc, err)
		}
	}
	cc, err := k.Add(vote(3, 5, 1))
	if err != nil || cc == nil {
		t.Fatalf("no certificate at quorum: %v", err)
	}
	if len(cc.Signers) != 3 || cc.Signers[0] != 0 || cc.Signers[2] != 3 {
		t.Fatalf("signers %v", cc.Signers)
	}
	if err := c.CheckCheckpointCert(cc); err != nil {
		t.Fatal(err)
	}
	// Once per height.
	if again, _ := k.Add(vote(2, 5, 1)); again != nil {
		t.Fatal("second certificate for the same height")
	}
	bad := *cc
	bad.StateRoot[0] ^= 1
	if err := c.CheckCheckpointCert(&bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered certificate: %v", err)
	}
	short := *cc
	short.Signers, short.Sigs = cc.Signers[:2], cc.Sigs[:2]
	if err := c.CheckCheckpointCert(&short); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("short certificate: %v", err)
	}
	forged := vote(1, 6, 1)
	forged.Sig[3] ^= 1
	if _, err := k.Add(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged vote: %v", err)
	}
	// Old heights are forgotten, so memory stays bounded.
	for h := uint64(100); h < 100+3*MaxCheckpointHeights; h++ {
		if _, err := k.Add(vote(0, h, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if len(k.votes) > MaxCheckpointHeights {
		t.Fatalf("%d heights kept", len(k.votes))
	}
}
