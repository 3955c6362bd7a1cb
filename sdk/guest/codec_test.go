package guest_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
)

func TestEncoderLayout(t *testing.T) {
	var a guest.Address
	for i := range a {
		a[i] = byte(i)
	}
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"u64", guest.NewEncoder().PutUint64(0x0102030405060708).Bytes(), "\x01\x02\x03\x04\x05\x06\x07\x08"},
		{"i64 -1", guest.NewEncoder().PutInt64(-1).Bytes(), "\xff\xff\xff\xff\xff\xff\xff\xff"},
		{"u32", guest.NewEncoder().PutUint32(0x0a0b0c0d).Bytes(), "\x0a\x0b\x0c\x0d"},
		{"bools", guest.NewEncoder().PutBool(true).PutBool(false).Bytes(), "\x01\x00"},
		{"string", guest.NewEncoder().PutString("ab").Bytes(), "\x00\x00\x00\x02ab"},
		{"empty bytes", guest.NewEncoder().PutBytes(nil).Bytes(), "\x00\x00\x00\x00"},
		{"address", guest.NewEncoder().PutAddress(a).Bytes(), string(a[:])},
		{"pair", guest.Encode(guest.PairCodec(guest.StringCodec, guest.Uint32Codec), guest.Pair[string, uint32]{First: "x", Second: 7}), "\x00\x00\x00\x01x\x00\x00\x00\x07"},
	}
	for _, tc := range cases {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %x, want %x", tc.name, tc.got, tc.want)
		}
	}
}

func TestDecoderRejects(t *testing.T) {
	cases := []struct {
		name string
		in   string
		read func(d *guest.Decoder)
		want error
	}{
		{"short u64", "\x01\x02", func(d *guest.Decoder) { d.Uint64() }, guest.ErrShortInput},
		{"trailing", "\x00\x00\x00\x01\x09", func(d *guest.Decoder) { d.Uint32() }, guest.ErrTrailingBytes},
		{"bad bool", "\x02", func(d *guest.Decoder) { d.Bool() }, guest.ErrBadBool},
		{"bytes past end", "\x00\x00\x00\x05ab", func(d *guest.Decoder) { d.Bytes() }, guest.ErrShortInput},
		{"huge length", "\xff\xff\xff\xff", func(d *guest.Decoder) { _ = d.String() }, guest.ErrShortInput},
		{"short address", "abc", func(d *guest.Decoder) { d.Address() }, guest.ErrShortInput},
		{"first error kept", "\x07", func(d *guest.Decoder) { d.Bool(); d.Uint64() }, guest.ErrBadBool},
	}
	for _, tc := range cases {
		d := guest.NewDecoder([]byte(tc.in))
		tc.read(d)
		if err := d.End(); !errors.Is(err, tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %q, want %v in one line (it becomes an abort message)", tc.name, err, tc.want)
		}
	}
}

// field is one value of a random message, for the round-trip property.
type field struct {
	kind int
	u    uint64
	b    []byte
}

func (f field) put(e *guest.Encoder) {
	switch f.kind {
	case 0:
		e.PutUint64(f.u)
	case 1:
		e.PutUint32(uint32(f.u))
	case 2:
		e.PutBool(f.u&1 == 1)
	case 3:
		var a guest.Address
		copy(a[:], f.b)
		e.PutAddress(a)
	default:
		e.PutBytes(f.b)
	}
}

func (f field) read(d *guest.Decoder) field {
	switch f.kind {
	case 0:
		return field{kind: 0, u: d.Uint64()}
	case 1:
		return field{kind: 1, u: uint64(d.Uint32())}
	case 2:
		if d.Bool() {
			return field{kind: 2, u: 1}
		}
		return field{kind: 2}
	case 3:
		a := d.Address()
		return field{kind: 3, b: a[:]}
	default:
		return field{kind: 4, b: d.Bytes()}
	}
}

// TestRoundTrip: any field sequence decodes back to itself, and every
// strict prefix of its encoding fails to decode.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 500; i++ {
		var fields []field
		e := guest.NewEncoder()
		for j := rng.IntN(6); j > 0; j-- {
			f := field{kind: rng.IntN(5), u: rng.Uint64()}
			switch f.kind {
			case 1:
				f.u &= 0xffffffff
			case 2:
				f.u &= 1
			case 3:
				f.u, f.b = 0, make([]byte, 32)
			case 4:
				f.u, f.b = 0, make([]byte, rng.IntN(40))
			}
			for k := range f.b {
				f.b[k] = byte(rng.Uint32())
			}
			fields = append(fields, f)
			f.put(e)
		}
		msg := e.Bytes()
		decode := func(b []byte) ([]field, error) {
			d := guest.NewDecoder(b)
			out := make([]field, len(fields))
			for k, f := range fields {
				out[k] = f.read(d)
			}
			return out, d.End()
		}
		got, err := decode(msg)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for k := range fields {
			if got[k].u != fields[k].u || !bytes.Equal(got[k].b, fields[k].b) {
				t.Fatalf("case %d field %d: got %+v, want %+v", i, k, got[k], fields[k])
			}
		}
		if len(msg) > 0 {
			if _, err := decode(msg[:rng.IntN(len(msg))]); !errors.Is(err, guest.ErrShortInput) {
				t.Fatalf("case %d: a truncated message decoded (%v)", i, err)
			}
		}
	}
}

// FuzzDecode decodes arbitrary bytes as the token's transfer_from input
// and a trailing string: it must never panic, and whatever decodes must
// re-encode to the same bytes (the layout has one encoding per value).
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 72+4))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := guest.NewDecoder(b)
		from, to, amt, s := d.Address(), d.Address(), d.Uint64(), d.String()
		if d.End() != nil {
			return
		}
		again := guest.NewEncoder().PutAddress(from).PutAddress(to).PutUint64(amt).PutString(s).Bytes()
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}
