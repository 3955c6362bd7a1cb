// Package sdktest holds the integration tests of the client SDK against a
// real in-process devnet: sdk may not import the node, and the node may
// not import sdk, so the tests that need both live here. They also check
// that the formats sdk mirrors (checkpoint signing, system addresses)
// agree with the node's own code.
package sdktest
