package exec

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/kairos-network/kairos/types"
)

// AccountsModule is the address of the system module that keeps account
// records: under each account's 32-byte address, the nonce of its last
// executed transaction. It is the sha2-256 of a domain tag, like every
// other address, so it cannot collide with an account or an instance.
var AccountsModule = types.Address(sha256.Sum256([]byte("kairos/system/accounts\x00")))

// nonceLen is the byte length of a stored nonce: fixed 8 bytes big-endian,
// so a record is cheap to read and has one encoding.
const nonceLen = 8

// AccountKey returns the state key of an account's record.
func AccountKey(a types.Address) types.StateKey {
	return types.StateKey{Module: AccountsModule, Key: a[:]}
}

// accountKey is AccountKey in the executor's internal string form.
func accountKey(a types.Address) string {
	return string(AccountsModule[:]) + string(a[:])
}

// Nonce decodes an account record (nil = a fresh account, nonce 0).
func Nonce(record []byte) (uint64, error) { return decodeNonce(record) }

func decodeNonce(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) != nonceLen {
		// Only the executor writes this key: a bad record is corruption.
		return 0, fmt.Errorf("%w: account record of %d bytes", ErrState, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// key joins a module and a key into the executor's internal string form
// (the 32 module bytes, then the key), whose byte order is (module, key).
func key(module types.Address, k []byte) string { return string(module[:]) + string(k) }

// splitKey is the inverse of key.
func splitKey(s string) types.StateKey {
	var k types.StateKey
	copy(k.Module[:], s)
	k.Key = []byte(s[types.AddressLen:])
	return k
}
