package guest

import "encoding/hex"

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
func (a Address) String() string { return hex.EncodeToString(a[:]) }
