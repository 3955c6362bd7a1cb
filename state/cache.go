package state

import (
	"encoding/binary"
	"sync"
)

// nodeCache is a bounded cache of decoded nodes with two generations: hits
// are looked up in the current map and then in the previous one (and moved
// forward); when the current map fills half the budget, the previous one is
// dropped. It approximates LRU with O(1) work and no per-entry lists.
// Nodes are immutable, so sharing them between goroutines is safe. Entries
// are found by (born, id), like the records: an id stored again by a later
// version (A → B → A) names other child records, which an older reader
// must not be handed.
//
// The maps are keyed by cacheKey, 64 bits of (born, id), and every hit is
// checked against the whole ref: two refs with the same cacheKey (ids are
// hashes a writer can grind for a 64-bit collision) only evict each other,
// they are never confused. A 40-byte struct key cost a commit of a 10k-key
// block at 1M keys about a tenth of its CPU in hashing and comparing keys
// of maps far larger than the processor's caches (see RATIONALE.md).
type nodeCache struct {
	mu        sync.Mutex
	max       int // bytes per generation
	curBytes  int
	cur, prev map[uint64]*node
	misses    uint64 // gets that found nothing (Store.NodeCacheMisses)
}

// cacheKey folds a ref into a map key: the id is a hash, so its first 8
// bytes are already uniform; the born is mixed in so that the same id
// written by two versions does not always share a key.
func cacheKey(r nodeRef) uint64 {
	return binary.LittleEndian.Uint64(r.id[:8]) ^ r.born*0x9e3779b97f4a7c15
}

func newNodeCache(bytes int) *nodeCache {
	return &nodeCache{max: bytes / 2, cur: map[uint64]*node{}, prev: map[uint64]*node{}}
}

func (c *nodeCache) get(r nodeRef) *node {
	k := cacheKey(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[k]; ok && n.ref() == r {
		return n
	}
	if n, ok := c.prev[k]; ok && n.ref() == r {
		c.addLocked(k, n)
		return n
	}
	c.misses++
	return nil
}

// getMany is get of each of refs into ns (nil where the cache does not
// hold it), under one hold of the lock, and without counting misses: the
// caller loads those through get. A commit asks for the children of a
// node its writes reach at once: each lookup is a probe of a map far
// larger than the processor's caches, then a read of the node, and one
// after the other every probe waited for memory alone, while the lookups
// of one loop overlap in the processor. Last it reads each node's entries
// (node.touch), which the caller reads next, for the same reason; the byte
// it returns is only there to keep those reads.
func (c *nodeCache) getMany(refs []nodeRef, ns []*node) byte {
	c.mu.Lock()
	for i, r := range refs {
		k := cacheKey(r)
		if n, ok := c.cur[k]; ok && n.ref() == r {
			ns[i] = n
		} else if n, ok := c.prev[k]; ok && n.ref() == r {
			c.addLocked(k, n)
			ns[i] = n
		}
	}
	c.mu.Unlock()
	var touched byte
	for _, n := range ns {
		if n != nil {
			touched += n.touch()
		}
	}
	return touched
}

// missCount returns how many gets found nothing so far.
func (c *nodeCache) missCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.misses
}

// usage returns the nodes the cache holds (both generations, a node in
// both counted once) and the bytes its estimate (node.size) gives them,
// for benchmarks that set the estimate against the heap.
func (c *nodeCache) usage() (nodes, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.cur {
		nodes, bytes = nodes+1, bytes+n.size()
	}
	for k, n := range c.prev {
		if c.cur[k] != n {
			nodes, bytes = nodes+1, bytes+n.size()
		}
	}
	return nodes, bytes
}

func (c *nodeCache) put(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(cacheKey(n.ref()), n)
}

// addLocked adds n under k, replacing whatever holds k (a colliding ref).
func (c *nodeCache) addLocked(k uint64, n *node) {
	if old, ok := c.cur[k]; ok {
		if old.ref() == n.ref() {
			return // loaded by two readers at once
		}
		c.curBytes -= old.size()
	}
	if c.curBytes >= c.max {
		c.prev, c.cur, c.curBytes = c.cur, make(map[uint64]*node, len(c.cur)), 0
	}
	c.cur[k] = n
	c.curBytes += n.size()
}

// dropped is a node a commit stopped using, with its cache key and size
// taken while the commit had the node at hand (droppedNode), so that
// replace finds and drops it without reading the node again: by then the
// node is out of the processor's caches, and reading the ~20k of a 10k-key
// block was a third of replace's CPU at 1M keys (see RATIONALE.md).
type dropped struct {
	n    *node
	key  uint64
	size int
}

func droppedNode(n *node) dropped { return dropped{n, cacheKey(n.ref()), n.size()} }

// replace drops the nodes that a commit replaced and adds the ones it
// wrote, taking the lock once per cacheChunk of them rather than once each
// (a 10k-key block has tens of thousands of each) while not holding readers
// off for a whole block. Old views may still read a dropped node (and load
// it again); dropping it keeps the budget for live nodes, which commits
// read. An entry is dropped only if it is the very node the commit
// replaced, never a colliding ref; a copy of the same ref loaded again
// after its generation was dropped is left to age out like any other.
func (c *nodeCache) replace(old []dropped, nodes []*node) {
	for lo := 0; lo < len(old); lo += cacheChunk {
		c.mu.Lock()
		for _, o := range old[lo:min(lo+cacheChunk, len(old))] {
			if c.cur[o.key] == o.n {
				c.curBytes -= o.size
				delete(c.cur, o.key)
			}
			if c.prev[o.key] == o.n {
				delete(c.prev, o.key)
			}
		}
		c.mu.Unlock()
	}
	for lo := 0; lo < len(nodes); lo += cacheChunk {
		c.mu.Lock()
		for _, n := range nodes[lo:min(lo+cacheChunk, len(nodes))] {
			c.addLocked(cacheKey(n.ref()), n)
		}
		c.mu.Unlock()
	}
}

// cacheChunk is how many cache changes replace makes per hold of the lock.
const cacheChunk = 1024
