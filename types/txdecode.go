package types

import (
	"math"
	"unicode/utf8"
)

// A transaction is decoded once per node on its way in and once more if a
// block body has to be fetched, and the generic Decode (scan, reflective
// decoder, re-encoding to test canonical form) cost ~3.5 µs and a dozen
// allocations of it. decodeTxFast reads the one shape a transaction has
// directly, and is sure of what it accepts: every item must be in the form
// the canonical encoder writes (shortest heads, definite lengths, exactly
// the fields of each array, byte arrays of their exact length, valid UTF-8
// text), so anything it accepts is a canonical encoding that Decode would
// accept with the same value. For anything else it gives up (ok false)
// without judging, and the caller uses Decode, whose verdict and error
// then stand. FuzzDecodeTxFast and
// TestDecodeTxFastMatchesDecode compare the two.

// txReader walks data; the decoded byte strings alias buf, one copy of
// data, so the transaction owns its bytes with a single allocation.
type txReader struct {
	data, buf []byte
	off       int
	bad       bool // not of the fast shape: fall back
}

// decodeTxFast decodes data as a Tx, or reports ok false when data is not
// in the shape it reads (not necessarily invalid: Decode decides).
func decodeTxFast(data []byte) (tx *Tx, ok bool) {
	r := &txReader{data: data}
	if !r.arrayOf(2) || !r.arrayOf(7) {
		return nil, false
	}
	r.buf = append([]byte(nil), data...)
	tx = new(Tx)
	b := &tx.Body
	b.ChainID = r.text()
	b.Sender = r.bytesOrNil()
	b.Nonce = r.uint(math.MaxUint64)
	b.ValidUntil = r.int64()
	b.GasLimit = r.uint(math.MaxUint64)
	if r.null() {
		b.Access = nil
	} else if n, ok := r.arrayHead(); ok && n <= uint64(len(data)-r.off)/4 && n <= CBORMaxItems {
		b.Access = make([]Access, n)
		for i := range b.Access {
			a := &b.Access[i]
			r.arrayOf(4)
			a.Module = r.address()
			a.Key = r.bytesOrNil()
			a.Prefix = r.bool()
			a.Mode = AccessMode(r.uint(math.MaxUint8))
		}
	} else {
		return nil, false
	}
	p := &b.Payload
	r.arrayOf(6)
	p.Kind = PayloadKind(r.uint(math.MaxUint8))
	p.Module = r.address()
	p.Code = r.bytesOrNil()
	p.Method = r.text()
	p.Args = r.bytesOrNil()
	p.Admin = r.address()
	tx.Sig = r.bytesOrNil()
	if r.bad || r.off != len(data) {
		return nil, false
	}
	return tx, true
}

// head reads an item head of major type major with its shortest argument.
func (r *txReader) head(major byte) (n uint64, ok bool) {
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

func (r *txReader) arrayHead() (uint64, bool) { return r.head(4) }

// arrayOf reads the head of an array of exactly n items.
func (r *txReader) arrayOf(n uint64) bool {
	if got, ok := r.head(4); !ok || got != n {
		r.bad = true
		return false
	}
	return true
}

// uint reads an unsigned integer of at most max.
func (r *txReader) uint(max uint64) uint64 {
	n, ok := r.head(0)
	if !ok || n > max {
		r.bad = true
		return 0
	}
	return n
}

// int64 reads a signed integer (major type 0 or 1) that fits int64.
func (r *txReader) int64() int64 {
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

// str reads the content of a byte (major 2) or text (major 3) string, as a
// slice of buf.
func (r *txReader) str(major byte) []byte {
	n, ok := r.head(major)
	if !ok || n > uint64(len(r.data)-r.off) {
		r.bad = true
		return nil
	}
	s := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return s
}

// null reads the null item if it is next.
func (r *txReader) null() bool {
	if !r.bad && r.off < len(r.data) && r.data[r.off] == 0xf6 {
		r.off++
		return true
	}
	return false
}

// bytesOrNil reads a byte string (empty but not nil when of length 0) or
// null (nil), as Decode fills a []byte.
func (r *txReader) bytesOrNil() []byte {
	if r.null() {
		return nil
	}
	return r.str(2)
}

// text reads a text string of valid UTF-8.
func (r *txReader) text() string {
	s := r.str(3)
	if !utf8.Valid(s) {
		r.bad = true
		return ""
	}
	return string(s)
}

// address reads a byte string of exactly AddressLen bytes.
func (r *txReader) address() (a Address) {
	s := r.str(2)
	if len(s) != AddressLen {
		r.bad = true
		return a
	}
	return Address(s)
}

// bool reads false or true.
func (r *txReader) bool() bool {
	if r.bad || r.off >= len(r.data) || (r.data[r.off] != 0xf4 && r.data[r.off] != 0xf5) {
		r.bad = true
		return false
	}
	r.off++
	return r.data[r.off-1] == 0xf5
}
