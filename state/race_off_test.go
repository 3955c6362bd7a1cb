//go:build !race

package state

// RaceEnabled: see race_on_test.go.
const RaceEnabled = false
