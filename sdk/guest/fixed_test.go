package guest_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

// TestFixedPathMatches checks the fixed-field fast path of Map (a map whose
// key and value codecs are both fixed-size field codecs) and of Value
// against the generic path of the same map or value (the same codecs wrapped in CodecOf, which the fast
// path does not recognize): for every field kind as key and as value,
// entries written through either are read alike through both, stored as
// the codecs encode them, and deleted through either; a stored value that
// does not decode aborts with the generic path's message.
func TestFixedPathMatches(t *testing.T) {
	a, b := guesttest.Addr("a"), guesttest.Addr("b")
	u64s := []uint64{0, 1, 1 << 63, ^uint64(0), 0x0102030405060708}
	checkFixed(t, "u64", guest.Uint64Codec, guest.Uint64Codec, u64s, u64s)
	checkFixed(t, "i64", guest.Int64Codec, guest.Uint64Codec, []int64{0, -1, 1 << 62, -1 << 63}, u64s)
	checkFixed(t, "u32", guest.Uint32Codec, guest.Uint64Codec, []uint32{0, 7, 1 << 31, ^uint32(0)}, u64s)
	checkFixed(t, "bool", guest.BoolCodec, guest.Uint64Codec, []bool{false, true}, u64s)
	addrs := []guest.Address{a, b, {}, {31: 1}}
	checkFixed(t, "addr", guest.AddressCodec, guest.Uint64Codec, addrs, u64s)
	checkFixed(t, "to-i64", guest.AddressCodec, guest.Int64Codec, addrs, []int64{-5, 0, 1 << 40})
	checkFixed(t, "to-u32", guest.AddressCodec, guest.Uint32Codec, addrs, []uint32{9, 0, 1 << 31})
	checkFixed(t, "to-bool", guest.AddressCodec, guest.BoolCodec, addrs, []bool{true, false})
	checkFixed(t, "to-addr", guest.Uint64Codec, guest.AddressCodec, u64s, addrs)

	checkFixedValue(t, guest.Uint64Codec, u64s)
	checkFixedValue(t, guest.Int64Codec, []int64{-1, 0, 1 << 62})
	checkFixedValue(t, guest.Uint32Codec, []uint32{0, 1 << 31})
	checkFixedValue(t, guest.BoolCodec, []bool{true, false})
	checkFixedValue(t, guest.AddressCodec, addrs)
	// A name longer than a Map's key template: a Value's key is its name.
	checkFixedValueNamed(t, strings.Repeat("n", 255), guest.Uint64Codec, u64s)
	checkFixed(t, strings.Repeat("m", 90), guest.AddressCodec, guest.Uint64Codec, addrs, u64s)
	// The longest name of the address-to-u64 path and one byte more.
	checkFixed(t, strings.Repeat("m", 31), guest.AddressCodec, guest.Uint64Codec, addrs, u64s)
	checkFixed(t, strings.Repeat("m", 32), guest.AddressCodec, guest.Int64Codec, addrs, []int64{-5, 0, 1 << 40})

	// Stored values that do not decode: wrong lengths, a bool of 2.
	c := newChain()
	fast := guest.NewMap("bad", guest.AddressCodec, guest.BoolCodec)
	slow := guest.NewMap("bad", wrap(guest.AddressCodec), wrap(guest.BoolCodec))
	for _, stored := range [][]byte{{}, {2}, {1, 0}, bytes.Repeat([]byte{1}, 40)} {
		c.SetState(mod, fast.Key(a), stored)
		rf := run(t, c, guesttest.StatusAborted, func() { fast.Get(a) })
		rs := run(t, c, guesttest.StatusAborted, func() { slow.Get(a) })
		if rf.Message != rs.Message || rf.Message == "" {
			t.Errorf("stored %x: fast path aborts %q, generic %q", stored, rf.Message, rs.Message)
		}
		vf, vs := guest.NewValue("badv", guest.BoolCodec), guest.NewValue("badv", wrap(guest.BoolCodec))
		c.SetState(mod, vf.Key(), stored)
		rf = run(t, c, guesttest.StatusAborted, func() { vf.Get() })
		rs = run(t, c, guesttest.StatusAborted, func() { vs.Get() })
		if rf.Message != rs.Message || rf.Message == "" {
			t.Errorf("stored value %x: fast path aborts %q, generic %q", stored, rf.Message, rs.Message)
		}
	}
}

// checkFixedValue is checkFixed for a Value.
func checkFixedValue[V comparable](t *testing.T, vc guest.Codec[V], vs []V) {
	t.Helper()
	checkFixedValueNamed(t, "v", vc, vs)
}

func checkFixedValueNamed[V comparable](t *testing.T, name string, vc guest.Codec[V], vs []V) {
	t.Helper()
	c := newChain()
	fast, slow := guest.NewValue(name, vc), guest.NewValue(name, wrap(vc))
	for i, v := range vs {
		write := fast
		if i%2 == 1 {
			write = slow
		}
		run(t, c, guesttest.StatusOK, func() {
			write.Set(v)
			for _, x := range []guest.Value[V]{fast, slow} {
				if got, ok := x.Get(); !ok || got != v {
					t.Errorf("value %T: read %v %v, want %v", v, got, ok, v)
				}
			}
		})
		if got, _ := c.State(mod, slow.Key()); !bytes.Equal(got, guest.Encode(vc, v)) {
			t.Errorf("value %T: stored %x, want %x", v, got, guest.Encode(vc, v))
		}
	}
	run(t, c, guesttest.StatusOK, func() {
		fast.Delete()
		if _, ok := slow.Get(); ok {
			t.Errorf("value %T: present after Delete", vs[0])
		}
	})
}

// wrap hides a codec from the fast path.
func wrap[T any](c guest.Codec[T]) guest.Codec[T] { return guest.CodecOf(c.Append, c.Read) }

func checkFixed[K, V comparable](t *testing.T, name string, kc guest.Codec[K], vc guest.Codec[V], ks []K, vs []V) {
	t.Helper()
	c := newChain()
	fast := guest.NewMap(name, kc, vc)
	slow := guest.NewMap(name, wrap(kc), wrap(vc))
	for i, k := range ks {
		v := vs[i%len(vs)]
		write, other := fast, slow
		if i%2 == 1 {
			write, other = slow, fast
		}
		run(t, c, guesttest.StatusOK, func() {
			if _, ok := fast.Get(k); ok {
				t.Errorf("%s %v: present before Set", name, k)
			}
			write.Set(k, v)
			for _, m := range []guest.Map[K, V]{fast, slow} {
				if got, ok := m.Get(k); !ok || got != v {
					t.Errorf("%s %v: read %v %v, want %v", name, k, got, ok, v)
				}
			}
		})
		if got, _ := c.State(mod, slow.Key(k)); !bytes.Equal(got, guest.Encode(vc, v)) {
			t.Errorf("%s %v: stored %x, want %x", name, k, got, guest.Encode(vc, v))
		}
		run(t, c, guesttest.StatusOK, func() { other.Delete(k) })
		if _, ok := c.State(mod, fast.Key(k)); ok {
			t.Errorf("%s %v: Delete left the entry", name, k)
		}
	}
}

// TestFixedPairReadMatches: a Pair of two fixed-size field codecs decodes
// every input — exact, short at each length, with trailing bytes, with a
// bool byte that is not 0 or 1 — to the value and error of the field-by-
// field Read of the same codecs hidden from the fast path.
func TestFixedPairReadMatches(t *testing.T) {
	a := guesttest.Addr("a")
	checkPair(t, guest.AddressCodec, guest.Uint64Codec, guest.Pair[guest.Address, uint64]{First: a, Second: 1<<63 | 5})
	checkPair(t, guest.AddressCodec, guest.AddressCodec, guest.Pair[guest.Address, guest.Address]{First: a, Second: guest.Address{7: 9}})
	checkPair(t, guest.Uint32Codec, guest.BoolCodec, guest.Pair[uint32, bool]{First: 0xdeadbeef, Second: true})
	checkPair(t, guest.BoolCodec, guest.Int64Codec, guest.Pair[bool, int64]{First: true, Second: -2})
}

func checkPair[A, B comparable](t *testing.T, ac guest.Codec[A], bc guest.Codec[B], p guest.Pair[A, B]) {
	t.Helper()
	fast, slow := guest.PairCodec(ac, bc), guest.PairCodec(wrap(ac), wrap(bc))
	enc := guest.Encode(fast, p)
	inputs := [][]byte{enc, append(bytes.Clone(enc), 0)}
	for n := range len(enc) {
		inputs = append(inputs, enc[:n])
	}
	for i := range enc { // every byte 2: a bool field that does not decode
		bad := bytes.Clone(enc)
		bad[i] = 2
		inputs = append(inputs, bad)
	}
	for _, in := range inputs {
		fv, ferr := guest.Decode(fast, in)
		sv, serr := guest.Decode(slow, in)
		if fv != sv || fmt.Sprint(ferr) != fmt.Sprint(serr) {
			t.Errorf("%T %x: fast %v %v, field by field %v %v", p, in, fv, ferr, sv, serr)
		}
	}
	if got, err := guest.Decode(fast, enc); err != nil || got != p {
		t.Errorf("%T: round trip %v %v, want %v", p, got, err, p)
	}
}

// TestSetOrDelete: SetOrDelete stores what Set stores for a value that is
// not the zero value and deletes the entry (present or not) for the zero
// value, on the fast path (an address-to-u64 map), on the generic path of
// the same codecs, for a pair key (an i64 value, whose word is tested for
// 0 without the fast path) and for a string value, whose zero is "".
func TestSetOrDelete(t *testing.T) {
	a, b := guesttest.Addr("a"), guesttest.Addr("b")
	checkSetOrDelete(t, guest.AddressCodec, guest.Uint64Codec, a, []uint64{5, 0, 0, 1 << 63, 0})
	checkSetOrDelete(t, wrap(guest.AddressCodec), wrap(guest.Uint64Codec), b, []uint64{0, 7, 0})
	pair := guest.Pair[guest.Address, guest.Address]{First: a, Second: b}
	checkSetOrDelete(t, guest.PairCodec(guest.AddressCodec, guest.AddressCodec), guest.Int64Codec, pair, []int64{-1, 0, 3})
	checkSetOrDelete(t, guest.AddressCodec, guest.StringCodec, a, []string{"x", "", "", "yz", ""})
}

func checkSetOrDelete[K, V comparable](t *testing.T, kc guest.Codec[K], vc guest.Codec[V], k K, vs []V) {
	t.Helper()
	c := newChain()
	m := guest.NewMap("s", kc, vc)
	var zero V
	for _, v := range vs {
		run(t, c, guesttest.StatusOK, func() { m.SetOrDelete(k, v) })
		got, ok := c.State(mod, m.Key(k))
		switch want := guest.Encode(vc, v); {
		case v == zero && ok:
			t.Errorf("%T %v: SetOrDelete of the zero value left %x", m, k, got)
		case v != zero && (!ok || !bytes.Equal(got, want)):
			t.Errorf("%T %v: SetOrDelete(%v) stored %x %v, want %x", m, k, v, got, ok, want)
		}
	}
}
