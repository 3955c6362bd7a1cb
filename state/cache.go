package state

import "sync"

// nodeCache is a bounded cache of decoded nodes with two generations: hits
// are looked up in the current map and then in the previous one (and moved
// forward); when the current map fills half the budget, the previous one is
// dropped. It approximates LRU with O(1) work and no per-entry lists.
// Nodes are immutable, so sharing them between goroutines is safe. Entries
// are keyed by (born, id), like the records: an id stored again by a later
// version (A → B → A) names other child records, which an older reader
// must not be handed.
type nodeCache struct {
	mu        sync.Mutex
	max       int // bytes per generation
	curBytes  int
	cur, prev map[nodeRef]*node
}

func newNodeCache(bytes int) *nodeCache {
	return &nodeCache{max: bytes / 2, cur: map[nodeRef]*node{}, prev: map[nodeRef]*node{}}
}

func (c *nodeCache) get(r nodeRef) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[r]; ok {
		return n
	}
	if n, ok := c.prev[r]; ok {
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
	r := nodeRef{born: n.born, id: n.id}
	if _, ok := c.cur[r]; ok {
		return // loaded by two readers at once
	}
	if c.curBytes >= c.max {
		c.prev, c.cur, c.curBytes = c.cur, make(map[nodeRef]*node, len(c.cur)), 0
	}
	c.cur[r] = n
	c.curBytes += n.size()
}

// replace drops the nodes that a commit replaced and adds the ones it
// wrote, taking the lock once per cacheChunk of them rather than once each
// (a 10k-key block has tens of thousands of each) while not holding readers
// off for a whole block. Old views may still read a dropped node (and load
// it again); dropping it keeps the budget for live nodes, which commits
// read.
func (c *nodeCache) replace(stale []nodeRef, nodes []*node) {
	for lo := 0; lo < len(stale); lo += cacheChunk {
		c.mu.Lock()
		for i := lo; i < min(lo+cacheChunk, len(stale)); i++ {
			r := stale[i]
			if n, ok := c.cur[r]; ok {
				c.curBytes -= n.size()
				delete(c.cur, r)
			}
			delete(c.prev, r)
		}
		c.mu.Unlock()
	}
	for lo := 0; lo < len(nodes); lo += cacheChunk {
		c.mu.Lock()
		for _, n := range nodes[lo:min(lo+cacheChunk, len(nodes))] {
			c.addLocked(n)
		}
		c.mu.Unlock()
	}
}

// cacheChunk is how many cache changes replace makes per hold of the lock.
const cacheChunk = 1024
