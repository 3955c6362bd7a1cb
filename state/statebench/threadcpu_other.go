//go:build !linux

package statebench

import "time"

// threadCPU falls back to the process's CPU time where a thread's is not
// available: it then counts pebble's background work too.
func threadCPU() time.Duration { return cpuTime() }
