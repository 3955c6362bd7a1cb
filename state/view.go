package state

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/kairos-network/kairos/types"
)

// View is a reader pinned to one retained version. While it is open, Prune
// keeps that version (a pinned View holds the prune horizon back), so its
// reads never meet a missing node. Close it when done. A View may be used by
// several goroutines at once.
type View struct {
	s      *Store
	height uint64
	root   slot

	closeOnce sync.Once
	mu        sync.RWMutex
	closed    bool
}

// View opens a reader of version height: ErrPruned below the prune horizon,
// ErrUnknownVersion above the latest commit.
func (s *Store) View(ctx context.Context, height uint64) (*View, error) {
	s.mu.Lock()
	if height < s.min {
		min := s.min
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: version %d < %d", ErrPruned, height, min)
	}
	if height > s.latest {
		latest := s.latest
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: version %d > %d", ErrUnknownVersion, height, latest)
	}
	s.views[height]++
	latest, root := s.latest, s.root
	s.mu.Unlock()
	v := &View{s: s, height: height, root: root}
	if height != latest {
		r, err := s.rootAt(ctx, height)
		if err != nil {
			v.Close()
			return nil, err
		}
		v.root = r
	}
	return v, nil
}

// Close releases the view's pin. It is idempotent.
func (v *View) Close() {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
		v.s.mu.Lock()
		if v.s.views[v.height]--; v.s.views[v.height] == 0 {
			delete(v.s.views, v.height)
		}
		v.s.mu.Unlock()
	})
}

// Height returns the view's version.
func (v *View) Height() uint64 { return v.height }

// Root returns the view's state root.
func (v *View) Root() types.Root { return types.Root(v.root.h) }

func (v *View) enter() error {
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return ErrViewClosed
	}
	return nil
}

// Get returns the value of k at the view's version, or nil if absent, by
// walking the tree.
func (v *View) Get(ctx context.Context, k types.StateKey) ([]byte, error) {
	if len(k.Key) > types.StateKeyMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k.Key))
	}
	if err := v.enter(); err != nil {
		return nil, err
	}
	defer v.mu.RUnlock()
	kp := types.KeyPath(k)
	cur := v.root
	for d := 0; ; d++ {
		switch cur.kind {
		case slotEmpty:
			return nil, nil
		case slotLeaf:
			if !cur.hasKey(k) {
				return nil, nil
			}
			return v.s.leafValue(ctx, v.height, kp, &cur)
		}
		n, err := v.s.loadNode(ctx, cur.ref())
		if err != nil {
			return nil, err
		}
		cur = n.slot(nibble(kp, d))
	}
}

// Prove returns one proof covering keys (1..types.ProofEntriesMax of them,
// no duplicates) at the view's version: inclusion with the value, or
// non-inclusion. Siblings shared by several keys appear once.
func (v *View) Prove(ctx context.Context, keys ...types.StateKey) (*types.Proof, error) {
	if len(keys) == 0 || len(keys) > types.ProofEntriesMax {
		return nil, fmt.Errorf("%w: %d keys to prove (1..%d)", types.ErrProofMalformed, len(keys), types.ProofEntriesMax)
	}
	if err := v.enter(); err != nil {
		return nil, err
	}
	defer v.mu.RUnlock()
	g := prover{v: v, ctx: ctx, kps: make([]types.Hash, len(keys))}
	p := &types.Proof{Height: v.height, Root: v.Root(), Entries: make([]types.ProofEntry, len(keys))}
	for i, k := range keys {
		if len(k.Key) > types.StateKeyMax {
			return nil, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k.Key))
		}
		p.Entries[i].Key = types.StateKey{Module: k.Module, Key: append([]byte{}, k.Key...)}
		g.kps[i] = types.KeyPath(k)
	}
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bytes.Compare(g.kps[order[a]][:], g.kps[order[b]][:]) < 0 })
	sorted := make([]types.ProofEntry, len(keys))
	kps := make([]types.Hash, len(keys))
	for i, j := range order {
		sorted[i], kps[i] = p.Entries[j], g.kps[j]
		if i > 0 && kps[i] == kps[i-1] {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateKey, sorted[i].Key)
		}
	}
	p.Entries, g.kps, g.entries = sorted, kps, sorted
	if err := g.walk(slotCursor(v.root), 0, 0, len(keys)); err != nil {
		return nil, err
	}
	g.b.Finish(p)
	return p, nil
}

// Prove is a shortcut for View(height).Prove(keys...).
func (s *Store) Prove(ctx context.Context, height uint64, keys ...types.StateKey) (*types.Proof, error) {
	v, err := s.View(ctx, height)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return v.Prove(ctx, keys...)
}

// cursor is a binary subtree: inner index i of node n, or a lone slot.
type cursor struct {
	n    *node
	i    int
	kind types.NodeKind
	h    types.Hash
	born uint64 // of the node, when n is not loaded yet
	leaf slot   // when kind is KindLeaf; packed until walk reads it
}

type prover struct {
	v       *View
	ctx     context.Context
	kps     []types.Hash
	entries []types.ProofEntry
	b       types.ProofBuilder
}

// slotCursor returns the cursor of a slot. A child node is loaded only when
// the walk enters it: as a sibling, its id is all a proof needs.
func slotCursor(s slot) cursor {
	switch s.kind {
	case slotEmpty:
		return cursor{kind: types.KindEmpty}
	case slotLeaf:
		return cursor{kind: types.KindLeaf, h: s.h, leaf: s}
	}
	return cursor{i: 1, kind: types.KindInternal, h: s.h, born: s.born}
}

// child returns the left (bit 0) or right child of an internal cursor whose
// node is loaded.
func (g *prover) child(c cursor, bit int) cursor {
	j := 2*c.i + bit
	if j >= fanout {
		return slotCursor(c.n.packedSlot(j - fanout))
	}
	k, h := c.n.sub(j)
	cur := cursor{n: c.n, i: j, kind: k, h: h}
	if k == types.KindLeaf {
		// Find the one leaf slot under inner subtree j.
		level := 0
		for 1<<(level+1) <= j {
			level++
		}
		width := fanout >> level
		lo := (j - 1<<level) * width
		for s := lo; s < lo+width; s++ {
			if sl := c.n.packedSlot(s); sl.kind == slotLeaf {
				cur.leaf = sl
			}
		}
	}
	return cur
}

// walk mirrors types.Verify: entries[lo:hi] share the first depth bits and
// lie under c.
func (g *prover) walk(c cursor, depth, lo, hi int) error {
	if c.kind != types.KindInternal {
		// Only a leaf on a proven key's path is read: a sibling's is
		// its hash alone, and stays packed.
		c.leaf = unpack(c.leaf, g.v.s.modules)
		for i := lo; i < hi; i++ {
			e := &g.entries[i]
			e.Depth = uint16(depth)
			if c.kind != types.KindLeaf {
				continue
			}
			if c.leaf.hasKey(e.Key) {
				val, err := g.v.s.leafValue(g.ctx, g.v.height, g.kps[i], &c.leaf)
				if err != nil {
					return err
				}
				e.Value = val
			} else {
				// The slot holds the other leaf's value hash: no read.
				e.Other = &types.ProofLeaf{KeyPath: c.leaf.keyPath(), ValueHash: c.leaf.vh()}
			}
		}
		return nil
	}
	if depth >= types.KeyPathDepth {
		return fmt.Errorf("%w: tree deeper than %d", ErrCorrupt, types.KeyPathDepth)
	}
	if c.n == nil {
		n, err := g.v.s.loadNode(g.ctx, nodeRef{born: c.born, id: c.h})
		if err != nil {
			return err
		}
		c.n = n
	}
	mid := lo
	for mid < hi && g.kps[mid].Bit(depth) == 0 {
		mid++
	}
	left, right := g.child(c, 0), g.child(c, 1)
	switch {
	case mid == hi:
		if err := g.walk(left, depth+1, lo, hi); err != nil {
			return err
		}
		g.b.AddSibling(right.h)
	case mid == lo:
		if err := g.walk(right, depth+1, lo, hi); err != nil {
			return err
		}
		g.b.AddSibling(left.h)
	default:
		if err := g.walk(left, depth+1, lo, mid); err != nil {
			return err
		}
		return g.walk(right, depth+1, mid, hi)
	}
	return nil
}

// Leaves calls fn for every (key path, key, value) of the view's version in
// key path order (the order of snapshot chunks), until fn returns an error,
// which Leaves returns. fn must not keep key or value, nor change key (it
// shares the node's memory).
func (v *View) Leaves(ctx context.Context, fn func(kp types.Hash, k types.StateKey, value []byte) error) error {
	if err := v.enter(); err != nil {
		return err
	}
	defer v.mu.RUnlock()
	var walk func(s slot) error
	walk = func(s slot) error {
		switch s.kind {
		case slotEmpty:
			return nil
		case slotLeaf:
			kp := s.keyPath()
			val, err := v.s.leafValue(ctx, v.height, kp, &s)
			if err != nil {
				return err
			}
			return fn(kp, s.key(), val)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := v.s.loadNode(ctx, s.ref())
		if err != nil {
			return err
		}
		for j := range n.entries() {
			if err := walk(n.at(j)); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(v.root)
}
