package state

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkNodeBytes reports what the node cache accounts per node and
// per key (node.size) for the decoded nodes of a tree of benchKeys keys with
// 100-byte values: the cache is sized in bytes, so this is how many nodes
// of a tree it holds. The nodes are decoded from the datastore, as a read
// or a commit that misses the cache loads them, and heap-B/node is what the
// cache's nodes really take of the heap (the cache itself included).
func BenchmarkNodeBytes(b *testing.B) {
	ctx := context.Background()
	n := benchKeys()
	s, err := OpenMemory(Options{})
	if err != nil {
		b.Fatal(err)
	}
	for h := 0; h*benchBlock < n; h++ {
		ws := make([]Write, 0, benchBlock)
		for i := h * benchBlock; i < min(n, (h+1)*benchBlock); i++ {
			ws = append(ws, Write{Key: benchKey(i), Value: benchValue(i, 0)})
		}
		if _, err := s.Commit(ctx, uint64(h+1), ws); err != nil {
			b.Fatal(err)
		}
	}
	var nodes, bytes int
	var heap uint64
	for range b.N {
		s.cache = newNodeCache(1 << 30)
		nodes, bytes = 0, 0
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		queue := []slot{s.root}
		for len(queue) > 0 {
			sl := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			if sl.kind != slotChild {
				continue
			}
			nd, err := s.loadNode(ctx, sl.ref())
			if err != nil {
				b.Fatal(err)
			}
			nodes, bytes = nodes+1, bytes+nd.size()
			a := nd.all()
			queue = append(queue, a[:]...)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap = m1.HeapAlloc - m0.HeapAlloc
	}
	b.ReportMetric(float64(bytes)/float64(nodes), "B/node")
	b.ReportMetric(float64(bytes)/float64(n), "B/key")
	b.ReportMetric(float64(nodes), "nodes")
	b.ReportMetric(float64(heap)/float64(nodes), "heap-B/node")
}
