package guest

import (
	"encoding/binary"
	"unsafe"
)

// The fixed-field fast path of Map and Value: when a map's key and value
// codecs are both among the SDK's fixed-size field codecs (Uint64Codec,
// Int64Codec, Uint32Codec, BoolCodec, AddressCodec), Get, Set and Delete
// build the key and value in stack arrays with no Encoder, Decoder, scratch
// buffers or Codec interface calls (a Value's Get and Set likewise, and a
// Pair's Read decodes two such fields at once). In a wasm guest every Go call costs tens of
// metered instructions; on the token's transfer the generic path spent
// ~7 000 of its ~9 500 guest gas in such calls, where the same transfer on
// the raw ABI spends ~2 200 (RATIONALE.md, "Why is the Go token's transfer
// still ~5.8× native, and what would reach 3×?").
//
// It writes and reads exactly the bytes the codecs do (TestFixedPathMatches
// compares every kind with the generic path), and whenever something is
// off the common case — a stored value of the wrong length or a bool that
// is not 0 or 1 — it hands over to the generic path, so aborts and their
// messages are the generic path's. Reading the key or value through an
// unsafe.Pointer is sound because the codec fixes the type: a Codec[K]
// holding addressCodec has K = Address, and so on.

// fieldKind is a fixed-size field codec, or kindNone.
type fieldKind uint8

const (
	kindNone fieldKind = iota
	kindUint64
	kindInt64
	kindUint32
	kindBool
	kindAddress
)

// fixedKeyMax bounds the key the fast path builds on the stack (a map name
// of up to fixedKeyMax-1-AddressLen bytes with an address key); longer keys
// take the generic path.
const fixedKeyMax = 96

// addr64KeyMax bounds the key of fixedMap.addr64's path (a map name of up
// to addr64KeyMax-1-AddressLen bytes): the template's bytes it copies on
// every call. A longer name takes the fixed path.
const addr64KeyMax = 64

// The addr64 path reads the template's first addr64KeyMax bytes.
var _ [fixedKeyMax - addr64KeyMax]struct{}

// kindOf returns the kind of c (called once, in NewMap: a type switch on
// concrete types builds no itab).
func kindOf[T any](c Codec[T]) fieldKind {
	switch any(c).(type) {
	case uint64Codec:
		return kindUint64
	case int64Codec:
		return kindInt64
	case uint32Codec:
		return kindUint32
	case boolCodec:
		return kindBool
	case addressCodec:
		return kindAddress
	}
	return kindNone
}

// is64 reports whether k is a u64 or i64, a value held in one word.
func (k fieldKind) is64() bool { return k == kindUint64 || k == kindInt64 }

// size is the encoded length of a field of kind k.
func (k fieldKind) size() int {
	switch k {
	case kindUint64, kindInt64:
		return 8
	case kindUint32:
		return 4
	case kindBool:
		return 1
	case kindAddress:
		return AddressLen
	}
	return 0
}

// put encodes the value at p, of kind k, at dst, which has room for
// k.size() bytes, and returns k.size(). Pointers to arrays instead of
// slices: no bounds checks (mem_wasip1.go has the moves).
func (k fieldKind) put(dst, p unsafe.Pointer) int {
	switch k {
	case kindAddress:
		copyAddress(dst, p)
		return AddressLen
	case kindUint64, kindInt64:
		putBE64(dst, *(*uint64)(p))
		return 8
	case kindUint32:
		binary.BigEndian.PutUint32((*[4]byte)(dst)[:], *(*uint32)(p))
		return 4
	case kindBool:
		*(*byte)(dst) = *(*byte)(p) // a Go bool is stored as 0 or 1
		return 1
	}
	return 0
}

// get decodes the k.size() bytes at src into the value at p; false for a
// bool that is neither 0 nor 1.
func (k fieldKind) get(src, p unsafe.Pointer) bool {
	switch k {
	case kindAddress:
		copyAddress(p, src)
	case kindUint64, kindInt64:
		*(*uint64)(p) = getBE64(src)
	case kindUint32:
		*(*uint32)(p) = binary.BigEndian.Uint32((*[4]byte)(src)[:])
	case kindBool:
		b := *(*byte)(src)
		if b > 1 {
			return false
		}
		*(*bool)(p) = b == 1
	}
	return true
}

// fixedMap is the fast path's view of a Map or Value, resolved once in
// NewMap or NewValue: the key's first bytes (the name's prefix, then
// zeros) as a template, where the key field goes, and the field kinds.
type fixedMap struct {
	tmpl   [fixedKeyMax]byte // prefix ‖ zeros: copied as a whole (the addr64 path: its first addr64KeyMax bytes), one bulk copy (Map only)
	n      int               // len(prefix)
	kKind  fieldKind         // kindNone for a Value (its key is the prefix)
	vKind  fieldKind
	vSize  int  // vKind.size()
	v64    bool // a u64 or i64 value, which Map and Value handle inline (set in a Map even when enable is not)
	enable bool
	// addr64: a Map from addresses to u64 or i64 values (token balances),
	// which Get and Set handle first, in straight-line code: in Go's wasm
	// code every branch is a jump through the function's dispatch loop.
	addr64 bool
}

// newFixedMap resolves the fast path for keys prefix ‖ a field of kKind
// (kindNone: a Value, whose key is the prefix) and values of vKind; the
// result is disabled (enable false) unless vKind is a field kind and a
// Map's key fits the template.
func newFixedMap(prefix []byte, kKind, vKind fieldKind) fixedMap {
	f := fixedMap{n: len(prefix), kKind: kKind, vKind: vKind, vSize: vKind.size(), v64: vKind.is64()}
	f.enable = vKind != kindNone && (kKind == kindNone || len(prefix)+kKind.size() <= fixedKeyMax)
	if f.enable && kKind != kindNone {
		copy(f.tmpl[:], prefix)
	}
	f.addr64 = f.enable && kKind == kindAddress && f.v64 && len(prefix)+AddressLen <= addr64KeyMax
	return f
}

// key writes the state key of the key at p (prefix ‖ its encoding) into
// dst and returns its length (Map.Delete; Get and Set, the hot path, do
// the same by hand, without the call). An address key, the common case,
// is copied here rather than through put: a Go call costs a wasm guest
// tens of metered instructions.
func (f *fixedMap) key(dst *[fixedKeyMax]byte, p unsafe.Pointer) int {
	*dst = f.tmpl
	if f.kKind == kindAddress {
		copyAddress(unsafe.Pointer(&dst[f.n]), p)
		return f.n + AddressLen
	}
	return f.n + f.kKind.put(unsafe.Pointer(&dst[f.n]), p)
}
