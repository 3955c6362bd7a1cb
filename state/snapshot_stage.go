package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/kairos-network/kairos/types"
)

// The staging record of a verified chunk. Add verifies a chunk (VerifyChunk:
// key path, value hash and leaf hash of every leaf, then the range proof)
// and stages the chunk together with the hashes it computed, so that the
// install reads them back instead of hashing every leaf again (RATIONALE.md,
// "Why does an install trust the staging area's hashes"):
//
//	0x01                          stageRecordV1
//	uvarint                       length of the chunk's bytes
//	chunk bytes                   exactly as received and verified
//	n × (key path, value hash, leaf hash)   one per leaf of the chunk, in order
//	4 bytes                       CRC-32C (Castagnoli) of everything before, little endian
//
// The checksum catches a record altered after staging (a write that goes
// around the importer, a backend that does not checksum its blocks as
// pebble and leveldb do); the install still rebuilds the tree from the
// leaf hashes and checks the root against the manifest before it switches.
// A record staged by older code is the chunk's bytes alone: a canonical
// chunk starts with a CBOR array head of six (0x86), never with 0x01, so the
// first byte tells the two apart, and such a record is decoded and hashed
// as before. Any other first byte is refused.
const (
	stageRecordV1   = 0x01
	stageLegacyHead = 0x86 // CBOR array of 6: Chunk's encoding
	stageLeafBytes  = 3 * types.HashLen
	stageCRCBytes   = 4
)

// appendStaged returns the staging record of chunk, whose verified leaves
// are ls.
func appendStaged(chunk []byte, ls []builtLeaf) []byte {
	b := make([]byte, stagedLen(chunk, ls))
	putStaged(b, chunk, ls)
	return b
}

// stagedLen is the length of the staging record of chunk and ls.
func stagedLen(chunk []byte, ls []builtLeaf) int {
	var v [binary.MaxVarintLen64]byte
	return 1 + binary.PutUvarint(v[:], uint64(len(chunk))) + len(chunk) + len(ls)*stageLeafBytes + stageCRCBytes
}

// putStaged writes the staging record of chunk and ls into b, which is
// stagedLen bytes long (on pebble, the value of a batch operation: the
// record is written once, where the batch holds it).
func putStaged(b, chunk []byte, ls []builtLeaf) {
	b[0] = stageRecordV1
	k := 1 + binary.PutUvarint(b[1:], uint64(len(chunk)))
	k += copy(b[k:], chunk)
	for i := range ls {
		l := &ls[i]
		k += copy(b[k:], l.kp[:])
		k += copy(b[k:], l.vh[:])
		k += copy(b[k:], l.lh[:])
	}
	binary.LittleEndian.PutUint32(b[k:], crc32.Checksum(b[:k], castagnoli))
}

// readStaged returns the leaves of staged chunk i from its record b: with
// the hashes the record holds (a record of stageRecordV1), or decoded and
// hashed (a record of older code). Keys and values alias b. Every error
// wraps ErrCorrupt.
func readStaged(i int, b []byte) ([]builtLeaf, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: staged chunk %d: empty record", ErrCorrupt, i)
	}
	switch b[0] {
	case stageLegacyHead:
		c, err := readStagedChunk(i, b)
		if err != nil {
			return nil, err
		}
		out := make([]builtLeaf, len(c.Leaves))
		for j, l := range c.Leaves {
			out[j] = hashLeaf(l)
		}
		return out, nil
	case stageRecordV1:
	default:
		return nil, fmt.Errorf("%w: staged chunk %d: unknown record version %#02x", ErrCorrupt, i, b[0])
	}
	if len(b) < 1+stageCRCBytes {
		return nil, fmt.Errorf("%w: staged chunk %d: record of %d bytes", ErrCorrupt, i, len(b))
	}
	body, sum := b[:len(b)-stageCRCBytes], b[len(b)-stageCRCBytes:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, fmt.Errorf("%w: staged chunk %d: checksum mismatch", ErrCorrupt, i)
	}
	n, k := binary.Uvarint(body[1:])
	if k <= 0 || n > uint64(len(body)-1-k) {
		return nil, fmt.Errorf("%w: staged chunk %d: bad chunk length", ErrCorrupt, i)
	}
	chunk, hashes := body[1+k:1+k+int(n)], body[1+k+int(n):]
	c, err := readStagedChunk(i, chunk)
	if err != nil {
		return nil, err
	}
	if len(hashes) != len(c.Leaves)*stageLeafBytes {
		return nil, fmt.Errorf("%w: staged chunk %d: %d bytes of hashes for %d leaves", ErrCorrupt, i, len(hashes), len(c.Leaves))
	}
	out := make([]builtLeaf, len(c.Leaves))
	for j, l := range c.Leaves {
		h := hashes[j*stageLeafBytes:]
		o := &out[j]
		o.key, o.value = l.Key, l.Value
		copy(o.kp[:], h)
		copy(o.vh[:], h[types.HashLen:])
		copy(o.lh[:], h[2*types.HashLen:])
		// The key paths place the leaves: as verification found them,
		// inside the chunk's range and increasing (comparisons, no
		// hashing), or the record is damaged.
		if bytes.Compare(o.kp[:], c.Start[:]) < 0 || bytes.Compare(o.kp[:], c.End[:]) > 0 ||
			j > 0 && bytes.Compare(out[j-1].kp[:], o.kp[:]) >= 0 {
			return nil, fmt.Errorf("%w: staged chunk %d: key path of leaf %d out of place", ErrCorrupt, i, j)
		}
	}
	return out, nil
}

// readStagedChunk decodes the chunk bytes of staged chunk i.
func readStagedChunk(i int, b []byte) (*Chunk, error) {
	c, err := decodeChunk(b)
	if err != nil {
		return nil, fmt.Errorf("%w: staged chunk %d: %w", ErrCorrupt, i, err)
	}
	if int(c.Index) != i {
		return nil, fmt.Errorf("%w: staged chunk %d holds chunk %d", ErrCorrupt, i, c.Index)
	}
	return c, nil
}
