// Package sdk is the Go client SDK for Kairos applications: keys, building
// and signing transactions, simulation, submission, proof-verified queries
// and event streams. It never imports the node.
package sdk
