package types

import (
	"encoding/hex"
	"errors"
	"fmt"

	mh "github.com/multiformats/go-multihash"
)

// HashLen is the digest length of the state hash function (sha2-256).
const HashLen = 32

// Root is a state root: the sha2-256 digest of the root of the Merkle tree.
// Its canonical external form is a multihash (code 0x12, length 32); the
// hash function is fixed at genesis, so only the digest is kept in memory.
type Root [HashLen]byte

// EmptyRoot is the root of the empty state.
var EmptyRoot Root

// ErrBadRoot reports a root whose multihash is malformed or not sha2-256.
var ErrBadRoot = errors.New("types: bad root multihash")

// Multihash returns the root as a sha2-256 multihash.
func (r Root) Multihash() mh.Multihash {
	m, err := mh.Encode(r[:], mh.SHA2_256)
	if err != nil {
		panic(err) // sha2-256 with a 32-byte digest always encodes
	}
	return m
}

// RootFromMultihash parses a sha2-256 multihash into a Root.
func RootFromMultihash(b []byte) (Root, error) {
	var r Root
	d, err := mh.Decode(b)
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	if d.Code != mh.SHA2_256 || d.Length != HashLen {
		return r, fmt.Errorf("%w: code %#x length %d", ErrBadRoot, d.Code, d.Length)
	}
	copy(r[:], d.Digest)
	return r, nil
}

// String returns the hex of the multihash.
func (r Root) String() string { return hex.EncodeToString(r.Multihash()) }

// MarshalCBOR encodes the root as its multihash byte string.
func (r Root) MarshalCBOR() ([]byte, error) { return encMode.Marshal([]byte(r.Multihash())) }

// UnmarshalCBOR decodes a multihash byte string.
func (r *Root) UnmarshalCBOR(b []byte) error {
	var raw []byte
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	v, err := RootFromMultihash(raw)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (r Root) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Root) UnmarshalText(b []byte) error {
	raw, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	v, err := RootFromMultihash(raw)
	if err != nil {
		return err
	}
	*r = v
	return nil
}
