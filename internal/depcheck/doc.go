// Package depcheck enforces the dependency rules of ARCHITECTURE.md in its
// tests: which project packages each top-level folder may import, and which
// folders a third-party module is confined to. A new third-party module
// fails the test until it is given a rule, so every dependency is a decision.
package depcheck
