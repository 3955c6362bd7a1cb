// Package abi is the thin layer between the guest SDK and the host: the
// same Go-level functions over two backends chosen by build tag.
//
//   - wasip1: every function wraps a //go:wasmimport of module "kairos"
//     (docs/abi.md), turning Go slices into (pointer, length) pairs and
//     running the two-call size pattern for host-owned byte strings.
//   - everything else (native): every function forwards to the Host
//     installed with Install, the in-memory fake that sdk/guest/guesttest
//     provides, so module code runs under plain `go test`.
//
// Invariants both backends keep: returned slices belong to the caller (the
// host never keeps or reuses them); Abort never returns; there is no global
// state besides the installed Host and the OnInstall hooks (native) or the
// module's memory (wasm).
package abi
