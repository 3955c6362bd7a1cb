package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
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

// TestOrderingStateHashStreamed: Hash, which streams the released ids into
// the hash, equals the sha2-256 of the canonical encoding (what checkpoint
// certificates and state sync check) for states an ordering layer goes
// through over random apply and prune sequences, around every boundary of
// the byte-string header, and with the other fields random.
func TestOrderingStateHashStreamed(t *testing.T) {
	const n = 4
	rng := rand.New(rand.NewPCG(6, 0))
	o, err := order.New(order.Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 50, Retain: 400})
	if err != nil {
		t.Fatal(err)
	}
	largest := 0
	check := func(s *OrderingState) {
		t.Helper()
		largest = max(largest, len(s.Order.Gone))
		if got, want := s.Hash(), sha256.Sum256(s.Encode()); got != want {
			t.Fatalf("gone %d bytes, %d pending: Hash %x, sha256(Encode) %x", len(s.Order.Gone), len(s.Order.Pending), got, want)
		}
	}
	random := func(st order.State) *OrderingState {
		s := &OrderingState{Height: st.Height, LastAnchor: rng.Uint64(), SubIndex: rng.Uint64N(1 << 20), GCRound: rng.Uint64N(300), Order: st}
		for range rng.IntN(6) {
			s.Committed = append(s.Committed, CommittedCert{Round: rng.Uint64(), Digest: Digest{byte(rng.IntN(256))}})
		}
		return s
	}
	check(random(o.State())) // nothing released yet: Gone is nil
	now, id, released := int64(0), uint64(0), uint64(0)
	for step := range 1500 {
		// A few new ids, each acked by most validators (so most reach a
		// quorum and are released), and some acks of older ids (released
		// ones are ignored, the rest join their entries).
		var txs []TxID
		for range rng.IntN(8) {
			id++
			var x TxID
			binary.BigEndian.PutUint64(x[:], id)
			txs = append(txs, x)
		}
		var sub []order.Cert
		for j := range n {
			c := order.Cert{Author: j, Time: now + rng.Int64N(5)}
			for _, x := range txs {
				if rng.IntN(8) != 0 {
					c.Acks = append(c.Acks, order.Ack{TxID: x, TRecv: now - rng.Int64N(8)})
				}
			}
			if id > 0 && rng.IntN(4) == 0 {
				var x TxID
				binary.BigEndian.PutUint64(x[:], 1+rng.Uint64N(id))
				c.Acks = append(c.Acks, order.Ack{TxID: x, TRecv: now - rng.Int64N(8)})
			}
			sub = append(sub, c)
		}
		now += 1 + rng.Int64N(3)
		blk := o.Apply(sub)
		if blk != nil {
			released += uint64(len(blk.Txs))
		}
		if blk != nil || step%7 == 0 {
			check(random(o.State()))
		}
	}
	if largest <= 0xffff>>2 {
		t.Fatalf("largest released-id list %d bytes: the sequence never remembered many ids", largest)
	}
	if left := uint64(len(o.State().Gone) / 40); left >= released {
		t.Fatalf("%d released, %d remembered: nothing was pruned", released, left)
	}
	// Every length form of the header, at its bounds.
	for _, size := range []int{0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 20} {
		gone := make([]byte, size)
		for i := range gone {
			gone[i] = byte(rng.IntN(256))
		}
		if hdr, enc := types.AppendHead(nil, 2, uint64(size)), types.MustEncode(gone); !bytes.Equal(hdr, enc[:len(enc)-size]) {
			t.Errorf("header of %d bytes: %x, encoder %x", size, hdr, enc[:len(enc)-size])
		}
		s := random(sampleOrderingState(nil).Order)
		s.Order.Gone = gone
		check(s)
	}
	s := random(sampleOrderingState(nil).Order)
	s.Order.Gone = nil
	check(s)
}

// BenchmarkOrderingStateHash is the per-checkpoint cost of the ordering
// state with 100 000 released ids (5 000 tx/s retained 20 s): building it
// from the layer, then hashing it by encoding it whole (the old path) or
// by streaming the ids (Hash); and the hash of the ids alone. cpu-ns/op is
// the process's CPU (the collector's included), steadier than wall time on
// a shared machine.
func BenchmarkOrderingStateHash(b *testing.B) {
	const ids = 100_000
	st := order.State{T: []int64{1000, 1000, 1000, 1000}, Height: 7}
	for i := range ids {
		var x TxID
		binary.BigEndian.PutUint64(x[:], uint64(i))
		st.Gone = binary.BigEndian.AppendUint64(append(st.Gone, x[:]...), uint64(i))
	}
	for i := range 200 { // in flight: pending acks
		var x TxID
		binary.BigEndian.PutUint64(x[:], uint64(ids+i))
		st.Pending = append(st.Pending, order.Entry{ID: x, Acks: []int64{999, 0, 999, 0}, Set: []bool{true, false, true, false}, Newest: 999})
	}
	o, err := order.Restore(order.Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 1 << 40, Retain: 1 << 41}, &st)
	if err != nil {
		b.Fatal(err)
	}
	build := func() *OrderingState {
		return &OrderingState{Height: 7, LastAnchor: 100, SubIndex: 50, GCRound: 50, Order: o.State()}
	}
	b.Run("encode+sha256", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			s := build()
			_ = sha256.Sum256(s.Encode())
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("streamed", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			_ = build().Hash()
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
	// The floor while the hash covers every remembered id: sha2-256 of
	// the ids alone.
	b.Run("sha256-of-ids", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			_ = sha256.Sum256(st.Gone)
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
}

// processCPU returns the process's user + system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
