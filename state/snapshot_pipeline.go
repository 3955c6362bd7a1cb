package state

import (
	"runtime"
	"sync"
)

// snapAheadPerCore is how many items per core inOrder produces ahead of
// the one it consumes: enough to keep every core busy while the consumer
// waits on one slow item, few enough that memory stays a handful of chunks.
const snapAheadPerCore = 2

// inOrder runs produce(0..n-1) on up to snapAheadPerCore goroutines per core
// and hands the results to consume in index order, on the calling
// goroutine. Snapshot export and install spend their CPU in work that is
// independent per chunk (reading and hashing leaves, encoding) but must
// deliver chunks in order; this keeps the order and bounds how many results
// wait in memory. The first error in index order is returned, so errors are
// deterministic too. produce must be safe to call concurrently.
func inOrder[T any](n int, produce func(i int) (T, error), consume func(i int, v T) error) error {
	type result struct {
		v   T
		err error
	}
	ready := make([]chan result, n)
	var wg sync.WaitGroup
	defer wg.Wait() // no producer outlives an early return
	start := func(i int) {
		ready[i] = make(chan result, 1) // a producer never blocks, even after an early return
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := produce(i)
			ready[i] <- result{v, err}
		}()
	}
	ahead := snapAheadPerCore * runtime.GOMAXPROCS(0)
	for i := 0; i < min(ahead, n); i++ {
		start(i)
	}
	for i := 0; i < n; i++ {
		r := <-ready[i]
		ready[i] = nil
		if r.err != nil {
			return r.err
		}
		if j := i + ahead; j < n {
			start(j)
		}
		if err := consume(i, r.v); err != nil {
			return err
		}
	}
	return nil
}
