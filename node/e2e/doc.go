// Package e2e holds the multi-process devnet test: it builds bin/kairos,
// writes a 4-validator network with `kairos init` on free 127.0.0.1 ports,
// runs each validator as its own `kairos node` process, drives signed
// transactions through the HTTP APIs of several validators and kills one
// validator with SIGKILL mid-workload before restarting it from its home.
//
// # Invariants checked
//
//   - Every acknowledged transaction (the API accepted it) is committed
//     exactly once: its id is in exactly one block on every validator, at
//     the same height everywhere, and every validator returns its receipt
//     at that height.
//   - All validators reach identical blocks (id, state root) at every
//     height up to a common final height.
//
// The package has only tests. KAIROS_LONG=1 runs a longer soak (more
// transactions, two kills of every validator in turn).
package e2e
