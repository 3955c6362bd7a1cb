package types

import (
	"sync"
	"sync/atomic"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// MaxCachedKeys bounds the expanded public keys the process keeps for
// signature checks (about 1.5 KiB each, so ~6 MiB at most). Senders repeat:
// a key that signed a verified signature is likely to sign the next
// transaction too, and every node checks each transaction once more. See
// RATIONALE.md, "Why does signature checking keep expanded public keys?".
const MaxCachedKeys = 4096

// An expanded key holds the decompressed point -A and a table of its
// multiples: a check with it skips A's decompression (a field square root)
// and, in batches below voi's Pippenger threshold, multiplies by A with
// the table. It is a cache of a pure function of the key's 32 bytes, so
// hits and misses cannot change a verdict; voi's expanded checks apply the
// same ZIP-215 rule to A (TestVerifyRule runs every case cold and warm).
//
// The cache has two generations of at most MaxCachedKeys/2 keys each: a
// lookup hits in either and moves a key of the old one into the current
// one; when the current one is full it becomes the old one and the old one
// is dropped. That is an LRU approximation without a list or per-entry
// bookkeeping. Only keys of signatures that verified are inserted, so a
// flood of garbage signatures under fresh keys cannot push out the honest
// senders' keys.
type keyCache struct {
	mu       sync.Mutex
	cur, old map[[PublicKeySize]byte]*voi.ExpandedPublicKey
	half     int

	hits, misses atomic.Uint64
}

// keys is the process's cache; validators in one process share it, as they
// share the CPU the cache saves.
var keys = newKeyCache(MaxCachedKeys)

func newKeyCache(n int) *keyCache {
	c := &keyCache{half: max(1, n/2)}
	c.reset()
	return c
}

func (c *keyCache) reset() {
	c.mu.Lock()
	c.cur = make(map[[PublicKeySize]byte]*voi.ExpandedPublicKey, c.half)
	c.old = nil
	c.mu.Unlock()
	c.hits.Store(0)
	c.misses.Store(0)
}

// get returns pub expanded, and whether it came from the cache (a key not
// cached is to be put once a signature under it verified). It returns nil
// for a key of the wrong length or that is no point's encoding: no
// signature verifies under such a key.
func (c *keyCache) get(pub []byte) (k *voi.ExpandedPublicKey, cached bool) {
	if len(pub) != PublicKeySize {
		return nil, false
	}
	a := [PublicKeySize]byte(pub)
	c.mu.Lock()
	k, ok := c.cur[a]
	if !ok {
		if k, ok = c.old[a]; ok {
			c.insertLocked(a, k)
			delete(c.old, a) // held once (a no-op if the insert rotated)
		}
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
		return k, true
	}
	c.misses.Add(1)
	k, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		return nil, false
	}
	return k, false
}

// put caches k, whose key signed a signature that verified.
func (c *keyCache) put(k *voi.ExpandedPublicKey) {
	a := [PublicKeySize]byte(k.CompressedY())
	c.mu.Lock()
	if _, ok := c.cur[a]; !ok {
		c.insertLocked(a, k)
		delete(c.old, a)
	}
	c.mu.Unlock()
}

// insertLocked adds k to the current generation, which becomes the old
// one when full. c.mu is held.
func (c *keyCache) insertLocked(a [PublicKeySize]byte, k *voi.ExpandedPublicKey) {
	if len(c.cur) >= c.half {
		c.old, c.cur = c.cur, make(map[[PublicKeySize]byte]*voi.ExpandedPublicKey, c.half)
	}
	c.cur[a] = k
}

// len returns how many keys are cached.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// KeyCacheStats reports the process's expanded-key cache: lookups that
// found the key, lookups that expanded it, and the keys held.
func KeyCacheStats() (hits, misses uint64, held int) {
	return keys.hits.Load(), keys.misses.Load(), keys.len()
}
