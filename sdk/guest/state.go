package guest

import (
	"bytes"
	"unsafe"

	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// StateGet returns the value stored under key in this module's state.
// Keys are 1 to KeyLenMax bytes; a key outside that aborts (the host would
// trap).
func StateGet(key []byte) ([]byte, bool) {
	checkKey(key)
	return abi.StateGet(key)
}

// StateSet stores val under key. Values are at most ValueLenMax bytes.
func StateSet(key, val []byte) {
	checkKey(key)
	if len(val) > ValueLenMax {
		Abort("guest: state value longer than ValueLenMax")
	}
	abi.StateSet(key, val)
}

// StateDelete removes key; removing an absent key is not an error.
func StateDelete(key []byte) {
	checkKey(key)
	abi.StateDelete(key)
}

// StateIterate calls fn for every key that starts with prefix, in
// ascending bytewise key order, until fn returns false. It sees the state
// as it was when the iteration started. The transaction's access list must
// declare the prefix (or a shorter one).
func StateIterate(prefix []byte, fn func(key, val []byte) bool) {
	if len(prefix) > KeyLenMax {
		Abort("guest: iteration prefix longer than KeyLenMax")
	}
	h := abi.IterOpen(prefix)
	defer abi.IterClose(h)
	for abi.IterNext(h) {
		if !fn(abi.IterKey(h), abi.IterValue(h)) {
			return
		}
	}
}

func checkKey(key []byte) {
	if len(key) == 0 || len(key) > KeyLenMax {
		Abort("guest: state key must be 1 to KeyLenMax bytes")
	}
}

// namespace returns u8(len(name)) ‖ name, the key prefix of a Map or Value.
// The length byte keeps the key spaces of different names disjoint.
func namespace(name string) []byte {
	if len(name) == 0 || len(name) > 255 {
		panic("guest: state name must be 1 to 255 bytes: " + name)
	}
	return append([]byte{byte(len(name))}, name...)
}

// Map is a typed view of the state keys under one name: the key of k is
// u8(len(name)) ‖ name ‖ the encoding of k. A Map holds no data; declare
// maps as package variables.
type Map[K, V any] struct {
	// d is shared by the copies of a Map: a method call copies one word,
	// not the map's prefix, codecs and fast-path template.
	d *mapDef[K, V]
}

type mapDef[K, V any] struct {
	prefix []byte
	key    Codec[K]
	val    Codec[V]
	// fx is fixed.go's fast path, enabled when both codecs are fixed-size
	// field codecs and the key fits fixedKeyMax.
	fx fixedMap
}

// NewMap returns the map called name (1 to 255 bytes; anything else is a
// programming error and panics at package initialization).
func NewMap[K, V any](name string, key Codec[K], val Codec[V]) Map[K, V] {
	d := &mapDef[K, V]{prefix: namespace(name), key: key, val: val}
	vk := kindOf(val)
	if kk := kindOf(key); kk != kindNone {
		d.fx = newFixedMap(d.prefix, kk, vk)
	} else {
		d.fx.v64 = vk.is64() // for setOrDelete's zero test only: fx stays disabled
	}
	return Map[K, V]{d}
}

// Prefix returns the key prefix of every entry, the access-list entry that
// covers the whole map. The caller must not modify it.
func (m Map[K, V]) Prefix() []byte { return m.d.prefix }

// Key returns the state key of k.
func (m Map[K, V]) Key(k K) []byte {
	e := Encoder{buf: append([]byte(nil), m.d.prefix...)}
	m.d.key.Append(&e, k)
	return e.buf
}

// Get returns the value of k. A stored value that does not decode aborts:
// it can only come from a module bug or a changed codec.
//
// Get, Set and SetOrDelete hold the address-to-u64 path (fixedMap.addr64,
// token balances) only, in straight-line code, and leave every other case
// to a function of their own: in Go's wasm code a branch to code laid out
// elsewhere is a jump through the function's dispatch loop, and the
// generic path's buffers made the frame of every call ~400 bytes.
func (m Map[K, V]) Get(k K) (V, bool) {
	d := m.d
	if !d.fx.addr64 {
		return m.get(k)
	}
	// The key is built in place past the template's prefix, in the
	// template's first addr64KeyMax bytes (an unsafe.Add: no bounds check,
	// as n + AddressLen <= addr64KeyMax); the value is read into one word.
	key := *(*[addr64KeyMax]byte)(unsafe.Pointer(&d.fx.tmpl))
	copyAddress(unsafe.Add(unsafe.Pointer(&key), d.fx.n), unsafe.Pointer(&k))
	var w uint64
	got := abi.StateGetPtr(unsafe.Pointer(&key), uint32(d.fx.n+AddressLen), unsafe.Pointer(&w), 8)
	var v V
	if got == 8 {
		*(*uint64)(unsafe.Pointer(&v)) = getBE64(unsafe.Pointer(&w))
		return v, true
	}
	if got < 0 {
		return v, false
	}
	return m.get(k) // a stored value of another length: the generic path aborts
}

// get is Get off the address-to-u64 path.
func (m Map[K, V]) get(k K) (V, bool) {
	d := m.d
	var v V
	if d.fx.enable {
		// fixedMap.key, by hand: the call (too large for the Go compiler
		// to inline) cost ~90 guest gas.
		key := d.fx.tmpl
		n := d.fx.n
		if d.fx.kKind == kindAddress {
			copyAddress(unsafe.Pointer(&key[n]), unsafe.Pointer(&k))
			n += AddressLen
		} else {
			n += d.fx.kKind.put(unsafe.Pointer(&key[n]), unsafe.Pointer(&k))
		}
		var val [AddressLen]byte
		switch got := int(abi.StateGetPtr(unsafe.Pointer(&key), uint32(n), unsafe.Pointer(&val), AddressLen)); {
		case got < 0:
			return v, false
		case got != d.fx.vSize:
		case d.fx.v64:
			*(*uint64)(unsafe.Pointer(&v)) = getBE64(unsafe.Pointer(&val))
			return v, true
		case d.fx.vKind.get(unsafe.Pointer(&val), unsafe.Pointer(&v)):
			return v, true
		}
		// A stored value that does not decode: the generic path aborts.
	}
	s := takeScratch()
	b, ok := s.stateGet(encodeKey(s, d.prefix, d.key, k))
	if ok {
		v = decodeStored(s, d.val, b)
	}
	s.release()
	return v, ok
}

// GetOr returns the value of k, or def if k is absent.
func (m Map[K, V]) GetOr(k K, def V) V {
	if v, ok := m.Get(k); ok {
		return v
	}
	return def
}

// Has reports whether k is present. It reads no value bytes.
func (m Map[K, V]) Has(k K) bool {
	s := takeScratch()
	key := encodeKey(s, m.d.prefix, m.d.key, k)
	checkKey(key)
	ok := abi.StateRead(key, nil) >= 0
	s.release()
	return ok
}

// Set stores v under k.
func (m Map[K, V]) Set(k K, v V) {
	d := m.d
	if !d.fx.addr64 {
		m.set(k, v)
		return
	}
	key := *(*[addr64KeyMax]byte)(unsafe.Pointer(&d.fx.tmpl)) // as in Get
	copyAddress(unsafe.Add(unsafe.Pointer(&key), d.fx.n), unsafe.Pointer(&k))
	var w uint64
	putBE64(unsafe.Pointer(&w), *(*uint64)(unsafe.Pointer(&v)))
	abi.StateSetPtr(unsafe.Pointer(&key), uint32(d.fx.n+AddressLen), unsafe.Pointer(&w), 8)
}

// set is Set off the address-to-u64 path.
func (m Map[K, V]) set(k K, v V) {
	d := m.d
	if d.fx.enable {
		key := d.fx.tmpl // fixedMap.key, by hand as in get
		n := d.fx.n
		if d.fx.kKind == kindAddress {
			copyAddress(unsafe.Pointer(&key[n]), unsafe.Pointer(&k))
			n += AddressLen
		} else {
			n += d.fx.kKind.put(unsafe.Pointer(&key[n]), unsafe.Pointer(&k))
		}
		var val [AddressLen]byte
		if d.fx.v64 {
			putBE64(unsafe.Pointer(&val), *(*uint64)(unsafe.Pointer(&v)))
			abi.StateSetPtr(unsafe.Pointer(&key), uint32(n), unsafe.Pointer(&val), 8)
			return
		}
		vn := d.fx.vKind.put(unsafe.Pointer(&val), unsafe.Pointer(&v))
		abi.StateSetPtr(unsafe.Pointer(&key), uint32(n), unsafe.Pointer(&val), uint32(vn))
		return
	}
	s := takeScratch()
	StateSet(encodeKey(s, d.prefix, d.key, k), encodeVal(s, d.val, v))
	s.release()
}

// SetOrDelete stores v under k, or deletes k when v is V's zero value
// (when v encodes as the zero V does): for maps whose absent entries read
// as zero through GetOr, such as balances, so that state holds only the
// entries that are not.
func (m Map[K, V]) SetOrDelete(k K, v V) {
	d := m.d
	if !d.fx.addr64 {
		m.setOrDelete(k, v)
		return
	}
	key := *(*[addr64KeyMax]byte)(unsafe.Pointer(&d.fx.tmpl)) // as in Get
	copyAddress(unsafe.Add(unsafe.Pointer(&key), d.fx.n), unsafe.Pointer(&k))
	if w := *(*uint64)(unsafe.Pointer(&v)); w != 0 { // first: the Go compiler lays it out in line
		putBE64(unsafe.Pointer(&w), w)
		abi.StateSetPtr(unsafe.Pointer(&key), uint32(d.fx.n+AddressLen), unsafe.Pointer(&w), 8)
		return
	}
	abi.StateDeletePtr(unsafe.Pointer(&key), uint32(d.fx.n+AddressLen))
}

// setOrDelete is SetOrDelete off the address-to-u64 path. A u64 or i64
// value (fx.v64, whatever the key: the token's allowances have pair keys)
// encodes as zero exactly when its word is 0; encodesZero, which encodes
// both values into scratch buffers, is for the rest.
func (m Map[K, V]) setOrDelete(k K, v V) {
	var zero bool
	if m.d.fx.v64 {
		zero = *(*uint64)(unsafe.Pointer(&v)) == 0
	} else {
		zero = encodesZero(m.d.val, v)
	}
	if zero {
		m.Delete(k)
	} else {
		m.set(k, v)
	}
}

// encodesZero reports whether v encodes as V's zero value does.
func encodesZero[V any](c Codec[V], v V) bool {
	s := takeScratch()
	var zero V
	s.key.buf = s.keyArr[:0]
	c.Append(&s.key, zero)
	z := bytes.Equal(encodeVal(s, c, v), s.key.buf)
	s.release()
	return z
}

// Delete removes k.
func (m Map[K, V]) Delete(k K) {
	d := m.d
	if d.fx.enable {
		var key [fixedKeyMax]byte
		abi.StateDeletePtr(unsafe.Pointer(&key), uint32(d.fx.key(&key, unsafe.Pointer(&k))))
		return
	}
	s := takeScratch()
	StateDelete(encodeKey(s, d.prefix, d.key, k))
	s.release()
}

// Each calls fn for every entry in ascending order of the encoded keys
// (numbers ascend; strings and bytes by length, then bytes) until fn
// returns false.
func (m Map[K, V]) Each(fn func(K, V) bool) {
	StateIterate(m.d.prefix, func(key, val []byte) bool {
		k, v := m.decodeEntry(key, val)
		return fn(k, v)
	})
}

// decodeEntry decodes one entry of Each, releasing the buffers before fn
// runs (fn may use the map).
func (m Map[K, V]) decodeEntry(key, val []byte) (K, V) {
	s := takeScratch()
	k := decodeStored(s, m.d.key, key[len(m.d.prefix):])
	v := decodeStored(s, m.d.val, val)
	s.release()
	return k, v
}

// Value is a single typed state entry under one name (key u8(len(name)) ‖
// name), for counters, configuration and the admin address.
type Value[V any] struct {
	d *valueDef[V] // shared by copies, as Map's
}

type valueDef[V any] struct {
	key []byte
	val Codec[V]
	fx  fixedMap // fixed.go's fast path for a fixed-size field codec
}

// NewValue returns the value called name (1 to 255 bytes).
func NewValue[V any](name string, val Codec[V]) Value[V] {
	d := &valueDef[V]{key: namespace(name), val: val}
	d.fx = newFixedMap(d.key, kindNone, kindOf(val))
	return Value[V]{d}
}

// Key returns the state key.
func (v Value[V]) Key() []byte { return v.d.key }

// Get returns the value, and whether it is set.
func (v Value[V]) Get() (V, bool) {
	d := v.d
	var x V
	if d.fx.enable {
		var val [AddressLen]byte
		switch got := int(abi.StateGetPtr(unsafe.Pointer(unsafe.SliceData(d.key)), uint32(len(d.key)), unsafe.Pointer(&val), AddressLen)); {
		case got < 0:
			return x, false
		case got != d.fx.vSize:
		case d.fx.v64:
			*(*uint64)(unsafe.Pointer(&x)) = getBE64(unsafe.Pointer(&val))
			return x, true
		case d.fx.vKind.get(unsafe.Pointer(&val), unsafe.Pointer(&x)):
			return x, true
		}
		// A stored value that does not decode: the generic path aborts.
	}
	s := takeScratch()
	b, ok := s.stateGet(d.key)
	if ok {
		x = decodeStored(s, d.val, b)
	}
	s.release()
	return x, ok
}

// GetOr returns the value, or def if it is not set.
func (v Value[V]) GetOr(def V) V {
	if x, ok := v.Get(); ok {
		return x
	}
	return def
}

// Set stores x.
func (v Value[V]) Set(x V) {
	d := v.d
	if d.fx.enable {
		var val [AddressLen]byte
		if d.fx.v64 {
			putBE64(unsafe.Pointer(&val), *(*uint64)(unsafe.Pointer(&x)))
			abi.StateSetPtr(unsafe.Pointer(unsafe.SliceData(d.key)), uint32(len(d.key)), unsafe.Pointer(&val), 8)
			return
		}
		vn := d.fx.vKind.put(unsafe.Pointer(&val), unsafe.Pointer(&x))
		abi.StateSetPtr(unsafe.Pointer(unsafe.SliceData(d.key)), uint32(len(d.key)), unsafe.Pointer(&val), uint32(vn))
		return
	}
	s := takeScratch()
	StateSet(d.key, encodeVal(s, d.val, x))
	s.release()
}

// Delete removes the value.
func (v Value[V]) Delete() { StateDelete(v.d.key) }

func decodeStored[T any](s *scratchBufs, c Codec[T], b []byte) T {
	v, err := decodeWith(s, c, b)
	if err != nil {
		Abort("guest: stored state does not decode: " + err.Error())
	}
	return v
}
