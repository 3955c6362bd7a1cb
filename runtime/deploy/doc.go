// Package deploy is the consensus-critical deploy pipeline of a module:
// identify the original bytes (code CID), validate them against the network
// Config, and instrument them with the meter version recorded beside the
// output. Node code stores Prepared.Original under Prepared.CodeCID and
// Prepared.Instrumented with Prepared.MeterVersion; `kairos module check`
// prints the same Prepared.
//
// Invariants: Prepare is deterministic; it never returns instrumented bytes
// for a module that failed validation; the code CID is always of the
// original bytes, so the same source deploys to the same id under any
// meter version.
package deploy
