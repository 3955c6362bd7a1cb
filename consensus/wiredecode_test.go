package consensus

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// randomMessage builds a message whose fields take the values where
// encodings differ: nil against empty slices, integers at every head
// length and both signs, zero and non-zero digests. Usually one payload
// is set; sometimes none or several (DecodeMessage refuses those after
// decoding, but both decoders must still agree on them). Signatures are
// random bytes (decoding does not check them).
func randomMessage(rng *rand.Rand) *Message {
	ints := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64, math.MaxUint64}
	pick := func() uint64 { return ints[rng.IntN(len(ints))] }
	u32 := func() uint32 { return uint32(pick()) }
	i64 := func() int64 {
		v := int64(pick() & math.MaxInt64)
		if rng.IntN(3) == 0 {
			return -1 - v
		}
		return v
	}
	bytesOf := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		default:
			b := make([]byte, []int{1, 23, 64, 300}[rng.IntN(4)])
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		}
	}
	digest := func() (d [32]byte) {
		if rng.IntN(3) > 0 {
			d[rng.IntN(32)] = byte(1 + rng.IntN(255))
		}
		return d
	}
	// length returns -1 (nil) or a count with heads of 1 and 2 bytes.
	length := func() int { return []int{-1, 0, 1, 3, 24, 30}[rng.IntN(6)] }
	header := func() Header {
		h := Header{Round: pick(), Author: u32(), Time: i64(), SelfParent: digest(), SelfParentRound: pick(), Sig: bytesOf()}
		if n := length(); n >= 0 {
			h.Parents = make([]Digest, n)
			for i := range h.Parents {
				h.Parents[i] = digest()
			}
		}
		if n := length(); n >= 0 {
			h.Acks = make([]Ack, n)
			for i := range h.Acks {
				h.Acks[i] = Ack{TxID: digest(), TRecv: i64()}
			}
		}
		return h
	}
	m := &Message{}
	set := []int{rng.IntN(4)}
	switch rng.IntN(10) {
	case 0:
		set = nil
	case 1:
		set = append(set, rng.IntN(4))
	}
	for _, k := range set {
		switch k {
		case 0:
			h := header()
			m.Header = &h
		case 1:
			m.Vote = &Vote{HeaderDigest: digest(), Round: pick(), Author: u32(), Voter: u32(), Sig: bytesOf()}
		case 2:
			c := &Certificate{Header: header()}
			if n := length(); n >= 0 {
				c.Signers = make([]uint32, n)
				for i := range c.Signers {
					c.Signers[i] = u32()
				}
			}
			if n := length(); n >= 0 {
				c.Sigs = make([][]byte, n)
				for i := range c.Sigs {
					c.Sigs[i] = bytesOf()
				}
			}
			m.Cert = c
		default:
			m.Checkpoint = &CheckpointVote{Height: pick(), BlockID: digest(), StateRoot: types.Root(digest()),
				OrderingStateHash: digest(), Signer: u32(), Sig: bytesOf()}
		}
	}
	return m
}

// checkFastAgrees fails if decodeMessageFast accepts data and types.Decode
// does not, or decodes it to another value.
func checkFastAgrees(t *testing.T, data []byte) (fastOK bool) {
	t.Helper()
	fast, ok := decodeMessageFast(data)
	var ref Message
	err := types.Decode(data, &ref)
	if ok && (err != nil || !reflect.DeepEqual(*fast, ref)) {
		t.Fatalf("%x: fast path accepted it as %+v; Decode: %v, %+v", data, *fast, err, ref)
	}
	return ok
}

// TestDecodeMessageFastMatchesDecode: the fast path takes every encoding
// the canonical encoder writes for random messages without a checkpoint
// vote (those it leaves to types.Decode) and decodes it to
// types.Decode's value; on mutations of those encodings (bytes changed,
// cut, inserted) it accepts only what types.Decode accepts, with the same
// value.
func TestDecodeMessageFastMatchesDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 7))
	accepted := 0
	for i := range 1000 {
		msg := randomMessage(rng)
		data := EncodeMessage(msg)
		if !checkFastAgrees(t, data) && msg.Checkpoint == nil {
			t.Fatalf("message %d: fast path refused a canonical encoding %x", i, data)
		}
		for range 10 {
			m := append([]byte(nil), data...)
			switch rng.IntN(3) {
			case 0:
				m[rng.IntN(len(m))] = byte(rng.Uint32())
			case 1:
				m = m[:rng.IntN(len(m))]
			default:
				at := rng.IntN(len(m) + 1)
				m = append(m[:at], append([]byte{byte(rng.Uint32())}, m[at:]...)...)
			}
			if checkFastAgrees(t, m) {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Fatal("no mutation was accepted: the comparison saw only refusals")
	}
}

// TestDecodeMessageFastRefusesNonCanonical: forms the fast path could read
// but the canonical encoder never writes are left to types.Decode, which
// refuses them, so DecodeMessage does too.
func TestDecodeMessageFastRefusesNonCanonical(t *testing.T) {
	v := &Vote{HeaderDigest: Digest{1}, Round: 5, Author: 1, Voter: 2, Sig: []byte{7}}
	data := EncodeMessage(&Message{Vote: v})
	// [null, [digest, round, ...], null, null]: the round (5) follows the
	// outer head, the null, the vote's head and the 34-byte digest.
	at := 1 + 1 + 1 + 34
	if data[at] != 0x05 {
		t.Fatalf("layout changed: byte %d is %x", at, data[at])
	}
	long := append(append(append([]byte(nil), data[:at]...), 0x18, 0x05), data[at+1:]...) // 5 in two bytes
	indef := append(append([]byte(nil), data[:2]...), append([]byte{0x9f}, append(append([]byte(nil), data[3:len(data)-2]...), 0xff)...)...)
	indef = append(indef, data[len(data)-2:]...)
	shortDigest := append(append(append([]byte(nil), data[:3]...), 0x41, 0x01), data[3+34:]...)
	trailing := append(append([]byte(nil), data...), 0)
	for name, m := range map[string][]byte{"long head": long, "indefinite vote": indef, "short digest": shortDigest,
		"trailing byte": trailing} {
		if _, ok := decodeMessageFast(m); ok {
			t.Fatalf("%s: fast path accepted it", name)
		}
		if _, err := DecodeMessage(m); err == nil {
			t.Fatalf("%s: DecodeMessage accepted it", name)
		}
	}
}

// TestDecodeMessageCopiesBytes: a decoded message does not alias the
// caller's buffer (transports reuse theirs).
func TestDecodeMessageCopiesBytes(t *testing.T) {
	v := &Vote{HeaderDigest: Digest{1}, Round: 5, Author: 1, Voter: 2, Sig: []byte{7, 8, 9}}
	data := EncodeMessage(&Message{Vote: v})
	m, err := DecodeMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	clear(data)
	if !reflect.DeepEqual(m.Vote, v) {
		t.Fatalf("vote changed with the input buffer: %+v", m.Vote)
	}
}

// FuzzDecodeMessageFast: whatever the fast path accepts, types.Decode
// accepts with the same value.
func FuzzDecodeMessageFast(f *testing.F) {
	for _, b := range fastCorpus() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkFastAgrees(t, data) })
}

// fastCorpus is FuzzDecodeMessageFast's seed corpus: one random message
// of each kind.
func fastCorpus() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 1))
	out := map[string][]byte{}
	for len(out) < 4 {
		m := randomMessage(rng)
		switch {
		case m.Header != nil && m.Vote == nil && m.Cert == nil && m.Checkpoint == nil:
			out["header"] = EncodeMessage(m)
		case m.Vote != nil && m.Header == nil && m.Cert == nil && m.Checkpoint == nil:
			out["vote"] = EncodeMessage(m)
		case m.Cert != nil && m.Header == nil && m.Vote == nil && m.Checkpoint == nil:
			out["cert"] = EncodeMessage(m)
		case m.Checkpoint != nil && m.Header == nil && m.Vote == nil && m.Cert == nil:
			out["checkpoint"] = EncodeMessage(m)
		}
	}
	return out
}

// BenchmarkDecodeMessage compares types.Decode (the baseline) with the
// fast path on a header with 1 000 acks, the size a validator sends at
// ~5 000 tx/s.
func BenchmarkDecodeMessage(b *testing.B) {
	h := &Header{Round: 9, Author: 1, Time: 1_700_000_000_000_000_000, SelfParent: Digest{1}, SelfParentRound: 8,
		Parents: []Digest{{2}, {3}, {4}}, Sig: make([]byte, 64)}
	for i := range 1000 {
		h.Acks = append(h.Acks, Ack{TxID: txidN(i), TRecv: 1_699_999_999_000_000_000 + int64(i)})
	}
	data := EncodeMessage(&Message{Header: h})
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m Message
			if err := types.Decode(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeMessageFast(data); !ok {
				b.Fatal("refused")
			}
		}
	})
}
