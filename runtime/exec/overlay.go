package exec

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kairos-network/kairos/types"
)

// Errors a runner gets from an Overlay for a guest's bad request; they are
// guest failures (StatusAborted), not node errors.
var (
	// ErrKeyTooLong reports a key over types.StateKeyMax.
	ErrKeyTooLong = errors.New("exec: key too long")
	// ErrValueTooLarge reports a value over types.StateValueMax.
	ErrValueTooLarge = errors.New("exec: value too large")
)

// Overlay is a transaction's view of the state: its own writes over the
// writes of earlier transactions of the block over the parent version. It
// belongs to one transaction and one goroutine. Returned slices must not
// be modified; values passed to Set are not copied and must not change.
type Overlay interface {
	// Get returns the value of module's key, or nil when absent. An error
	// wrapping ErrState is a node error; ErrKeyTooLong a guest error.
	Get(module types.Address, key []byte) ([]byte, error)
	// Set writes value (empty = delete). It keeps no reference to key
	// after it returns: callers reuse the key's memory (Arena.Release).
	Set(module types.Address, key, value []byte) error
	// Iterate opens an Iterator over the present keys of module with
	// prefix, in key byte order. Close it when done.
	Iterate(module types.Address, prefix []byte) (*Iterator, error)
}

// write is one pending write of a transaction: slot is the key's slot in
// the block's accessTable, or -1 for a key no transaction declared exactly
// (under a declared prefix, or outside a block); k is the key in the
// executor's string form either way. An empty value deletes. e is the
// key's entry among the transaction's own (-1: not one of them): the merge
// hands its prefetched parent value to the commit as the write's old value
// (state.Write.Old). It fits in slot's padding.
type write struct {
	slot int32
	e    int32
	k    string
	v    []byte
}

// blockLayer holds the published writes of a block's finished
// transactions. get and scan return the newest version written by a
// transaction before idx; slot is k's slot (-1: none).
type blockLayer interface {
	get(slot int32, k string, idx int) ([]byte, bool)
	scan(prefix string, idx int, fn func(k string, v []byte))
	publish(idx int, writes []write)
}

// serialLayer is the block layer of serial execution: the latest value, by
// slot, and of other keys by key. The zero value is a layer without slots.
type serialLayer struct {
	keys  []string // the block's exact keys by slot (sorted)
	vals  [][]byte
	set   []bool
	extra map[string][]byte
}

func newSerialLayer(t *accessTable) *serialLayer {
	return &serialLayer{keys: t.keys, vals: make([][]byte, len(t.keys)), set: make([]bool, len(t.keys))}
}

func (s *serialLayer) get(slot int32, k string, _ int) ([]byte, bool) {
	if slot >= 0 {
		return s.vals[slot], s.set[slot]
	}
	v, ok := s.extra[k]
	return v, ok
}

func (s *serialLayer) scan(prefix string, _ int, fn func(string, []byte)) {
	lo, hi := under(s.keys, prefix)
	for j := lo; j < hi; j++ {
		if s.set[j] {
			fn(s.keys[j], s.vals[j])
		}
	}
	for k, v := range s.extra {
		if strings.HasPrefix(k, prefix) {
			fn(k, v)
		}
	}
}

func (s *serialLayer) publish(_ int, writes []write) {
	for _, w := range writes {
		if w.slot >= 0 {
			s.vals[w.slot], s.set[w.slot] = w.v, true
			continue
		}
		if s.extra == nil {
			s.extra = make(map[string][]byte)
		}
		s.extra[w.k] = w.v
	}
}

// emptyLayer is the block layer of a block without conflicts, where no
// transaction may see another's writes.
type emptyLayer struct{}

func (emptyLayer) get(int32, string, int) ([]byte, bool)  { return nil, false }
func (emptyLayer) scan(string, int, func(string, []byte)) {}
func (emptyLayer) publish(int, []write)                   {}

// mvStore is the block layer of parallel execution: every published
// version of every key. Readers pick the newest version before them; by
// the DAG invariant (doc.go) no version after them can be present for a key
// they may read, but the index check keeps that an assertion, not a
// requirement. The versions of a slot are in an array by slot; those of
// other keys in maps by key. Both are spread over mvShards locks (by slot,
// or by a hash of the key), so workers reading and publishing different
// keys rarely meet on a lock; which shard holds a key decides nothing else.
type mvStore struct {
	seed   maphash.Seed
	keys   []string    // the block's exact keys by slot (sorted)
	vers   [][]version // by slot, under shards[slot%mvShards].mu
	shards [mvShards]mvShard
	// first holds a slot's first version: most keys get one in a block.
	// It is sized for the transactions that publish (those with
	// dependents), not for every slot, and handed out from next.
	first []version
	next  atomic.Int64
}

// mvShards is the number of independently locked parts of an mvStore.
const mvShards = 16

type mvShard struct {
	mu sync.RWMutex
	m  map[string][]version // keys without a slot
	_  [64]byte             // keep two shards' locks off one cache line
}

type version struct {
	idx int
	val []byte
}

// newMVStore returns the version store of a block with table t (nil: no
// slots) in which at most publishers versions of slots are published
// without growing a slot's list (more are kept all the same).
func newMVStore(t *accessTable, publishers int) *mvStore {
	s := &mvStore{seed: maphash.MakeSeed()}
	if t != nil {
		s.keys, s.vers = t.keys, make([][]version, len(t.keys))
		s.first = make([]version, publishers)
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]version)
	}
	return s
}

func (s *mvStore) shard(slot int32, k string) *mvShard {
	if slot >= 0 {
		return &s.shards[slot%mvShards]
	}
	return &s.shards[maphash.String(s.seed, k)%mvShards]
}

// newest returns the value of the newest version before idx. Versions are
// kept sorted by idx, so for the usual reader (after every version) this is
// the last one: a hot key with many versions costs O(1), not O(versions).
func newest(vs []version, idx int) ([]byte, bool) {
	for j := len(vs) - 1; j >= 0; j-- {
		if vs[j].idx < idx {
			return vs[j].val, true
		}
	}
	return nil, false
}

func (s *mvStore) get(slot int32, k string, idx int) ([]byte, bool) {
	sh := s.shard(slot, k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if slot >= 0 {
		return newest(s.vers[slot], idx)
	}
	return newest(sh.m[k], idx)
}

func (s *mvStore) scan(prefix string, idx int, fn func(string, []byte)) {
	lo, hi := under(s.keys, prefix)
	for j := lo; j < hi; j++ {
		if v, ok := s.get(int32(j), s.keys[j], idx); ok {
			fn(s.keys[j], v)
		}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, vs := range sh.m {
			if strings.HasPrefix(k, prefix) {
				if v, ok := newest(vs, idx); ok {
					fn(k, v)
				}
			}
		}
		sh.mu.RUnlock()
	}
}

func (s *mvStore) publish(idx int, writes []write) {
	for _, w := range writes {
		sh := s.shard(w.slot, w.k)
		sh.mu.Lock()
		if w.slot >= 0 {
			vs := s.vers[w.slot]
			if vs == nil {
				if j := s.next.Add(1) - 1; j < int64(len(s.first)) {
					vs = s.first[j : j : j+1]
				}
			}
			s.vers[w.slot] = appendVersion(vs, version{idx, w.v})
		} else {
			sh.m[w.k] = appendVersion(sh.m[w.k], version{idx, w.v})
		}
		sh.mu.Unlock()
	}
}

// appendVersion adds v to vs, kept sorted by idx. Writers of one key are
// ordered by the DAG, so this appends at the end; the insertion keeps the
// order even if they were not.
func appendVersion(vs []version, v version) []version {
	vs = append(vs, v)
	for j := len(vs) - 1; j > 0 && vs[j-1].idx > vs[j].idx; j-- {
		vs[j-1], vs[j] = vs[j], vs[j-1]
	}
	return vs
}

// overlay implements Overlay for transaction idx.
type overlay struct {
	ctx   context.Context
	layer blockLayer
	tab   *accessTable // the block's, or nil (then every slot is -1)
	es    []access     // the transaction's entries: most keys it uses
	// own holds the prefetched parent values of es, entry by entry (nil
	// for a prefix), or is nil. A transaction's own keys are then read
	// from memory next to the previous transaction's, not from an array
	// by slot, whose slots are spread over the block's keys: that was a
	// cache miss per read (see feed).
	own    [][]byte
	parent StateView
	idx    int
	writes []write
	index  map[string]int // writes by key, once there are writesIndexMin
	rec    *recorder      // non-nil in simulation
}

// writesIndexMin is the number of pending writes from which an overlay
// finds them through a map instead of a scan.
const writesIndexMin = 16

// lookup returns the slot and string form of module's key k, and its
// entry among the transaction's own (-1: not one of them). Those are
// searched first: a key the transaction declared is found without
// building its string or searching the block's keys.
func (o *overlay) lookup(module types.Address, k []byte) (int32, string, int) {
	for j := range o.es {
		e := &o.es[j]
		if !e.prefix && len(e.k) == types.AddressLen+len(k) && e.k[types.AddressLen:] == string(k) && e.k[:types.AddressLen] == string(module[:]) {
			return e.slot, e.k, j
		}
	}
	s := key(module, k)
	return o.tab.slotOf(s), s, -1
}

// pending returns the index of the transaction's own write of the key, or
// -1. Keys with a slot compare by slot.
func (o *overlay) pending(slot int32, k string) int {
	if o.index != nil {
		if j, ok := o.index[k]; ok {
			return j
		}
		return -1
	}
	for j := range o.writes {
		if w := &o.writes[j]; w.slot == slot && (slot >= 0 || w.k == k) {
			return j
		}
	}
	return -1
}

// set records the transaction's write of a key, whose entry among the
// transaction's own is e (-1: none).
func (o *overlay) set(slot int32, k string, e int, v []byte) {
	if j := o.pending(slot, k); j >= 0 {
		o.writes[j].v = v
		return
	}
	o.writes = append(o.writes, write{slot: slot, e: int32(e), k: k, v: v})
	switch {
	case o.index != nil:
		o.index[k] = len(o.writes) - 1
	case len(o.writes) >= writesIndexMin:
		o.index = make(map[string]int, 2*len(o.writes))
		for j, w := range o.writes {
			o.index[w.k] = j
		}
	}
}

// getRaw reads a key: slot and k as lookup gives them, and e its entry
// among the transaction's own (-1: none).
func (o *overlay) getRaw(slot int32, k string, e int) ([]byte, error) {
	if j := o.pending(slot, k); j >= 0 {
		return o.writes[j].v, nil
	}
	if v, ok := o.layer.get(slot, k, o.idx); ok {
		return v, nil
	}
	if e >= 0 && o.own != nil {
		return o.own[e], nil
	}
	// A key the transaction did not declare exactly (under a prefix, or an
	// access violation's) is read from the parent, even when another
	// transaction declared it: the prefetch is laid out by entry only.
	v, err := o.parent.Get(o.ctx, splitKey(k))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return v, nil
}

func (o *overlay) Get(module types.Address, k []byte) ([]byte, error) {
	if len(k) > types.StateKeyMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k))
	}
	o.rec.note(module, k, false, types.Read)
	v, err := o.getRaw(o.lookup(module, k))
	if len(v) == 0 {
		v = nil
	}
	return v, err
}

func (o *overlay) Set(module types.Address, k, value []byte) error {
	if len(k) > types.StateKeyMax {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(k))
	}
	if len(value) > types.StateValueMax {
		return fmt.Errorf("%w: %d bytes", ErrValueTooLarge, len(value))
	}
	o.rec.note(module, k, false, types.Write)
	slot, s, e := o.lookup(module, k)
	o.set(slot, s, e, value)
	return nil
}

// batchReader is a StateView that also reads many keys in one call, as
// *state.Store does: GetMany appends keys[i]'s value (nil when absent) to
// dst for each i and returns it. The values must not be modified.
type batchReader interface {
	GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error)
}
