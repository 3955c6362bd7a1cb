package state

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// collidingRef returns a ref with another born whose cacheKey equals r's.
func collidingRef(r nodeRef, born uint64) nodeRef {
	c := nodeRef{born: born, id: r.id}
	c.id[31] ^= 0xff // another id
	x := binary.LittleEndian.Uint64(r.id[:8]) ^ r.born*0x9e3779b97f4a7c15 ^ born*0x9e3779b97f4a7c15
	binary.LittleEndian.PutUint64(c.id[:8], x)
	return c
}

func TestCacheCollidingRefsAreNeverConfused(t *testing.T) {
	a := nodeRef{born: 3, id: types.Hash{1, 2, 3}}
	b := collidingRef(a, 7)
	if cacheKey(a) != cacheKey(b) || a == b {
		t.Fatal("test refs do not collide")
	}
	na := &node{id: a.id, born: a.born}
	nb := &node{id: b.id, born: b.born}
	c := newNodeCache(1 << 20)
	c.put(na)
	c.put(nb)
	if got := c.get(a); got != nil {
		t.Fatalf("get(a) returned %v after b took its key", got.ref())
	}
	if got := c.get(b); got != nb {
		t.Fatal("get(b) missed")
	}
	// a's stale entry must not drop b.
	c.replace([]dropped{droppedNode(&node{id: a.id, born: a.born})}, nil)
	if c.get(b) != nb {
		t.Fatal("replace of a colliding stale ref dropped b")
	}
	c.replace([]dropped{droppedNode(nb)}, []*node{na})
	if c.get(b) != nil || c.get(a) != na {
		t.Fatal("replace did not swap b for a")
	}
}

// TestCacheAgainstModel runs random puts, gets, lookups of several refs
// at once (getMany) and replaces over refs that collide in pairs, against
// a map of what was last put: a hit always returns the node of the ref
// asked for, a node just put is found, getMany finds what get finds, and
// a node replaced as stale is gone.
func TestCacheAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var refs []nodeRef
	for i := 0; i < 16; i++ {
		r := nodeRef{born: uint64(i), id: types.Hash{byte(i), 9}}
		refs = append(refs, r, collidingRef(r, uint64(i)+100))
	}
	nodes := map[nodeRef]*node{}
	for _, r := range refs {
		nodes[r] = &node{id: r.id, born: r.born}
	}
	// A budget of a few nodes, so that generations turn over too.
	c := newNodeCache(6 * nodes[refs[0]].size())
	for i := 0; i < 20_000; i++ {
		r := refs[rng.IntN(len(refs))]
		switch rng.IntN(4) {
		case 3:
			var ask []nodeRef
			for range 1 + rng.IntN(4) {
				ask = append(ask, refs[rng.IntN(len(refs))])
			}
			got := make([]*node, len(ask))
			c.getMany(ask, got)
			for j, r := range ask {
				if got[j] != nil && got[j] != nodes[r] {
					t.Fatalf("op %d: getMany(%v) returned node %v", i, r, got[j].ref())
				}
				if got[j] == nil && c.get(r) != nil {
					t.Fatalf("op %d: getMany missed %v, which get finds", i, r)
				}
			}
			continue
		case 0:
			c.put(nodes[r])
			if c.get(r) != nodes[r] {
				t.Fatalf("op %d: node just put is missing", i)
			}
		case 1:
			if got := c.get(r); got != nil && got != nodes[r] {
				t.Fatalf("op %d: get(%v) returned node %v", i, r, got.ref())
			}
		case 2:
			c.replace([]dropped{droppedNode(nodes[r])}, nil)
			if c.get(r) != nil {
				t.Fatalf("op %d: stale node still cached", i)
			}
		}
	}
}

// TestNodeCacheMisses: a proof on a reopened store reads its nodes from the
// datastore, each counted as a miss; the same proof again finds them cached.
func TestNodeCacheMisses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ws := make([]Write, 0, 200)
	for i := range 200 {
		ws = append(ws, Write{Key: types.StateKey{Key: []byte{byte(i), byte(i >> 8)}}, Value: []byte("v")})
	}
	s, err := OpenPebble(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, 1, ws); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenPebble(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m0 := s.NodeCacheMisses()
	if _, err := s.Prove(ctx, 1, ws[7].Key); err != nil {
		t.Fatal(err)
	}
	m1 := s.NodeCacheMisses()
	if _, err := s.Prove(ctx, 1, ws[7].Key); err != nil {
		t.Fatal(err)
	}
	if m1 == m0 {
		t.Fatal("a proof on a reopened store counted no miss")
	}
	if again := s.NodeCacheMisses() - m1; again != 0 {
		t.Fatalf("the same proof again missed %d times", again)
	}
}

// nodeReadCounter is a datastore that counts the node records read from it.
type nodeReadCounter struct {
	ds.Batching
	reads atomic.Int64
}

func (d *nodeReadCounter) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	if strings.HasPrefix(k.String(), nsNode) {
		d.reads.Add(1)
	}
	return d.Batching.Get(ctx, k)
}

// TestNodeCacheMissesCountReads: NodeCacheMisses counts one miss per node
// record read, also when a pipelined commit looks for a node of the
// version whose write is in flight, misses it and reads it once that write
// is over (it counted two).
func TestNodeCacheMissesCountReads(t *testing.T) {
	ctx := context.Background()
	d := &nodeReadCounter{Batching: dssync.MutexWrap(ds.NewMapDatastore())}
	s, err := Open(ctx, d, Options{CacheBytes: 1}) // every lookup misses
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := func(i int) types.StateKey { return types.StateKey{Key: []byte{byte(i), byte(i >> 8)}} }
	ws := make([]Write, 0, 300)
	for i := range 300 {
		ws = append(ws, Write{Key: key(i), Value: []byte("v")})
	}
	if _, err := s.Commit(ctx, 1, ws); err != nil {
		t.Fatal(err)
	}
	m0, r0 := s.NodeCacheMisses(), d.reads.Load()
	var wait func() error
	for h := uint64(2); h <= 12; h++ {
		ws := make([]Write, 0, 40)
		for i := range 40 {
			ws = append(ws, Write{Key: key(int(h)*37 + i*7), Value: []byte{byte(h)}})
		}
		if _, wait, err = s.CommitAsync(ctx, h, ws); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	misses, reads := s.NodeCacheMisses()-m0, d.reads.Load()-r0
	if reads == 0 {
		t.Fatal("the commits read no node record")
	}
	if misses != uint64(reads) {
		t.Fatalf("%d cache misses counted for %d node records read", misses, reads)
	}
}

// TestCacheUsageCountsEachNodeOnce: usage counts a node found in both
// generations (moved forward by a get) once, and the nodes of both
// generations after a flip.
func TestCacheUsageCountsEachNodeOnce(t *testing.T) {
	mk := func(i int) *node { return &node{id: types.Hash{byte(i), 1}, born: uint64(i)} }
	one := mk(0).size()
	c := newNodeCache(2 * 3 * one) // three nodes per generation
	for i := range 4 {
		c.put(mk(i)) // the fourth flips: three in prev, one in cur
	}
	if n, b := c.usage(); n != 4 || b != 4*one {
		t.Fatalf("usage %d nodes, %d bytes; want 4, %d", n, b, 4*one)
	}
	if c.get(mk(1).ref()) == nil { // moved forward: in both maps
		t.Fatal("node 1 missed")
	}
	if n, b := c.usage(); n != 4 || b != 4*one {
		t.Fatalf("after a get from prev: usage %d nodes, %d bytes; want 4, %d", n, b, 4*one)
	}
}

// TestNodeSizeFollowsLayout: the cache's estimate of a node (node.size) is
// its struct, its mem and a fixed overhead, and mem holds a leaf of a
// module with an id as its value hash and key only (the id is in its
// entry), a leaf of a module without one with the address too: so a node
// made by a commit and the same node decoded take what their leaves take.
func TestNodeSizeFollowsLayout(t *testing.T) {
	mods := newModuleTable(ModuleIDsMax)
	known, other := types.Address{7}, types.Address{9}
	mods.assign([]types.Address{known})
	var a [fanout]slot
	keys := []types.StateKey{{Module: known, Key: []byte("abc")}, {Module: known, Key: []byte("de")}, {Module: other, Key: []byte("f")}}
	for i, k := range keys {
		a[i*4] = leafSlot(types.KeyPath(k), types.Hash{byte(i)}, k)
	}
	a[15] = slot{kind: slotChild, h: types.Hash{1}, born: 1}
	n := makeNode(3, &a, mods)
	n.id = n.computeInner(new(innerHashes))
	dec, err := decodeNode(appendNode(nil, n, mods), n.ref(), mods)
	if err != nil {
		t.Fatal(err)
	}
	mem := 4*entrySize + (types.HashLen + 3) + (types.HashLen + 2) + (types.HashLen + types.AddressLen + 1)
	for _, x := range []*node{n, dec} {
		if len(x.mem) != mem {
			t.Fatalf("mem of %d bytes, want %d", len(x.mem), mem)
		}
		if want := int(unsafe.Sizeof(node{})) + cap(x.mem) + 64; x.size() != want {
			t.Fatalf("size %d, want %d", x.size(), want)
		}
	}
	// A decoded node's mem is one allocation of exactly its length.
	if dec.size() != int(unsafe.Sizeof(node{}))+mem+64 {
		t.Fatalf("decoded node of size %d, want %d", dec.size(), int(unsafe.Sizeof(node{}))+mem+64)
	}
	if withoutIDs(dec.all()) != withoutIDs(a) {
		t.Fatal("the decoded node's slots differ")
	}
}
