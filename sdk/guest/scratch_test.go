package guest_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

// record is a module's own type whose codec keeps the slice Decoder.Bytes
// returns: the typed helpers decode from reused buffers, so that slice
// must be a copy.
type record struct {
	Name []byte
	N    uint64
}

var recordCodec = guest.CodecOf(
	func(e *guest.Encoder, r record) { e.PutBytes(r.Name).PutUint64(r.N) },
	func(d *guest.Decoder) record { return record{d.Bytes(), d.Uint64()} },
)

// TestHelpersAgainstModel drives Map and Value with values around the
// shared value buffer's size (a value longer than it takes a second host
// call into an exact buffer) and compares every read with a Go map. A
// decoded record is kept across later reads in the same frame, which the
// reused buffers must not overwrite.
func TestHelpersAgainstModel(t *testing.T) {
	c := newChain()
	m := guest.NewMap("r", guest.Uint32Codec, recordCodec)
	v := guest.NewValue("v", guest.BytesCodec)
	model := map[uint32]record{}
	var modelV []byte
	rng := rand.New(rand.NewPCG(5, 6))
	value := func() []byte {
		b := make([]byte, []int{0, 1, 200, 243, 244, 255, 256, 257, 600}[rng.IntN(9)])
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := 0; i < 300; i++ {
		k := uint32(rng.IntN(6))
		switch rng.IntN(4) {
		case 0:
			r := record{value(), rng.Uint64()}
			b := value()
			run(t, c, guesttest.StatusOK, func() { m.Set(k, r); v.Set(b) })
			model[k], modelV = r, b
		case 1:
			run(t, c, guesttest.StatusOK, func() { m.Delete(k) })
			delete(model, k)
		default:
			run(t, c, guesttest.StatusOK, func() {
				var kept []record
				for j := uint32(0); j < 6; j++ {
					got, ok := m.Get(j)
					want, wantOK := model[j]
					if ok != wantOK || m.Has(j) != wantOK || ok && (!bytes.Equal(got.Name, want.Name) || got.N != want.N) {
						t.Fatalf("op %d: Get(%d) = %x %d %v, model %x %d %v", i, j, got.Name, got.N, ok, want.Name, want.N, wantOK)
					}
					kept = append(kept, got)
				}
				for j, r := range kept {
					if want := model[uint32(j)]; !bytes.Equal(r.Name, want.Name) {
						t.Fatalf("op %d: record %d changed to %x after later reads, want %x", i, j, r.Name, want.Name)
					}
				}
				if got, ok := v.Get(); ok != (modelV != nil) || !bytes.Equal(got, modelV) {
					t.Fatalf("op %d: Value %x %v, model %x", i, got, ok, modelV)
				}
			})
		}
	}
}

// TestReentrantCodec: codecs that read state themselves, while encoding a
// key and while decoding a value, find the shared buffers busy and must
// work on their own, leaving the outer key and value intact.
func TestReentrantCodec(t *testing.T) {
	c := newChain()
	salt := guest.NewMap("salt", guest.Uint64Codec, guest.Uint64Codec)
	salted := guest.CodecOf(
		func(e *guest.Encoder, k uint64) { e.PutUint64(k ^ salt.GetOr(0, 0)) },
		func(d *guest.Decoder) uint64 { return d.Uint64() ^ salt.GetOr(0, 0) },
	)
	m := guest.NewMap("m", salted, salted)
	run(t, c, guesttest.StatusOK, func() {
		salt.Set(0, 0xff)
		for k := uint64(0); k < 4; k++ {
			m.Set(k, k+10)
		}
		for k := uint64(0); k < 4; k++ {
			if got := m.GetOr(k, 0); got != k+10 {
				t.Errorf("Get(%d) = %d", k, got)
			}
		}
		var keys []uint64
		m.Each(func(k, v uint64) bool { keys = append(keys, k); return true })
		if fmt.Sprint(keys) != "[3 2 1 0]" { // stored as k^0xff: 0xfc < 0xfd < 0xfe < 0xff
			t.Errorf("Each keys %v", keys)
		}
	})
	want := guest.Encode(guest.Uint64Codec, 11^0xff)
	if got, ok := c.State(mod, append(m.Prefix(), 0, 0, 0, 0, 0, 0, 0, 0xfe)); !ok || !bytes.Equal(got, want) {
		t.Fatalf("key 1 stored as %x %v, want %x under 1^0xff", got, ok, want)
	}
}

// TestWithHelpersMatchEncoders: EmitWith, ReturnWith and DecodeInput give
// the bytes and values of Emit, Return and Decode, also past the shared
// buffer's size.
func TestWithHelpersMatchEncoders(t *testing.T) {
	for _, n := range []int{0, 10, 300} {
		data := bytes.Repeat([]byte{7}, n)
		in := guest.Encode(guest.PairCodec(guest.BytesCodec, guest.Uint64Codec), guest.Pair[[]byte, uint64]{First: data, Second: 9})
		c := newChain()
		body = func() {
			p := guest.DecodeInput(guest.PairCodec(guest.BytesCodec, guest.Uint64Codec))
			guest.EmitWith("a", func(e *guest.Encoder) { e.PutBytes(p.First).PutUint64(p.Second) })
			guest.Emit("b", guest.NewEncoder().PutBytes(p.First).PutUint64(p.Second).Bytes())
			guest.ReturnWith(func(e *guest.Encoder) { e.PutBytes(p.First).PutUint64(p.Second) })
		}
		r := c.Call(user, mod, "run", in)
		if r.Status != guesttest.StatusOK || len(r.Events) != 2 {
			t.Fatalf("n=%d: %s %s %d events", n, r.Status, r.Message, len(r.Events))
		}
		if !bytes.Equal(r.Events[0].Data, in) || !bytes.Equal(r.Events[1].Data, in) || !bytes.Equal(r.Return, in) {
			t.Fatalf("n=%d: events %x %x, return %x, want %x", n, r.Events[0].Data, r.Events[1].Data, r.Return, in)
		}
	}
}

// TestAbortInsideHelperReleasesBuffers: a frame that aborts in the middle
// of a helper (here, a codec) leaves the shared buffers taken; the next
// transaction must find them free again.
func TestAbortInsideHelperReleasesBuffers(t *testing.T) {
	c := newChain()
	failing := guest.CodecOf(func(e *guest.Encoder, k uint64) { guest.Abort("no") }, (*guest.Decoder).Uint64)
	m := guest.NewMap("m", failing, guest.Uint64Codec)
	run(t, c, guesttest.StatusAborted, func() { m.Set(1, 1) })
	run(t, c, guesttest.StatusOK, func() {
		if guest.ScratchBusy() {
			t.Error("buffers still taken in the next transaction")
		}
	})
}
