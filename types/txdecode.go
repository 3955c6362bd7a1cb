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
	CanonReader
	buf []byte
}

// decodeTxFast decodes data as a Tx, or reports ok false when data is not
// in the shape it reads (not necessarily invalid: Decode decides).
func decodeTxFast(data []byte) (tx *Tx, ok bool) {
	r := &txReader{CanonReader: CanonReader{Data: data}}
	if !r.ArrayOf(2) || !r.ArrayOf(7) {
		return nil, false
	}
	r.buf = append([]byte(nil), data...)
	tx = new(Tx)
	b := &tx.Body
	b.ChainID = r.text()
	b.Sender = r.bytesOrNil()
	b.Nonce = r.Uint(math.MaxUint64)
	b.ValidUntil = r.Int64()
	b.GasLimit = r.Uint(math.MaxUint64)
	if !r.Null() {
		n := r.Count(4)
		if r.Bad {
			return nil, false
		}
		b.Access = make([]Access, n)
		for i := range b.Access {
			a := &b.Access[i]
			r.ArrayOf(4)
			a.Module = Address(r.Bytes32())
			a.Key = r.bytesOrNil()
			a.Prefix = r.Bool()
			a.Mode = AccessMode(r.Uint(math.MaxUint8))
		}
	}
	p := &b.Payload
	r.ArrayOf(6)
	p.Kind = PayloadKind(r.Uint(math.MaxUint8))
	p.Module = Address(r.Bytes32())
	p.Code = r.bytesOrNil()
	p.Method = r.text()
	p.Args = r.bytesOrNil()
	p.Admin = Address(r.Bytes32())
	tx.Sig = r.bytesOrNil()
	if !r.Done() {
		return nil, false
	}
	return tx, true
}

// str reads the content of a byte (major 2) or text (major 3) string, as a
// slice of buf.
func (r *txReader) str(major byte) []byte {
	s := r.Str(major)
	if r.Bad {
		return nil
	}
	return r.buf[r.Off-len(s) : r.Off : r.Off]
}

// bytesOrNil reads a byte string (empty but not nil when of length 0) or
// null (nil), as Decode fills a []byte.
func (r *txReader) bytesOrNil() []byte {
	if r.Null() {
		return nil
	}
	return r.str(2)
}

// text reads a text string of valid UTF-8.
func (r *txReader) text() string {
	s := r.str(3)
	if !utf8.Valid(s) {
		r.Bad = true
		return ""
	}
	return string(s)
}
