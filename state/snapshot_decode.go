package state

import (
	"math"

	"github.com/kairos-network/kairos/types"
)

// decodeChunk decodes chunk bytes as types.Decode does, reading the
// canonical form of the chunk's shape directly (types.CanonReader) instead
// of through Decode's reflection: Decode was a third of a chunk's
// verification and made two objects per leaf for the collector. The keys,
// values and proof hashes of the result alias b, which must not change
// while the chunk is in use.
//
// Anything the direct reader does not take (another shape, a non-canonical
// head, a hash of the wrong length, a tag) goes to types.Decode, which
// gives the verdict, so both accept the same bytes and give the same chunk
// (FuzzChunkImport and TestDecodeChunkMatchesDecode compare them).
func decodeChunk(b []byte) (*Chunk, error) {
	if c, ok := decodeChunkFast(b); ok {
		return c, nil
	}
	var c Chunk
	if err := types.Decode(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Least encoded sizes of a leaf and of a proof node, which bound how many
// a chunk of len(b) bytes can claim before they are allocated: a leaf is
// two array heads, a 34-byte module, and two strings of at least a head;
// a proof node an array head, a kind and a 34-byte hash.
const (
	chunkLeafBytesMin  = 1 + 1 + 2 + types.AddressLen + 1 + 1
	chunkProofBytesMin = 1 + 1 + 2 + types.HashLen
)

func decodeChunkFast(b []byte) (*Chunk, bool) {
	r := &types.CanonReader{Data: b}
	if !r.ArrayOf(6) {
		return nil, false
	}
	c := &Chunk{}
	c.Height = r.Uint(math.MaxUint64)
	c.Index = uint32(r.Uint(math.MaxUint32))
	c.Start = types.Hash(r.Bytes32())
	c.End = types.Hash(r.Bytes32())
	if !r.Null() {
		n := r.Count(chunkLeafBytesMin)
		if r.Bad {
			return nil, false
		}
		c.Leaves = make([]SnapshotLeaf, n)
		for i := range c.Leaves {
			l := &c.Leaves[i]
			r.ArrayOf(2)
			r.ArrayOf(2)
			l.Key.Module = types.Address(types.Hash(r.Bytes32()))
			l.Key.Key = r.BytesOrNil()
			l.Value = r.BytesOrNil()
		}
	}
	if !r.Null() {
		n := r.Count(chunkProofBytesMin)
		if r.Bad {
			return nil, false
		}
		c.Proof = make([]ProofNode, n)
		for i := range c.Proof {
			p := &c.Proof[i]
			r.ArrayOf(2)
			p.Kind = types.NodeKind(r.Uint(math.MaxUint8))
			p.Hash = types.Hash(r.Bytes32())
		}
	}
	return c, r.Done()
}

// appendChunk appends the canonical encoding of c, the bytes types.Encode
// gives (TestDecodeChunkMatchesDecode, FuzzChunkImport), written directly:
// through reflection, encoding was a tenth of an export's CPU.
func appendChunk(b []byte, c *Chunk) []byte {
	b = append(b, 0x86) // array of 6
	b = types.AppendHead(b, 0, c.Height)
	b = types.AppendHead(b, 0, uint64(c.Index))
	b = appendBytes(b, c.Start[:])
	b = appendBytes(b, c.End[:])
	if c.Leaves == nil {
		b = append(b, 0xf6)
	} else {
		b = types.AppendHead(b, 4, uint64(len(c.Leaves)))
		for i := range c.Leaves {
			l := &c.Leaves[i]
			b = append(b, 0x82, 0x82)
			b = appendBytes(b, l.Key.Module[:])
			b = appendBytesOrNil(b, l.Key.Key)
			b = appendBytesOrNil(b, l.Value)
		}
	}
	if c.Proof == nil {
		return append(b, 0xf6)
	}
	b = types.AppendHead(b, 4, uint64(len(c.Proof)))
	for _, p := range c.Proof {
		b = append(b, 0x82)
		b = types.AppendHead(b, 0, uint64(p.Kind))
		b = appendBytes(b, p.Hash[:])
	}
	return b
}

// chunkSize is the encoded size of c, so that appendChunk allocates once.
func chunkSize(c *Chunk) int {
	n := 1 + 9 + 5 + 2*34 + 9 + 9 + len(c.Proof)*(2+2+34)
	for i := range c.Leaves {
		l := &c.Leaves[i]
		n += 2 + 34 + 9 + len(l.Key.Key) + 9 + len(l.Value)
	}
	return n
}

func appendBytes(b, s []byte) []byte {
	return append(types.AppendHead(b, 2, uint64(len(s))), s...)
}

func appendBytesOrNil(b, s []byte) []byte {
	if s == nil {
		return append(b, 0xf6)
	}
	return appendBytes(b, s)
}
