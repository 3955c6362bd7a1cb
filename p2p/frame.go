package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame is a minimal (canonical) uvarint length followed by that many
// bytes. Minimal means the last prefix byte is non-zero unless the length is
// zero, so every length has exactly one encoding and a frame re-encodes to
// the bytes it was read from.

// maxPrefixLen is the longest uvarint we read; any cap we configure fits.
const maxPrefixLen = binary.MaxVarintLen64

// appendFrame appends the frame of msg to dst.
func appendFrame(dst, msg []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

// writeFrame writes msg as one frame with a single Write call, so a frame is
// never interleaved with another writer's bytes on a shared stream.
func writeFrame(w io.Writer, msg []byte) error {
	_, err := w.Write(appendFrame(make([]byte, 0, maxPrefixLen+len(msg)), msg))
	return err
}

// readPrefix reads a frame's length prefix and checks it against limit
// before anything is allocated. io.EOF is returned only when the stream ends
// cleanly before the first prefix byte.
func readPrefix(r io.ByteReader, limit int) (int, error) {
	var n uint64
	for i := 0; i < maxPrefixLen; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, ErrTruncated
			}
			return 0, err
		}
		if i == maxPrefixLen-1 && b > 1 {
			return 0, fmt.Errorf("%w: uvarint overflows 64 bits", ErrBadPrefix)
		}
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: non-minimal uvarint", ErrBadPrefix)
			}
			if n > uint64(limit) {
				return 0, fmt.Errorf("%w: %d > %d bytes", ErrFrameTooLarge, n, limit)
			}
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("%w: uvarint longer than %d bytes", ErrBadPrefix, maxPrefixLen)
}

// frameReader is the reading side of a stream: a byte reader for prefixes
// over the raw stream, for io.ReadFull of bodies.
type frameReader interface {
	io.Reader
	io.ByteReader
}

// readFrame reads one frame of at most limit bytes. See readPrefix for EOF.
func readFrame(r frameReader, limit int) ([]byte, error) {
	n, err := readPrefix(r, limit)
	if err != nil {
		return nil, err
	}
	return readBody(r, n)
}

// readBody reads a frame body of n bytes, whose prefix was already checked.
func readBody(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, truncated(err)
	}
	return buf, nil
}

// truncated maps an end of stream inside a frame to ErrTruncated.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}
