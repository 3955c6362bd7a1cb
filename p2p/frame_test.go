package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestReadFrame(t *testing.T) {
	const limit = 300
	cases := []struct {
		name string
		in   []byte
		want []byte
		err  error
	}{
		{"empty frame", []byte{0}, []byte{}, nil},
		{"one byte", []byte{1, 'x'}, []byte("x"), nil},
		{"two-byte prefix", append([]byte{0xac, 0x02}, make([]byte, 300)...), make([]byte, 300), nil},
		{"clean eof", nil, nil, io.EOF},
		{"over the cap", append([]byte{0xad, 0x02}, make([]byte, 301)...), nil, ErrFrameTooLarge},
		{"1 GiB prefix", binary.AppendUvarint(nil, 1<<30), nil, ErrFrameTooLarge},
		{"max uint64 prefix", binary.AppendUvarint(nil, ^uint64(0)), nil, ErrFrameTooLarge},
		{"non-minimal zero", []byte{0x80, 0x00}, nil, ErrBadPrefix},
		{"non-minimal one", []byte{0x81, 0x00, 'x'}, nil, ErrBadPrefix},
		{"overflow in 10th byte", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, nil, ErrBadPrefix},
		{"11-byte prefix", bytes.Repeat([]byte{0x80}, 11), nil, ErrBadPrefix},
		{"prefix cut", []byte{0x80}, nil, ErrTruncated},
		{"body cut", []byte{5, 'a', 'b'}, nil, ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readFrame(bufio.NewReader(bytes.NewReader(tc.in)), limit)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFrameStreamMatchesReference writes random messages as frames into one
// stream and reads them back; the reference is the plain list of messages,
// and the encoding is checked against encoding/binary's uvarint.
func TestFrameStreamMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var msgs [][]byte
		var stream bytes.Buffer
		for i := rng.IntN(20); i >= 0; i-- {
			m := make([]byte, rng.IntN(1<<rng.IntN(15)))
			for j := range m {
				m[j] = byte(rng.Uint32())
			}
			msgs = append(msgs, m)
			if err := writeFrame(&stream, m); err != nil {
				t.Fatal(err)
			}
		}
		var ref []byte
		for _, m := range msgs {
			ref = append(binary.AppendUvarint(ref, uint64(len(m))), m...)
		}
		if !bytes.Equal(stream.Bytes(), ref) {
			t.Fatalf("round %d: encoding differs from the uvarint reference", round)
		}
		r := bufio.NewReader(&stream)
		for i, want := range msgs {
			got, err := readFrame(r, 1<<15)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d frame %d: %v", round, i, err)
			}
		}
		if _, err := readFrame(r, 1<<15); err != io.EOF {
			t.Fatalf("round %d: after the last frame: %v, want io.EOF", round, err)
		}
	}
}

// FuzzReadFrame: any input either fails with one of the package's errors
// (or io.EOF) or yields a frame whose encoding is exactly the bytes read.
func FuzzReadFrame(f *testing.F) {
	for _, s := range [][]byte{{0}, {3, 'a', 'b', 'c'}, {0x80, 0x01}, binary.AppendUvarint(nil, 1<<30), {0x80, 0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 10
		br := bytes.NewReader(in)
		got, err := readFrame(bufio.NewReaderSize(br, 16), limit)
		if err != nil {
			for _, known := range []error{io.EOF, ErrTruncated, ErrBadPrefix, ErrFrameTooLarge} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(got) > limit {
			t.Fatalf("frame of %d bytes over the cap", len(got))
		}
		enc := appendFrame(nil, got)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("frame does not re-encode to its input: %x vs %x", enc, in)
		}
	})
}

func TestResponseFrames(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), maxErrorBytes)) // 2 bytes per rune
	cases := []struct {
		name   string
		status byte
		body   []byte
		want   []byte
		err    error
	}{
		{"ok", statusOK, []byte("cert"), []byte("cert"), nil},
		{"ok empty", statusOK, nil, []byte{}, nil},
		{"error", statusError, errorText("not found"), nil, ErrRemote},
		{"long error truncated on a rune boundary", statusError, errorText(long), nil, ErrRemote},
		{"unknown status", 7, nil, nil, ErrBadResponse},
		{"error text not utf-8", statusError, []byte{0xff}, nil, ErrBadResponse},
		{"error text too long", statusError, bytes.Repeat([]byte("x"), maxErrorBytes+1), nil, ErrBadResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeResponse(&buf, tc.status, tc.body); err != nil {
				t.Fatal(err)
			}
			frame, err := readFrame(bufio.NewReader(&buf), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseResponse(frame)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := parseResponse(nil); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("empty frame: %v", err)
	}
	if n := len(errorText(long)); n > maxErrorBytes || n%2 != 0 {
		t.Fatalf("truncated error text of %d bytes", n)
	}
}

// FuzzParseResponse: any response frame either fails with a package error
// or parses into a body that re-encodes to the same frame.
func FuzzParseResponse(f *testing.F) {
	for _, s := range [][]byte{{statusOK}, {statusOK, 'x'}, append([]byte{statusError}, "gone"...), {statusError, 0xff}, {9}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		body, err := parseResponse(frame)
		if err != nil {
			if !errors.Is(err, ErrRemote) && !errors.Is(err, ErrBadResponse) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := writeResponse(&buf, statusOK, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), appendFrame(nil, frame)) {
			t.Fatalf("response does not re-encode: %x", frame)
		}
	})
}
