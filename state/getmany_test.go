package state

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestAppendEscapedWords: the word-at-a-time escaping appends exactly what
// appendEscaped appends, after what dst holds, for keys of every length
// around the word size with escaped bytes (and their neighbours 0x2d,
// 0x30, and bytes with the high bit) at random places.
func TestAppendEscapedWords(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte{'.', '/', 0x2d, 0x30, 0x2e | 0x80, 0x2f | 0x80, 0, 0xff, 'a'}
	for n := range 40 {
		for range 200 {
			src := make([]byte, n)
			for i := range src {
				if rng.IntN(3) == 0 {
					src[i] = alphabet[rng.IntN(len(alphabet))]
				} else {
					src[i] = byte(rng.Uint32())
				}
			}
			prefix := []byte("/kairos/kv/")
			want := appendEscaped(bytes.Clone(prefix), src)
			got := appendEscapedWords(bytes.Clone(prefix), src)
			if !bytes.Equal(got, want) {
				t.Fatalf("%x: got %x, want %x", src, got, want)
			}
		}
	}
}

// FuzzAppendEscapedWords checks the same on any input.
func FuzzAppendEscapedWords(f *testing.F) {
	f.Add([]byte("./abcdefgh./"))
	f.Add([]byte("0123456789abcdef"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if got, want := appendEscapedWords([]byte{1}, src), appendEscaped([]byte{1}, src); !bytes.Equal(got, want) {
			t.Fatalf("%x: got %x, want %x", src, got, want)
		}
	})
}
