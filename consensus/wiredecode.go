package consensus

import (
	"math"

	"github.com/kairos-network/kairos/types"
)

// Every consensus message a validator receives is decoded once (a
// certificate once per node, then cached by its hash), and the generic
// types.Decode spends most of that on reflection and on re-encoding the
// value to test canonical form; a header carries up to MaxAcks acks, so
// this was ~3% of a validator's CPU at 5 000 tx/s. decodeMessageFast reads
// header, vote and certificate messages directly (a checkpoint vote it
// leaves to types.Decode) and accepts only the form the canonical encoder
// writes (shortest heads, definite lengths, exactly the fields of
// each array, byte arrays of their exact length, null only where a nil
// pointer or slice encodes to it), so anything it accepts is a canonical
// encoding that types.Decode accepts with the same value. For anything
// else it gives up without judging, and DecodeMessage uses types.Decode,
// whose verdict and error stand. TestDecodeMessageFastMatchesDecode and
// FuzzDecodeMessageFast compare the two. (types/txdecode.go does the same
// for transactions.)

// msgReader reads the shapes of consensus messages with a
// types.CanonReader (shared with the transaction decoder).
type msgReader struct{ types.CanonReader }

// decodeMessageFast decodes data as a Message, or reports ok false when
// data is not in the shape it reads (not necessarily invalid).
func decodeMessageFast(data []byte) (m *Message, ok bool) {
	r := &msgReader{types.CanonReader{Data: data}}
	if !r.ArrayOf(4) {
		return nil, false
	}
	m = new(Message)
	if !r.Null() {
		m.Header = new(Header)
		r.header(m.Header)
	}
	if !r.Null() {
		m.Vote = r.vote()
	}
	if !r.Null() {
		m.Cert = r.cert()
	}
	if !r.Null() {
		// A checkpoint vote's state root has its own encoding
		// (types.Root's multihash); one vote per validator per
		// checkpoint is too few to be worth reading it twice.
		return nil, false
	}
	if !r.Done() {
		return nil, false
	}
	return m, true
}

func (r *msgReader) header(h *Header) {
	r.ArrayOf(8)
	h.Round = r.Uint(math.MaxUint64)
	h.Author = uint32(r.Uint(math.MaxUint32))
	h.Time = r.Int64()
	h.SelfParent = r.Bytes32()
	h.SelfParentRound = r.Uint(math.MaxUint64)
	if !r.Null() {
		// A digest takes at least 34 bytes: the count is bounded by the
		// input before anything is allocated.
		n := r.Count(34)
		h.Parents = make([]Digest, n)
		for i := range h.Parents {
			h.Parents[i] = r.Bytes32()
		}
	}
	if !r.Null() {
		n := r.Count(1 + 34 + 1) // array head, TxID, TRecv
		h.Acks = make([]Ack, n)
		for i := range h.Acks {
			a := &h.Acks[i]
			r.ArrayOf(2)
			a.TxID = TxID(r.Bytes32())
			a.TRecv = r.Int64()
		}
	}
	h.Sig = r.bytesOrNil()
}

func (r *msgReader) vote() *Vote {
	v := new(Vote)
	r.ArrayOf(5)
	v.HeaderDigest = r.Bytes32()
	v.Round = r.Uint(math.MaxUint64)
	v.Author = uint32(r.Uint(math.MaxUint32))
	v.Voter = uint32(r.Uint(math.MaxUint32))
	v.Sig = r.bytesOrNil()
	return v
}

func (r *msgReader) cert() *Certificate {
	c := new(Certificate)
	r.ArrayOf(3)
	r.header(&c.Header)
	if !r.Null() {
		c.Signers = make([]uint32, r.Count(1))
		for i := range c.Signers {
			c.Signers[i] = uint32(r.Uint(math.MaxUint32))
		}
	}
	if !r.Null() {
		c.Sigs = make([][]byte, r.Count(1))
		for i := range c.Sigs {
			c.Sigs[i] = r.bytesOrNil()
		}
	}
	return c
}

// bytesOrNil reads a byte string (empty but not nil when of length 0) or
// null (nil), as Decode fills a []byte. The result is a copy: the message
// must not alias the caller's buffer.
func (r *msgReader) bytesOrNil() []byte {
	s := r.BytesOrNil()
	if s == nil || r.Bad {
		return nil
	}
	return append(make([]byte, 0, len(s)), s...)
}
