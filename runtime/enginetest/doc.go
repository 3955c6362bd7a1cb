// Package enginetest holds the runtime's end-to-end tests: real modules
// (the example contracts, the hostile corpus of runtime/testdata/hostile,
// generated workloads) deployed through runtime/deploy and run through
// runtime/host on runtime/vm, in every engine configuration that consensus
// must not be able to tell apart: wazero's compiler and interpreter, fresh
// instances and pooled, restored ones.
//
// Invariants checked: every configuration gives the same status, error,
// return data, gas, events and write set for every transaction, whatever
// the pooled instances ran before; every hostile module is rejected at
// deploy with its rule's sentinel or ends in the same status with the same
// gas everywhere; running the corpus in a loop keeps process RSS bounded.
//
// The package has no non-test code. KAIROS_LONG=1 runs the RSS loop for a
// minute instead of a few iterations.
package enginetest
