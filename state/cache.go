package state

import (
	"sync"
	"unsafe"

	"github.com/kairos-network/kairos/types"
)

// nodeSize is the memory one cached node costs, map entry included.
const nodeSize = int(unsafe.Sizeof(node{})) + 64

// nodeCache is a bounded cache of decoded nodes with two generations: hits
// are looked up in the current map and then in the previous one (and moved
// forward); when the current map fills half the budget, the previous one is
// dropped. It approximates LRU with O(1) work and no per-entry lists.
// Nodes are immutable, so sharing them between goroutines is safe.
type nodeCache struct {
	mu        sync.Mutex
	max       int // entries per generation
	cur, prev map[types.Hash]*node
}

func newNodeCache(bytes int) *nodeCache {
	max := bytes / nodeSize / 2
	if max < 16 {
		max = 16
	}
	return &nodeCache{max: max, cur: map[types.Hash]*node{}, prev: map[types.Hash]*node{}}
}

func (c *nodeCache) get(id types.Hash) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[id]; ok {
		return n
	}
	if n, ok := c.prev[id]; ok {
		c.addLocked(n)
		return n
	}
	return nil
}

func (c *nodeCache) put(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(n)
}

func (c *nodeCache) addLocked(n *node) {
	if len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[types.Hash]*node, c.max)
	}
	c.cur[n.id] = n
}
