package types

import (
	"crypto/sha256"
	"encoding/binary"
)

// Hash is a sha2-256 digest: inside the state tree a key path, a value hash,
// a leaf hash or the hash of an internal subtree; elsewhere the id of a
// transaction or a block. The hash function is fixed at genesis, so the
// multihash prefix is not stored.
type Hash [HashLen]byte

// EmptyHash is the hash of an empty subtree (32 zero bytes).
var EmptyHash Hash

// KeyPathDepth is the number of bits in a key path, and so the greatest depth
// of the binary tree.
const KeyPathDepth = HashLen * 8

// Domain prefixes of the tree hashes. They keep a leaf from ever being read
// as an internal node and the other way round.
const (
	leafPrefix     = 0x00
	internalPrefix = 0x01
)

var keyPathTag = []byte("kairos/key")

// KeyPath returns the 256-bit path of a state key in the tree:
// sha256("kairos/key" ‖ uvarint(len(module)) ‖ module ‖ key). The length
// prefix keeps the module/key boundary unambiguous should the module
// identifier ever change size.
func KeyPath(k StateKey) Hash {
	h := sha256.New()
	var lenBuf [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lenBuf[:], uint64(len(k.Module)))
	h.Write(keyPathTag)
	h.Write(lenBuf[:n])
	h.Write(k.Module[:])
	h.Write(k.Key)
	var out Hash
	h.Sum(out[:0])
	return out
}

// ValueHash returns H(value).
func ValueHash(value []byte) Hash { return sha256.Sum256(value) }

// LeafHash returns H(0x00 ‖ keyPath ‖ valueHash).
func LeafHash(keyPath, valueHash Hash) Hash {
	var buf [1 + 2*HashLen]byte
	buf[0] = leafPrefix
	copy(buf[1:], keyPath[:])
	copy(buf[1+HashLen:], valueHash[:])
	return sha256.Sum256(buf[:])
}

// InternalHash returns H(0x01 ‖ left ‖ right). Callers apply the collapse
// rules first (see NodeKind.Combine): an empty pair is empty and a single
// leaf beside an empty subtree moves up unchanged.
func InternalHash(left, right Hash) Hash {
	var buf [1 + 2*HashLen]byte
	buf[0] = internalPrefix
	copy(buf[1:], left[:])
	copy(buf[1+HashLen:], right[:])
	return sha256.Sum256(buf[:])
}

// Bit returns bit i (0 = most significant bit of byte 0) of a key path: the
// branch taken at depth i, 0 = left, 1 = right.
func (h Hash) Bit(i int) int { return int(h[i/8]>>(7-uint(i%8))) & 1 }

// NodeKind classifies a binary subtree for the collapse rules.
type NodeKind uint8

// The kinds of a binary subtree.
const (
	KindEmpty    NodeKind = iota // no leaves; hash is EmptyHash
	KindLeaf                     // exactly one leaf; hash is that leaf's hash
	KindInternal                 // two or more leaves
)

// Combine returns the kind and hash of the parent of two subtrees, applying
// the sparse tree's collapse rules: two empty subtrees make an empty one, a
// single leaf beside an empty subtree moves up unchanged, and anything else
// is hashed with InternalHash.
func Combine(lk NodeKind, lh Hash, rk NodeKind, rh Hash) (NodeKind, Hash) {
	switch {
	case lk == KindEmpty && rk == KindEmpty:
		return KindEmpty, EmptyHash
	case lk == KindEmpty && rk == KindLeaf:
		return KindLeaf, rh
	case lk == KindLeaf && rk == KindEmpty:
		return KindLeaf, lh
	}
	return KindInternal, InternalHash(lh, rh)
}
