package exec

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/types"
)

// Addresses of the native modules used by tests and benchmarks.
var (
	TokenModule   = nativeAddress("token")
	CounterModule = nativeAddress("counter")
	ScanModule    = nativeAddress("scan")
)

func nativeAddress(name string) types.Address {
	return types.Address(sha256.Sum256([]byte("kairos/native/" + name + "\x00")))
}

// NativeModules returns the test and benchmark module set at their
// addresses: Token, Counter and Scan.
func NativeModules() map[types.Address]NativeModule {
	return map[types.Address]NativeModule{TokenModule: Token{}, CounterModule: Counter{}, ScanModule: Scan{}}
}

// errBadArgs aborts a call whose arguments do not parse.
var errBadArgs = errors.New("bad arguments")

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// Token is a fungible token: balances under BalanceKey(account), 8 bytes
// big-endian.
//
//	mint(to[32] ‖ amount u64)      credit, no authority (tests only)
//	transfer(to[32] ‖ amount u64)  move from the sender, abort if short
type Token struct{}

// BalanceKey is the Token key of an account's balance.
func BalanceKey(a types.Address) []byte { return append([]byte{'b'}, a[:]...) }

// TransferArgs encodes the arguments of mint and transfer.
func TransferArgs(to types.Address, amount uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), to[:]...), amount)
}

// Call implements NativeModule.
func (Token) Call(c *Call, method string, args []byte) ([]byte, error) {
	if len(args) != types.AddressLen+8 {
		return nil, errBadArgs
	}
	to, amount := types.Address(args[:types.AddressLen]), u64(args[types.AddressLen:])
	add := func(a types.Address, delta uint64, sub bool) error {
		k := BalanceKey(a) // the overlay keeps no key it is passed
		v, err := c.Get(k)
		if err != nil {
			return err
		}
		bal := u64(v)
		switch {
		case sub && bal < delta:
			return fmt.Errorf("insufficient balance %d < %d", bal, delta)
		case sub:
			bal -= delta
		case bal+delta < bal:
			return errors.New("balance overflow")
		default:
			bal += delta
		}
		return c.Set(k, putU64(bal))
	}
	switch method {
	case "mint":
		return nil, add(to, amount, false)
	case "transfer":
		if err := add(c.Env.Sender, amount, true); err != nil {
			return nil, err
		}
		if err := add(to, amount, false); err != nil {
			return nil, err
		}
		return nil, c.Emit("transfer", args)
	}
	return nil, fmt.Errorf("token: no method %q", method)
}

// Counter keeps 8-byte counters under arbitrary keys.
//
//	incr(key)        add one, return the new value
//	spin(n u64)      burn n gas (out-of-gas tests)
//	fail(key)        increment, then abort (the write must vanish)
type Counter struct{}

// Call implements NativeModule.
func (Counter) Call(c *Call, method string, args []byte) ([]byte, error) {
	switch method {
	case "incr", "fail":
		v, err := c.Get(args)
		if err != nil {
			return nil, err
		}
		n := putU64(u64(v) + 1)
		if err := c.Set(args, n); err != nil {
			return nil, err
		}
		if method == "fail" {
			return nil, errors.New("counter: failing on purpose")
		}
		return n, c.Emit("incr", n)
	case "spin":
		return nil, c.Charge(u64(args))
	}
	return nil, fmt.Errorf("counter: no method %q", method)
}

// Scan exercises prefix access.
//
//	put(klen u8 ‖ key ‖ value)   set key (empty value deletes)
//	sum(prefix)                  add the u64 values under prefix; store the
//	                             sum under "total/" ‖ prefix and return it
//	clear(prefix)                delete every key under prefix
type Scan struct{}

// SumKey is where Scan.sum stores the sum of prefix.
func SumKey(prefix []byte) []byte { return append([]byte("total/"), prefix...) }

// PutArgs encodes the arguments of Scan.put.
func PutArgs(k, v []byte) []byte { return append(append([]byte{byte(len(k))}, k...), v...) }

// Call implements NativeModule.
func (Scan) Call(c *Call, method string, args []byte) ([]byte, error) {
	switch method {
	case "put":
		if len(args) == 0 || len(args) < 1+int(args[0]) {
			return nil, errBadArgs
		}
		return nil, c.Set(args[1:1+args[0]], args[1+args[0]:])
	case "sum":
		var sum uint64
		if err := c.Iterate(args, func(_, v []byte) error { sum += u64(v); return nil }); err != nil {
			return nil, err
		}
		return putU64(sum), c.Set(SumKey(args), putU64(sum))
	case "clear":
		var keys [][]byte
		if err := c.Iterate(args, func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil }); err != nil {
			return nil, err
		}
		for _, k := range keys {
			if err := c.Set(k, nil); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return nil, fmt.Errorf("scan: no method %q", method)
}
