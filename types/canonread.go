package types

import (
	"encoding/binary"
	"math"
)

// CanonReader reads the items of a canonical CBOR encoding (the form
// Encode writes: shortest heads, definite lengths) one at a time, for
// decoders that read a hot message shape directly instead of through
// Decode's reflection and re-encoding (decodeTxFast, consensus'
// decodeMessageFast). Bad is set at the first item not of the expected
// canonical form, after which every read is a no-op returning a zero
// value: such a decoder then gives up without judging and leaves the
// verdict to Decode, so a CanonReader never has to say why.
type CanonReader struct {
	Data []byte
	Off  int
	Bad  bool
}

// Done reports whether every item was read, in canonical form.
func (r *CanonReader) Done() bool { return !r.Bad && r.Off == len(r.Data) }

// Head reads an item head of major type major with its shortest argument.
func (r *CanonReader) Head(major byte) (n uint64, ok bool) {
	if r.Bad || r.Off >= len(r.Data) || r.Data[r.Off]>>5 != major {
		r.Bad = true
		return 0, false
	}
	info := r.Data[r.Off] & 0x1f
	r.Off++
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
		r.Bad = true
		return 0, false
	}
	if len(r.Data)-r.Off < size {
		r.Bad = true
		return 0, false
	}
	for _, c := range r.Data[r.Off : r.Off+size] {
		n = n<<8 | uint64(c)
	}
	r.Off += size
	// Shortest form: the argument needs this many bytes.
	if (size == 1 && n < 24) || (size > 1 && n>>(4*size) == 0) {
		r.Bad = true
		return 0, false
	}
	return n, true
}

// ArrayOf reads the head of an array of exactly n items.
func (r *CanonReader) ArrayOf(n uint64) bool {
	if got, ok := r.Head(4); !ok || got != n {
		r.Bad = true
		return false
	}
	return true
}

// Count reads the head of an array whose items take at least min bytes
// each and returns its length; 0 and Bad if that many items cannot fit in
// the rest of the input or are over CBORMaxItems (which Decode refuses), so
// a caller can allocate the length before reading the items.
func (r *CanonReader) Count(min int) int {
	n, ok := r.Head(4)
	if !ok || n > uint64(len(r.Data)-r.Off)/uint64(min) || n > CBORMaxItems {
		r.Bad = true
		return 0
	}
	return int(n)
}

// Uint reads an unsigned integer of at most max.
func (r *CanonReader) Uint(max uint64) uint64 {
	n, ok := r.Head(0)
	if !ok || n > max {
		r.Bad = true
		return 0
	}
	return n
}

// Int64 reads a signed integer (major type 0 or 1) that fits int64.
func (r *CanonReader) Int64() int64 {
	if r.Bad || r.Off >= len(r.Data) {
		r.Bad = true
		return 0
	}
	major := r.Data[r.Off] >> 5
	if major != 0 && major != 1 {
		r.Bad = true
		return 0
	}
	n, ok := r.Head(major)
	if !ok || n > math.MaxInt64 {
		r.Bad = true
		return 0
	}
	if major == 1 {
		return -1 - int64(n)
	}
	return int64(n)
}

// Str reads the content of a byte (major 2) or text (major 3) string, as a
// slice of Data (nil when Bad).
func (r *CanonReader) Str(major byte) []byte {
	n, ok := r.Head(major)
	if !ok || n > uint64(len(r.Data)-r.Off) {
		r.Bad = true
		return nil
	}
	s := r.Data[r.Off : r.Off+int(n) : r.Off+int(n)]
	r.Off += int(n)
	return s
}

// Bytes32 reads a byte string of exactly 32 bytes (a hash, an address).
func (r *CanonReader) Bytes32() (b [32]byte) {
	s := r.Str(2)
	if len(s) != len(b) {
		r.Bad = true
		return b
	}
	return [32]byte(s)
}

// BytesOrNil reads a byte string (empty but not nil when of length 0), as
// a slice of Data, or null (nil), as Decode fills a []byte.
func (r *CanonReader) BytesOrNil() []byte {
	if r.Null() {
		return nil
	}
	return r.Str(2)
}

// Null reads the null item if it is next.
func (r *CanonReader) Null() bool {
	if !r.Bad && r.Off < len(r.Data) && r.Data[r.Off] == 0xf6 {
		r.Off++
		return true
	}
	return false
}

// Bool reads false or true.
func (r *CanonReader) Bool() bool {
	if r.Bad || r.Off >= len(r.Data) || (r.Data[r.Off] != 0xf4 && r.Data[r.Off] != 0xf5) {
		r.Bad = true
		return false
	}
	r.Off++
	return r.Data[r.Off-1] == 0xf5
}

// AppendHead appends the canonical CBOR head (shortest argument form) of
// major type major with argument n: the writing side of CanonReader.Head,
// for encoders of hot shapes that write them directly.
func AppendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}

// AppendInt appends the canonical CBOR encoding of v (major type 0 or 1).
func AppendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return AppendHead(b, 0, uint64(v))
	}
	return AppendHead(b, 1, uint64(-(v + 1)))
}
