package state

import (
	"sync"

	"github.com/kairos-network/kairos/types"
)

// nodeCache is a bounded cache of decoded nodes with two generations: hits
// are looked up in the current map and then in the previous one (and moved
// forward); when the current map fills half the budget, the previous one is
// dropped. It approximates LRU with O(1) work and no per-entry lists.
// Nodes are immutable, so sharing them between goroutines is safe.
type nodeCache struct {
	mu        sync.Mutex
	max       int // bytes per generation
	curBytes  int
	cur, prev map[types.Hash]*node
}

func newNodeCache(bytes int) *nodeCache {
	return &nodeCache{max: bytes / 2, cur: map[types.Hash]*node{}, prev: map[types.Hash]*node{}}
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
	if _, ok := c.cur[n.id]; ok {
		c.cur[n.id] = n // a re-created node: keep the newest born
		return
	}
	if c.curBytes >= c.max {
		c.prev, c.cur, c.curBytes = c.cur, make(map[types.Hash]*node, len(c.cur)), 0
	}
	c.cur[n.id] = n
	c.curBytes += n.size()
}

// drop removes a node that the latest version no longer uses. Old views
// may still read it (and load it again); dropping it keeps the budget for
// live nodes, which commits read.
func (c *nodeCache) drop(id types.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[id]; ok {
		c.curBytes -= n.size()
		delete(c.cur, id)
	}
	delete(c.prev, id)
}
