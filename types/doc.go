// Package types holds the canonical wire and storage types of Kairos and
// their deterministic encoding.
//
// Everything that is hashed, signed or stored is encoded with CBOR Core
// Deterministic Encoding (RFC 8949 §4.2.1) through Encode, and read back
// through Decode, which accepts only the canonical form: no trailing bytes,
// no duplicate or unsorted map keys, no indefinite lengths, no floats and no
// tags. Because the encoding is unique, an object's identity (its multihash)
// is a function of its value alone.
//
// Every signature the chain depends on is checked under one rule,
// VerifySignature (ZIP-215, verify.go); SigBatch checks many at once with
// exactly the same verdicts, so no two validators can disagree on one.
//
// This package imports nothing else of the project.
package types
