package node

import "time"

// Clock is the node's local time source. The consensus core never reads a
// clock: the driver stamps every event with Now, and arms the core's timer
// with Timer. Production uses SystemClock; tests may inject their own.
// Both methods are called from several goroutines.
type Clock interface {
	// Now returns the local time in unix nanoseconds.
	Now() int64
	// Timer returns a channel that receives once when the clock reaches
	// at, and a function that releases the timer early.
	Timer(at int64) (<-chan struct{}, func())
}

// SystemClock is the machine's wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() int64 { return time.Now().UnixNano() }

// Timer implements Clock.
func (SystemClock) Timer(at int64) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	t := time.AfterFunc(time.Duration(at-time.Now().UnixNano()), func() { ch <- struct{}{} })
	return ch, func() { t.Stop() }
}
