package guest

// AddressLen is the byte length of an Address.
const AddressLen = 32

// Address identifies an account or a module instance: 32 raw bytes, the
// same as types.Address (which this package may not import).
type Address [AddressLen]byte

// IsZero reports whether a is all zero bytes, which no account or module
// has (addresses are sha2-256 digests).
func (a Address) IsZero() bool { return a == Address{} }

// String returns the lower-case hex form, for messages and logs. The
// checksummed text form of the node is computed outside modules.
// (encoding/hex would pull in fmt and os, and with them WASI imports
// beyond the runtime's own; see docs/abi.md section 8.)
func (a Address) String() string {
	const digits = "0123456789abcdef"
	var s [2 * AddressLen]byte
	for i, b := range a {
		s[2*i], s[2*i+1] = digits[b>>4], digits[b&15]
	}
	return string(s[:])
}
