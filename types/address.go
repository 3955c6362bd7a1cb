package types

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// AddressLen is the byte length of an Address.
const AddressLen = 32

// Address identifies an account or a module instance: the sha2-256 digest of
// a domain tag and the account's ed25519 public key (or, for a module
// instance, of its creation parameters).
type Address [AddressLen]byte

// AddressPrefix starts the text form of every address.
const AddressPrefix = "kai"

// ErrBadAddress reports an address text that fails to parse or whose
// checksum does not match.
var ErrBadAddress = errors.New("types: bad address")

var addrEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// AddressFromPublicKey returns the account address of an ed25519 public key.
func AddressFromPublicKey(pub ed25519.PublicKey) Address {
	// Built in a stack buffer: the executor derives every sender's
	// address per block, and appending to a fresh slice allocated each time.
	const domain = "kairos/account\x00"
	var buf [len(domain) + ed25519.PublicKeySize]byte
	b := append(append(buf[:0], domain...), pub...)
	return Address(sha256.Sum256(b))
}

// String returns the text form: "kai" followed by lower-case base32 of the
// 32 address bytes and a 4-byte checksum (the first bytes of
// sha256("kairos/addr-checksum" ‖ address)).
func (a Address) String() string {
	buf := make([]byte, 0, AddressLen+4)
	buf = append(buf, a[:]...)
	buf = append(buf, addrChecksum(a)...)
	return AddressPrefix + addrEncoding.EncodeToString(buf)
}

// ParseAddress parses the text form produced by String.
func ParseAddress(s string) (Address, error) {
	var a Address
	body, ok := strings.CutPrefix(s, AddressPrefix)
	if !ok {
		return a, fmt.Errorf("%w: %q lacks prefix %q", ErrBadAddress, s, AddressPrefix)
	}
	raw, err := addrEncoding.DecodeString(body)
	if err != nil || len(raw) != AddressLen+4 {
		return a, fmt.Errorf("%w: %q is not %d base32 bytes", ErrBadAddress, s, AddressLen+4)
	}
	copy(a[:], raw)
	if string(addrChecksum(a)) != string(raw[AddressLen:]) {
		return a, fmt.Errorf("%w: %q checksum mismatch", ErrBadAddress, s)
	}
	return a, nil
}

func addrChecksum(a Address) []byte {
	sum := sha256.Sum256(append([]byte("kairos/addr-checksum\x00"), a[:]...))
	return sum[:4]
}

// MarshalText implements encoding.TextMarshaler (used by JSON).
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Address) UnmarshalText(b []byte) error {
	v, err := ParseAddress(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// StateKey names one value in the state: the module instance that owns it
// and the module-chosen key bytes.
type StateKey struct {
	_      struct{} `cbor:",toarray"`
	Module Address
	Key    []byte
}

// StateKeyMax is the longest key a module may use.
const StateKeyMax = 1024

// Compare orders state keys by module, then key bytes: the order of the
// state's flat index, of a block's write set and of state.Commit's input.
func (k StateKey) Compare(o StateKey) int {
	if c := bytes.Compare(k.Module[:], o.Module[:]); c != 0 {
		return c
	}
	return bytes.Compare(k.Key, o.Key)
}

// String renders the key for logs and errors.
func (k StateKey) String() string { return fmt.Sprintf("%s/%x", k.Module, k.Key) }
