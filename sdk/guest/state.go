package guest

import (
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
	prefix []byte
	key    Codec[K]
	val    Codec[V]
	// fixed: both codecs are fixed-size field codecs of these kinds and
	// the key fits fixedKeyMax (fixed.go's fast path).
	fixed        bool
	kKind, vKind fieldKind
}

// NewMap returns the map called name (1 to 255 bytes; anything else is a
// programming error and panics at package initialization).
func NewMap[K, V any](name string, key Codec[K], val Codec[V]) Map[K, V] {
	m := Map[K, V]{prefix: namespace(name), key: key, val: val, kKind: kindOf(key), vKind: kindOf(val)}
	m.fixed = m.kKind != kindNone && m.vKind != kindNone && len(m.prefix)+m.kKind.size() <= fixedKeyMax
	return m
}

// Prefix returns the key prefix of every entry, the access-list entry that
// covers the whole map. The caller must not modify it.
func (m Map[K, V]) Prefix() []byte { return m.prefix }

// Key returns the state key of k.
func (m Map[K, V]) Key(k K) []byte {
	e := Encoder{buf: append([]byte(nil), m.prefix...)}
	m.key.Append(&e, k)
	return e.buf
}

// Get returns the value of k. A stored value that does not decode aborts:
// it can only come from a module bug or a changed codec.
func (m Map[K, V]) Get(k K) (V, bool) {
	if m.fixed {
		var key [fixedKeyMax]byte
		n := fixedKey(&key, m.prefix, m.kKind, unsafe.Pointer(&k))
		var val [AddressLen]byte
		var v V
		switch got := abi.StateRead(key[:n], val[:]); {
		case got < 0:
			return v, false
		case got == m.vKind.size() && m.vKind.get(unsafe.Pointer(&val), unsafe.Pointer(&v)):
			return v, true
		}
		// A stored value that does not decode: the generic path aborts.
	}
	s := takeScratch()
	b, ok := s.stateGet(encodeKey(s, m.prefix, m.key, k))
	var v V
	if ok {
		v = decodeStored(s, m.val, b)
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
	key := encodeKey(s, m.prefix, m.key, k)
	checkKey(key)
	ok := abi.StateRead(key, nil) >= 0
	s.release()
	return ok
}

// Set stores v under k.
func (m Map[K, V]) Set(k K, v V) {
	if m.fixed {
		var key [fixedKeyMax]byte
		n := fixedKey(&key, m.prefix, m.kKind, unsafe.Pointer(&k))
		var val [AddressLen]byte
		abi.StateSet(key[:n], val[:m.vKind.put(unsafe.Pointer(&val), unsafe.Pointer(&v))])
		return
	}
	s := takeScratch()
	StateSet(encodeKey(s, m.prefix, m.key, k), encodeVal(s, m.val, v))
	s.release()
}

// Delete removes k.
func (m Map[K, V]) Delete(k K) {
	if m.fixed {
		var key [fixedKeyMax]byte
		n := fixedKey(&key, m.prefix, m.kKind, unsafe.Pointer(&k))
		abi.StateDelete(key[:n])
		return
	}
	s := takeScratch()
	StateDelete(encodeKey(s, m.prefix, m.key, k))
	s.release()
}

// Each calls fn for every entry in ascending order of the encoded keys
// (numbers ascend; strings and bytes by length, then bytes) until fn
// returns false.
func (m Map[K, V]) Each(fn func(K, V) bool) {
	StateIterate(m.prefix, func(key, val []byte) bool {
		k, v := m.decodeEntry(key, val)
		return fn(k, v)
	})
}

// decodeEntry decodes one entry of Each, releasing the buffers before fn
// runs (fn may use the map).
func (m Map[K, V]) decodeEntry(key, val []byte) (K, V) {
	s := takeScratch()
	k := decodeStored(s, m.key, key[len(m.prefix):])
	v := decodeStored(s, m.val, val)
	s.release()
	return k, v
}

// Value is a single typed state entry under one name (key u8(len(name)) ‖
// name), for counters, configuration and the admin address.
type Value[V any] struct {
	key   []byte
	val   Codec[V]
	vKind fieldKind // a fixed-size field codec's kind: fixed.go's fast path
}

// NewValue returns the value called name (1 to 255 bytes).
func NewValue[V any](name string, val Codec[V]) Value[V] {
	return Value[V]{key: namespace(name), val: val, vKind: kindOf(val)}
}

// Key returns the state key.
func (v Value[V]) Key() []byte { return v.key }

// Get returns the value, and whether it is set.
func (v Value[V]) Get() (V, bool) {
	if v.vKind != kindNone {
		var val [AddressLen]byte
		var x V
		switch got := abi.StateRead(v.key, val[:]); {
		case got < 0:
			return x, false
		case got == v.vKind.size() && v.vKind.get(unsafe.Pointer(&val), unsafe.Pointer(&x)):
			return x, true
		}
		// A stored value that does not decode: the generic path aborts.
	}
	s := takeScratch()
	b, ok := s.stateGet(v.key)
	var x V
	if ok {
		x = decodeStored(s, v.val, b)
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
	if v.vKind != kindNone {
		var val [AddressLen]byte
		abi.StateSet(v.key, val[:v.vKind.put(unsafe.Pointer(&val), unsafe.Pointer(&x))])
		return
	}
	s := takeScratch()
	StateSet(v.key, encodeVal(s, v.val, x))
	s.release()
}

// Delete removes the value.
func (v Value[V]) Delete() { StateDelete(v.key) }

func decodeStored[T any](s *scratchBufs, c Codec[T], b []byte) T {
	v, err := decodeWith(s, c, b)
	if err != nil {
		Abort("guest: stored state does not decode: " + err.Error())
	}
	return v
}
