// Package node wires a Kairos peer together: mempool, consensus driver,
// block executor, checkpoints, HTTP API and metrics.
package node
