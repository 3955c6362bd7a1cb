package guest

import "github.com/kairos-network/kairos/sdk/guest/internal/abi"

// scratchValLen is the value and input buffer of the typed helpers: the
// values of the example modules and most method inputs fit, so reading one
// is one host call (larger ones take a second call into an exact buffer).
const scratchValLen = 256

// scratchBufs is where Map, Value and DecodeInput build keys, read values
// and input, encode values and decode, instead of allocating an encoder, a
// read buffer and a decoder per call. In a wasm guest an allocation runs the
// Go allocator under gas metering (a few hundred instructions, thousands
// when the allocator needs a new span) and dirties heap pages the host must
// restore before the next transaction (RATIONALE.md, "Why does the Go SDK
// read and encode state through package-level buffers?").
//
// The buffers are package-level, not on the stack, because a Codec is an
// interface: whatever is passed to its methods escapes to the heap.
//
// Invariants: nothing these buffers hold leaves the helper that took them
// (decoded values are copies: the decoder's Bytes copies in scratch mode,
// and keys and encoded values go only to the host, which copies them); a
// helper that finds them busy (a Codec that itself uses Map or Value,
// another goroutine in the middle of a helper) works on fresh ones.
type scratchBufs struct {
	busy   bool
	key    Encoder
	val    Encoder
	dec    Decoder
	keyArr [KeyLenMax]byte
	valArr [scratchValLen]byte
}

var scratch scratchBufs

func init() { abi.OnInstall(func() { scratch.busy = false }) }

// takeScratch returns the shared buffers, or fresh ones if they are busy.
// The caller releases them when done, without defer (a deferred call costs
// a wasm guest ~100 metered instructions): a frame that aborts or panics
// in between leaves them busy, which is harmless — in wasm the next frame
// starts from the restored snapshot, natively the harness clears the flag
// before every transaction (abi.OnInstall) — and at worst makes helpers
// use fresh buffers.
func takeScratch() *scratchBufs {
	if scratch.busy {
		return new(scratchBufs)
	}
	scratch.busy = true
	return &scratch
}

func (s *scratchBufs) release() { s.busy = false }

// encodeKey returns prefix ‖ the encoding of k, in s's key buffer.
func encodeKey[K any](s *scratchBufs, prefix []byte, c Codec[K], k K) []byte {
	s.key.buf = append(s.keyArr[:0], prefix...)
	c.Append(&s.key, k)
	return s.key.buf
}

// encodeVal returns the encoding of v, in s's value buffer.
func encodeVal[V any](s *scratchBufs, c Codec[V], v V) []byte {
	s.val.buf = s.valArr[:0]
	c.Append(&s.val, v)
	return s.val.buf
}

// fill runs the two-call size pattern over s's value buffer: read copies
// as much as fits into dst and returns the full length (-1: absent). The
// result is s's buffer or, for a longer string, a new exact one.
func (s *scratchBufs) fill(read func(dst []byte) int) ([]byte, bool) {
	n := read(s.valArr[:])
	switch {
	case n < 0:
		return nil, false
	case n <= len(s.valArr):
		return s.valArr[:n], true
	}
	b := make([]byte, n)
	return b[:read(b)], true
}

// stateGet is StateGet into s's value buffer.
func (s *scratchBufs) stateGet(key []byte) ([]byte, bool) {
	checkKey(key)
	return s.fill(func(dst []byte) int { return abi.StateRead(key, dst) })
}

// input is Input into s's value buffer.
func (s *scratchBufs) input() []byte {
	b, _ := s.fill(abi.InputRead)
	return b
}

// decodeWith decodes all of b as one T with s's decoder, which hands out
// copies of byte fields, so b may be s's buffer.
func decodeWith[T any](s *scratchBufs, c Codec[T], b []byte) (T, error) {
	s.dec = Decoder{buf: b, copies: true}
	v := c.Read(&s.dec)
	if err := s.dec.End(); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}
