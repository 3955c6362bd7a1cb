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

// msgReader walks data; bad is set at the first item not of the expected
// canonical shape, after which every read is a no-op.
type msgReader struct {
	data []byte
	off  int
	bad  bool
}

// decodeMessageFast decodes data as a Message, or reports ok false when
// data is not in the shape it reads (not necessarily invalid).
func decodeMessageFast(data []byte) (m *Message, ok bool) {
	r := &msgReader{data: data}
	if !r.arrayOf(4) {
		return nil, false
	}
	m = new(Message)
	if !r.null() {
		m.Header = new(Header)
		r.header(m.Header)
	}
	if !r.null() {
		m.Vote = r.vote()
	}
	if !r.null() {
		m.Cert = r.cert()
	}
	if !r.null() {
		// A checkpoint vote's state root has its own encoding
		// (types.Root's multihash); one vote per validator per
		// checkpoint is too few to be worth reading it twice.
		return nil, false
	}
	if r.bad || r.off != len(data) {
		return nil, false
	}
	return m, true
}

func (r *msgReader) header(h *Header) {
	r.arrayOf(8)
	h.Round = r.uint(math.MaxUint64)
	h.Author = uint32(r.uint(math.MaxUint32))
	h.Time = r.int64()
	h.SelfParent = r.digest()
	h.SelfParentRound = r.uint(math.MaxUint64)
	if !r.null() {
		// A digest takes at least 34 bytes: the count is bounded by the
		// input before anything is allocated.
		n := r.count(34)
		h.Parents = make([]Digest, n)
		for i := range h.Parents {
			h.Parents[i] = r.digest()
		}
	}
	if !r.null() {
		n := r.count(1 + 34 + 1) // array head, TxID, TRecv
		h.Acks = make([]Ack, n)
		for i := range h.Acks {
			a := &h.Acks[i]
			r.arrayOf(2)
			a.TxID = TxID(r.digest())
			a.TRecv = r.int64()
		}
	}
	h.Sig = r.bytesOrNil()
}

func (r *msgReader) vote() *Vote {
	v := new(Vote)
	r.arrayOf(5)
	v.HeaderDigest = r.digest()
	v.Round = r.uint(math.MaxUint64)
	v.Author = uint32(r.uint(math.MaxUint32))
	v.Voter = uint32(r.uint(math.MaxUint32))
	v.Sig = r.bytesOrNil()
	return v
}

func (r *msgReader) cert() *Certificate {
	c := new(Certificate)
	r.arrayOf(3)
	r.header(&c.Header)
	if !r.null() {
		c.Signers = make([]uint32, r.count(1))
		for i := range c.Signers {
			c.Signers[i] = uint32(r.uint(math.MaxUint32))
		}
	}
	if !r.null() {
		c.Sigs = make([][]byte, r.count(1))
		for i := range c.Sigs {
			c.Sigs[i] = r.bytesOrNil()
		}
	}
	return c
}

// head reads an item head of major type major with its shortest argument.
func (r *msgReader) head(major byte) (n uint64, ok bool) {
	if r.bad || r.off >= len(r.data) || r.data[r.off]>>5 != major {
		r.bad = true
		return 0, false
	}
	info := r.data[r.off] & 0x1f
	r.off++
	var size int
	switch {
	case info < 24:
		return uint64(info), true
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default: // indefinite or reserved
		r.bad = true
		return 0, false
	}
	if len(r.data)-r.off < size {
		r.bad = true
		return 0, false
	}
	for _, c := range r.data[r.off : r.off+size] {
		n = n<<8 | uint64(c)
	}
	r.off += size
	// Shortest form: the argument needs this many bytes.
	if (size == 1 && n < 24) || (size > 1 && n>>(4*size) == 0) {
		r.bad = true
		return 0, false
	}
	return n, true
}

// arrayOf reads the head of an array of exactly n items.
func (r *msgReader) arrayOf(n uint64) bool {
	if got, ok := r.head(4); !ok || got != n {
		r.bad = true
		return false
	}
	return true
}

// count reads the head of an array whose items take at least min bytes
// each, and returns its length, 0 if it cannot fit in the rest of the
// input or is over types.CBORMaxItems (which Decode refuses).
func (r *msgReader) count(min int) int {
	n, ok := r.head(4)
	if !ok || n > uint64(len(r.data)-r.off)/uint64(min) || n > types.CBORMaxItems {
		r.bad = true
		return 0
	}
	return int(n)
}

// uint reads an unsigned integer of at most max.
func (r *msgReader) uint(max uint64) uint64 {
	n, ok := r.head(0)
	if !ok || n > max {
		r.bad = true
		return 0
	}
	return n
}

// int64 reads a signed integer (major type 0 or 1) that fits int64.
func (r *msgReader) int64() int64 {
	if r.bad || r.off >= len(r.data) {
		r.bad = true
		return 0
	}
	major := r.data[r.off] >> 5
	if major != 0 && major != 1 {
		r.bad = true
		return 0
	}
	n, ok := r.head(major)
	if !ok || n > math.MaxInt64 {
		r.bad = true
		return 0
	}
	if major == 1 {
		return -1 - int64(n)
	}
	return int64(n)
}

// str reads the content of a byte string, as a slice of data.
func (r *msgReader) str() []byte {
	n, ok := r.head(2)
	if !ok || n > uint64(len(r.data)-r.off) {
		r.bad = true
		return nil
	}
	s := r.data[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

// null reads the null item if it is next.
func (r *msgReader) null() bool {
	if !r.bad && r.off < len(r.data) && r.data[r.off] == 0xf6 {
		r.off++
		return true
	}
	return false
}

// bytesOrNil reads a byte string (empty but not nil when of length 0) or
// null (nil), as Decode fills a []byte. The result is a copy: the message
// must not alias the caller's buffer.
func (r *msgReader) bytesOrNil() []byte {
	if r.null() {
		return nil
	}
	s := r.str()
	if r.bad {
		return nil
	}
	return append(make([]byte, 0, len(s)), s...)
}

// digest reads a byte string of exactly 32 bytes.
func (r *msgReader) digest() (d [32]byte) {
	s := r.str()
	if len(s) != len(d) {
		r.bad = true
		return d
	}
	return [32]byte(s)
}
