//go:build !wasip1

package guesttest

import (
	"bytes"
	"strconv"

	"github.com/kairos-network/kairos/sdk/guest"
)

// Access is one entry of a transaction's declared access list: a key of a
// module, or with Prefix every key that starts with Key; Write allows
// writes besides reads.
type Access struct {
	Module guest.Address
	Key    []byte
	Prefix bool
	Write  bool
}

// accessViolation ends the whole transaction, whatever frame it happens in
// (docs/abi.md section 4.6).
type accessViolation struct{ reason string }

// CallDeclared runs method like Call, but checks every state access and
// every cross-module call against declared, as the node does: a read needs
// an entry covering the key, a write a write entry, an iteration a prefix
// entry covering its prefix, a call any entry for the callee's module.
// Anything else ends the transaction with StatusAccessViolation.
func (c *Chain) CallDeclared(sender, to guest.Address, method string, input []byte, declared []Access) Result {
	c.declared = append([]Access{}, declared...)
	defer func() { c.declared = nil }()
	return c.Call(sender, to, method, input)
}

// covers reports whether entry e allows an access to key (iteration: to
// every key under key, when prefix is set) of module m.
func (e Access) covers(m guest.Address, key []byte, prefix, write bool) bool {
	if e.Module != m || write && !e.Write {
		return false
	}
	if e.Prefix {
		return bytes.HasPrefix(key, e.Key)
	}
	return !prefix && bytes.Equal(key, e.Key)
}

// checkAccess panics with an accessViolation unless the declared list
// (when there is one) allows the access.
func (c *Chain) checkAccess(m guest.Address, key []byte, prefix, write bool) {
	if c.declared == nil {
		return
	}
	for _, e := range c.declared {
		if e.covers(m, key, prefix, write) {
			return
		}
	}
	what := "read"
	if write {
		what = "write"
	}
	if prefix {
		what = "iterate"
	}
	panic(accessViolation{"host: undeclared " + what + " of " + m.String() + "/" + strconv.Quote(string(key))})
}

// checkCallee panics with an accessViolation unless some entry names the
// callee's module.
func (c *Chain) checkCallee(m guest.Address) {
	if c.declared == nil {
		return
	}
	for _, e := range c.declared {
		if e.Module == m {
			return
		}
	}
	panic(accessViolation{"host: undeclared call to module " + m.String()})
}
