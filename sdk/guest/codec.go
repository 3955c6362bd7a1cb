package guest

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"
)

// Decoding errors. A Decoder keeps the first one; Decode and the state
// helpers wrap it with %w.
var (
	ErrShortInput    = errors.New("guest: input too short")
	ErrTrailingBytes = errors.New("guest: trailing bytes")
	ErrBadBool       = errors.New("guest: bool is not 0 or 1")
)

// decodeError is a decoding failure: one of the sentinels above plus where
// it happened, in one line (it becomes an abort message).
type decodeError struct {
	sentinel error
	detail   string
}

func (e *decodeError) Error() string { return e.sentinel.Error() + ": " + e.detail }
func (e *decodeError) Unwrap() error { return e.sentinel }

// Encoder appends fields in the layout of docs/abi.md section 7. The zero
// value is ready to use.
type Encoder struct{ buf []byte }

// NewEncoder returns an empty Encoder.
func NewEncoder() *Encoder { return &Encoder{} }

// Bytes returns the encoded message. The Encoder keeps appending to the
// same array, so callers that keep encoding must copy it first.
func (e *Encoder) Bytes() []byte { return e.buf }

// PutUint64 appends 8 big-endian bytes.
func (e *Encoder) PutUint64(v uint64) *Encoder {
	e.buf = binary.BigEndian.AppendUint64(e.buf, v)
	return e
}

// PutInt64 appends v in two's complement, 8 big-endian bytes.
func (e *Encoder) PutInt64(v int64) *Encoder { return e.PutUint64(uint64(v)) }

// PutUint32 appends 4 big-endian bytes.
func (e *Encoder) PutUint32(v uint32) *Encoder {
	e.buf = binary.BigEndian.AppendUint32(e.buf, v)
	return e
}

// PutBool appends 0x01 or 0x00.
func (e *Encoder) PutBool(v bool) *Encoder {
	b := byte(0)
	if v {
		b = 1
	}
	e.buf = append(e.buf, b)
	return e
}

// PutAddress appends the 32 raw bytes.
func (e *Encoder) PutAddress(a Address) *Encoder { e.buf = append(e.buf, a[:]...); return e }

// PutBytes appends a u32 length and the bytes.
func (e *Encoder) PutBytes(b []byte) *Encoder {
	e.PutUint32(uint32(len(b)))
	e.buf = append(e.buf, b...)
	return e
}

// PutString appends a u32 length and the bytes of s.
func (e *Encoder) PutString(s string) *Encoder {
	e.PutUint32(uint32(len(s)))
	e.buf = append(e.buf, s...)
	return e
}

// Decoder reads fields in the layout of docs/abi.md section 7. After the
// first error every read returns the zero value and Err keeps that error,
// so a method can read all its fields and check once.
type Decoder struct {
	buf    []byte
	off    int
	err    error
	copies bool // buf is reused (scratchBufs): Bytes returns copies
}

// NewDecoder reads b. Bytes and String results alias b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Err returns the first decoding error, if any.
func (d *Decoder) Err() error { return d.err }

// End records ErrTrailingBytes if unread bytes remain, and returns Err.
func (d *Decoder) End() error {
	if d.err == nil && d.off != len(d.buf) {
		d.err = &decodeError{ErrTrailingBytes, strconv.Itoa(len(d.buf)-d.off) + " unread bytes"}
	}
	return d.err
}

// take returns the next n bytes, or nil after recording ErrShortInput
// (short builds the message, off the common path).
func (d *Decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.buf)-d.off {
		d.short(n)
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

// short records ErrShortInput for a read of n bytes, unless an error is
// recorded already.
func (d *Decoder) short(n int) {
	if d.err == nil {
		d.err = &decodeError{ErrShortInput, "need " + strconv.Itoa(n) + " bytes at offset " + strconv.Itoa(d.off) + ", have " + strconv.Itoa(len(d.buf)-d.off)}
	}
}

// Uint64 reads 8 big-endian bytes.
func (d *Decoder) Uint64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Int64 reads an 8-byte two's complement integer.
func (d *Decoder) Int64() int64 { return int64(d.Uint64()) }

// Uint32 reads 4 big-endian bytes.
func (d *Decoder) Uint32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// Bool reads one byte, which must be 0 or 1.
func (d *Decoder) Bool() bool {
	b := d.take(1)
	if b == nil {
		return false
	}
	if b[0] > 1 {
		d.err = &decodeError{ErrBadBool, "at offset " + strconv.Itoa(d.off-1)}
		return false
	}
	return b[0] == 1
}

// Address reads 32 raw bytes.
func (d *Decoder) Address() (a Address) {
	copy(a[:], d.take(AddressLen))
	return a
}

// Bytes reads a u32 length and that many bytes, aliasing the input of
// NewDecoder. (The decoders of Map, Value and DecodeInput read reused
// buffers and return copies instead, so a Codec may keep what Bytes
// returns.)
func (d *Decoder) Bytes() []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	b := d.take(int(n))
	switch {
	case b == nil && d.err == nil:
		return []byte{}
	case d.copies && b != nil:
		return append([]byte{}, b...)
	}
	return b
}

// String reads a u32 length and that many bytes.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Codec encodes values of one type as a field sequence of docs/abi.md
// section 7. Map and Value use codecs for keys and values; composite codecs
// (Pair, custom ones from CodecOf) are built from the field reads.
type Codec[T any] interface {
	Append(e *Encoder, v T)
	Read(d *Decoder) T
}

type funcCodec[T any] struct {
	put func(*Encoder, T)
	get func(*Decoder) T
}

func (c funcCodec[T]) Append(e *Encoder, v T) { c.put(e, v) }
func (c funcCodec[T]) Read(d *Decoder) T      { return c.get(d) }

// CodecOf builds a Codec from two functions, typically for a module's own
// record types. get must read exactly the fields put writes, in order.
func CodecOf[T any](put func(*Encoder, T), get func(*Decoder) T) Codec[T] {
	return funcCodec[T]{put, get}
}

// The codecs of the field types. They are types of their own rather than
// CodecOf closures: one call less per field, which a wasm guest pays in
// metered instructions on every state access.
var (
	Uint64Codec  Codec[uint64]  = uint64Codec{}
	Int64Codec   Codec[int64]   = int64Codec{}
	Uint32Codec  Codec[uint32]  = uint32Codec{}
	BoolCodec    Codec[bool]    = boolCodec{}
	AddressCodec Codec[Address] = addressCodec{}
	StringCodec  Codec[string]  = stringCodec{}
	// BytesCodec copies what it reads, so a decoded value never aliases a
	// buffer the caller may reuse.
	BytesCodec Codec[[]byte] = bytesCodec{}
)

type (
	uint64Codec  struct{}
	int64Codec   struct{}
	uint32Codec  struct{}
	boolCodec    struct{}
	addressCodec struct{}
	stringCodec  struct{}
	bytesCodec   struct{}
)

func (uint64Codec) Append(e *Encoder, v uint64)   { e.PutUint64(v) }
func (uint64Codec) Read(d *Decoder) uint64        { return d.Uint64() }
func (int64Codec) Append(e *Encoder, v int64)     { e.PutInt64(v) }
func (int64Codec) Read(d *Decoder) int64          { return d.Int64() }
func (uint32Codec) Append(e *Encoder, v uint32)   { e.PutUint32(v) }
func (uint32Codec) Read(d *Decoder) uint32        { return d.Uint32() }
func (boolCodec) Append(e *Encoder, v bool)       { e.PutBool(v) }
func (boolCodec) Read(d *Decoder) bool            { return d.Bool() }
func (addressCodec) Append(e *Encoder, v Address) { e.PutAddress(v) }
func (addressCodec) Read(d *Decoder) Address      { return d.Address() }
func (stringCodec) Append(e *Encoder, v string)   { e.PutString(v) }
func (stringCodec) Read(d *Decoder) string        { return d.String() }
func (bytesCodec) Append(e *Encoder, v []byte)    { e.PutBytes(v) }
func (bytesCodec) Read(d *Decoder) []byte         { return append([]byte{}, d.Bytes()...) }

// Pair holds two values, for composite keys such as (owner, spender).
type Pair[A, B any] struct {
	First  A
	Second B
}

// PairCodec encodes a Pair as the first value's fields then the second's.
func PairCodec[A, B any](a Codec[A], b Codec[B]) Codec[Pair[A, B]] {
	return pairCodec[A, B]{a: a, b: b, ka: kindOf(a), kb: kindOf(b)}
}

// pairCodec keeps the field kinds of a and b (fixed.go), resolved when the
// codec is made (at package init), for Read's fast path.
type pairCodec[A, B any] struct {
	a      Codec[A]
	b      Codec[B]
	ka, kb fieldKind
}

func (c pairCodec[A, B]) Append(e *Encoder, p Pair[A, B]) {
	c.a.Append(e, p.First)
	c.b.Append(e, p.Second)
}

// Read decodes two fixed-size fields at once when both fit the input,
// without the field codecs' calls, and otherwise (or for a bool that is
// not 0 or 1) field by field, so errors and their messages are the same.
func (c pairCodec[A, B]) Read(d *Decoder) Pair[A, B] {
	if c.ka != kindNone && c.kb != kindNone && d.err == nil {
		na, n := c.ka.size(), c.ka.size()+c.kb.size()
		if n <= len(d.buf)-d.off {
			var p Pair[A, B]
			at := unsafe.Pointer(&d.buf[d.off])
			if c.ka.get(at, unsafe.Pointer(&p.First)) && c.kb.get(unsafe.Add(at, na), unsafe.Pointer(&p.Second)) {
				d.off += n
				return p
			}
		}
	}
	return Pair[A, B]{c.a.Read(d), c.b.Read(d)}
}

// Encode returns the encoding of v.
func Encode[T any](c Codec[T], v T) []byte {
	var e Encoder
	c.Append(&e, v)
	return e.buf
}

// Decode decodes all of b as one T: short input and trailing bytes are
// errors.
func Decode[T any](c Codec[T], b []byte) (T, error) {
	d := NewDecoder(b)
	v := c.Read(d)
	if err := d.End(); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}
