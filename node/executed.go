package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/kairos-network/kairos/types"
)

// The executed index tells a new transaction from one the node executed
// already without reading the disk. Every transaction new to the pool is
// asked "executed?" (admit); almost all are not, and the pebble lookup that
// answered it missed in the memtable and every level's filter: 7% of the
// validators' CPU in the profile of round 3 of issue #6. The index answers "no" exactly and "maybe"
// otherwise; a "maybe" is settled by the record read, as before. See
// RATIONALE.md, "Why does the node keep its executed transaction ids in
// Bloom filters?".
//
// Invariant: every id with a transaction record (/node/tx/) on disk is a
// "maybe". storeBlock is the only writer of those records and adds their
// ids before it commits them; open adds the ids already on disk.
// Generations of filters bound the memory: one whose highest height is
// pruned (pruneBlocks deleted its records) is dropped, except that a
// transaction deferred at a height keeps its record past that height's
// pruning until the height that settles it, so the ids deferred since open
// are held exactly until they settle.
const (
	// ExecutedGenIDs is how many ids one filter generation holds; the
	// retained transaction records (RetainBlocks heights) bound how many
	// generations live at once.
	ExecutedGenIDs = 1 << 20
	// executedGenBlocks: 12 bits per id in 512-bit blocks (a lookup reads
	// one 64-byte block), k = 7; under 1% false "maybe" at capacity.
	executedGenBlocks = ExecutedGenIDs * 12 / 512
	executedBitsK     = 7
)

// executedIndex is the set of ids that may have a transaction record.
type executedIndex struct {
	mu       sync.RWMutex
	gens     []*bloomGen // oldest first; the last one takes new ids
	deferred map[types.Hash]struct{}
}

// bloomGen is one generation: a blocked Bloom filter of up to
// ExecutedGenIDs ids and the highest height they were stored at.
type bloomGen struct {
	blocks [][8]uint64
	n      int
	top    uint64
}

func newBloomGen() *bloomGen { return &bloomGen{blocks: make([][8]uint64, executedGenBlocks)} }

// bloomSlot picks id's block and bit mask within it. Ids are sha256
// digests, so their bytes are already uniform; a sender grinding ids only
// makes its own lookups read the disk.
func bloomSlot(id *types.Hash, nblocks int) (int, [8]uint64) {
	blk := int(binary.LittleEndian.Uint64(id[0:8]) % uint64(nblocks))
	h := binary.LittleEndian.Uint64(id[8:16])
	var mask [8]uint64
	for range executedBitsK {
		bit := h & 511
		mask[bit>>6] |= 1 << (bit & 63)
		h >>= 9
	}
	return blk, mask
}

func (g *bloomGen) add(id *types.Hash, h uint64) {
	blk, mask := bloomSlot(id, len(g.blocks))
	for i, m := range mask {
		g.blocks[blk][i] |= m
	}
	g.n++
	g.top = max(g.top, h)
}

func (g *bloomGen) has(id *types.Hash) bool {
	blk, mask := bloomSlot(id, len(g.blocks))
	for i, m := range mask {
		if g.blocks[blk][i]&m != m {
			return false
		}
	}
	return true
}

func newExecutedIndex() *executedIndex {
	return &executedIndex{deferred: map[types.Hash]struct{}{}}
}

// mayHave reports whether id may have a transaction record; false is
// exact.
func (x *executedIndex) mayHave(id types.Hash) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if _, ok := x.deferred[id]; ok {
		return true
	}
	for i := len(x.gens) - 1; i >= 0; i-- {
		if x.gens[i].has(&id) {
			return true
		}
	}
	return false
}

// add records that ids have records stored at height h.
func (x *executedIndex) add(h uint64, ids ...types.Hash) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range ids {
		if len(x.gens) == 0 || x.gens[len(x.gens)-1].n >= ExecutedGenIDs {
			x.gens = append(x.gens, newBloomGen())
		}
		x.gens[len(x.gens)-1].add(&ids[i], h)
	}
}

// deferral records the ids deferred (held until settled) and settled at
// one height; both sets also go through add.
func (x *executedIndex) deferral(deferred, settled []types.Hash) {
	if len(deferred)+len(settled) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range deferred {
		x.deferred[id] = struct{}{}
	}
	for _, id := range settled { // after: deferred and settled at one height
		delete(x.deferred, id)
	}
}

// dropPruned drops the full generations whose every height is pruned
// (pruned reports it); the generation taking new ids stays.
func (x *executedIndex) dropPruned(pruned func(h uint64) bool) {
	x.mu.RLock()
	var tops []uint64
	for _, g := range x.gens[:max(len(x.gens)-1, 0)] {
		tops = append(tops, g.top)
	}
	x.mu.RUnlock()
	drop := 0
	for _, top := range tops {
		if !pruned(top) {
			break
		}
		drop++
	}
	if drop == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gens = append([]*bloomGen(nil), x.gens[drop:]...)
}

// generations returns how many filter generations are held.
func (x *executedIndex) generations() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.gens)
}

// loadExecuted fills x with the ids of the transaction records on disk (a
// key-only scan). Their heights are not read: they count as stored at
// height top (the state's latest + 1: a crash may leave the records of the
// block after it), so they are dropped once that height is pruned. A
// transaction deferred before the restart and still deferred then is
// answered "not executed" from that point, as if its record were pruned;
// that needs RetainBlocks heights within its deferral's MaxAge.
func loadExecuted(ctx context.Context, d ds.Datastore, x *executedIndex, top uint64) error {
	res, err := d.Query(ctx, query.Query{Prefix: nsTx, KeysOnly: true})
	if err != nil {
		return fmt.Errorf("node: read transaction records: %w", err)
	}
	defer res.Close()
	var ids []types.Hash
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("node: read transaction records: %w", r.Error)
		}
		var id types.Hash
		if s := strings.TrimPrefix(r.Key, nsTx); len(s) != 2*types.HashLen {
			return fmt.Errorf("%w: transaction record key %s", ErrCorrupt, r.Key)
		} else if _, err := hex.Decode(id[:], []byte(s)); err != nil {
			return fmt.Errorf("%w: transaction record key %s", ErrCorrupt, r.Key)
		}
		if ids = append(ids, id); len(ids) == 4096 {
			x.add(top, ids...)
			ids = ids[:0]
		}
	}
	x.add(top, ids...)
	return nil
}
