//go:build !wasip1

// Package guesttest is the native test harness for Kairos modules written
// with sdk/guest: an in-memory fake of the host ABI (docs/abi.md) on which
// module code runs under plain `go test`.
//
// A Chain holds the state of every registered module, a clock and a block
// height. Chain.Call runs one method as a transaction would: the method
// sees Input, Caller, Self, the time and height; its writes and events are
// kept only if it returns normally; Abort, a Go panic or a broken ABI rule
// (key too long, too many events, …) end it with the matching status and
// discard everything, like the real host. Modules call each other through
// guest.Call between modules registered with Deploy, with the depth limit,
// the reentrancy rule and the result codes of the ABI.
//
// Declared access lists are checked only by CallDeclared (Call allows every
// access). Gas is not modelled: there is always enough. The real wasm
// build runs in the real runtime in integration tests.
//
// Concurrency: a Chain is installed as the process-wide host for the
// duration of each Call; Calls of different Chains are serialized by a
// package lock, so tests may run in parallel but do not gain from it.
package guesttest
