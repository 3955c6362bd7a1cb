package consensus

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/consensus/order"
)

// sampleOrderingState is a well-formed state of a 4-validator committee at
// anchor 60 (gc round 10 with the default depth 50).
func sampleOrderingState(c *Committee) *OrderingState {
	return &OrderingState{Height: 3, LastAnchor: 60, SubIndex: 30, GCRound: 10, Committed: []CommittedCert{{Round: 10, Digest: Digest{1}}, {Round: 10, Digest: Digest{2}}, {Round: 60, Digest: Digest{1}}},
		Order: order.State{T: []int64{1, 2, 3, 4}, Height: 3, LastB: 5,
			Pending: []order.Entry{{ID: TxID{9}, Acks: []int64{1, 0, 0, 0}, Set: []bool{true, false, false, false}}},
			Gone:    append(make([]byte, 32), 0, 0, 0, 0, 0, 0, 0, 1)}}
}

// TestDecodeOrderingStateRejects: every rule of a state taken from a peer
// or a disk, each with its sentinel.
func TestDecodeOrderingStateRejects(t *testing.T) {
	c, s := testCommittee(t, 4)
	if st, err := c.DecodeOrderingState(sampleOrderingState(c).Encode()); err != nil {
		t.Fatalf("good state: %v", err)
	} else if _, err := New(Config{Committee: c, Me: 0, Signer: s[0], Restore: st}); err != nil {
		t.Fatalf("good state does not restore: %v", err)
	}
	tooMany := make([]CommittedCert, 4*51+1)
	for i := range tooMany {
		tooMany[i] = CommittedCert{Round: 10 + uint64(i/5), Digest: Digest{byte(i)}}
	}
	for _, tc := range []struct {
		name string
		bad  func(*OrderingState)
		want error
	}{
		{"height differs from the layer's", func(s *OrderingState) { s.Height = 4 }, ErrMalformed},
		{"gc round not implied by the anchor", func(s *OrderingState) { s.GCRound = 11 }, ErrMalformed},
		{"committed not ascending", func(s *OrderingState) { s.Committed[0], s.Committed[1] = s.Committed[1], s.Committed[0] }, ErrMalformed},
		{"committed duplicate", func(s *OrderingState) { s.Committed[1] = s.Committed[0] }, ErrMalformed},
		{"committed below the gc round", func(s *OrderingState) { s.Committed[0].Round = 9 }, ErrMalformed},
		{"committed above the anchor", func(s *OrderingState) { s.Committed[2].Round = 61 }, ErrMalformed},
		{"more committed than the window holds", func(s *OrderingState) { s.Committed = tooMany }, ErrTooLarge},
		{"layer state for 3 validators", func(s *OrderingState) { s.Order.T = s.Order.T[:3] }, ErrMalformed},
	} {
		st := sampleOrderingState(c)
		tc.bad(st)
		_, err := c.DecodeOrderingState(st.Encode())
		if err == nil {
			// Shape checks pass; the layer's own checks run on restore.
			_, err = New(Config{Committee: c, Me: 0, Signer: s[0], Restore: st})
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := c.DecodeOrderingState(make([]byte, MaxOrderingStateBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := c.DecodeOrderingState([]byte{0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
}

// BenchmarkOrderingStateEncode measures what every block costs the
// executor for its checkpoint vote: encoding and hashing the ordering
// state, whose size is dominated by the released ids the layer remembers
// (rate × 2 × tx_expiry; 20 000 at 1 000 tx/s). The baseline row encodes
// an empty state in the same run.
func BenchmarkOrderingStateEncode(b *testing.B) {
	c, _ := testCommittee(b, 4)
	for _, gone := range []int{0, 2_000, 20_000} {
		st := sampleOrderingState(c)
		st.Order.Gone = make([]byte, 40*gone) // the layer's records: id ‖ ts
		for i := 0; i < gone; i++ {
			id := txidN(i)
			copy(st.Order.Gone[40*i:], id[:])
		}
		b.Run(fmt.Sprintf("released=%d", gone), func(b *testing.B) {
			b.ReportAllocs()
			var n int
			for b.Loop() {
				enc := st.Encode()
				n = len(enc)
				_ = sha256.Sum256(enc)
			}
			b.ReportMetric(float64(n), "bytes")
		})
	}
}
