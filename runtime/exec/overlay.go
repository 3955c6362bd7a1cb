package exec

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"

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
	// Set writes value (empty = delete).
	Set(module types.Address, key, value []byte) error
	// Iterate opens an Iterator over the present keys of module with
	// prefix, in key byte order. Close it when done.
	Iterate(module types.Address, prefix []byte) (*Iterator, error)
}

// blockLayer holds the published writes of a block's finished
// transactions. get and scan return the newest version written by a
// transaction before idx.
type blockLayer interface {
	get(k string, idx int) ([]byte, bool)
	scan(prefix string, idx int, fn func(k string, v []byte))
	publish(idx int, writes map[string][]byte)
}

// serialLayer is the block layer of serial execution: the latest value.
type serialLayer map[string][]byte

func (s serialLayer) get(k string, _ int) ([]byte, bool) { v, ok := s[k]; return v, ok }

func (s serialLayer) scan(prefix string, _ int, fn func(string, []byte)) {
	for k, v := range s {
		if strings.HasPrefix(k, prefix) {
			fn(k, v)
		}
	}
}

func (s serialLayer) publish(_ int, writes map[string][]byte) {
	for k, v := range writes {
		s[k] = v
	}
}

// emptyLayer is the block layer of a block without conflicts, where no
// transaction may see another's writes.
type emptyLayer struct{}

func (emptyLayer) get(string, int) ([]byte, bool)         { return nil, false }
func (emptyLayer) scan(string, int, func(string, []byte)) {}
func (emptyLayer) publish(int, map[string][]byte)         {}

// mvStore is the block layer of parallel execution: every published
// version of every key. Readers pick the newest version before them; by
// the DAG invariant (doc.go) no version after them can be present for a key
// they may read, but the index check keeps that an assertion, not a
// requirement. Keys are spread over mvShards maps with a lock each, so
// workers reading and publishing different keys rarely meet on a lock;
// which shard holds a key decides nothing else.
type mvStore struct {
	seed   maphash.Seed
	shards [mvShards]mvShard
}

// mvShards is the number of independently locked parts of an mvStore.
const mvShards = 16

type mvShard struct {
	mu sync.RWMutex
	m  map[string][]version
	_  [64]byte // keep two shards' locks off one cache line
}

type version struct {
	idx int
	val []byte
}

// newMVStore sizes the maps for keys keys: the block's prefetched keys
// bound almost every key it writes, so they rarely rehash.
func newMVStore(keys int) *mvStore {
	s := &mvStore{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]version, keys/mvShards)
	}
	return s
}

func (s *mvStore) shard(k string) *mvShard {
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

func (s *mvStore) get(k string, idx int) ([]byte, bool) {
	sh := s.shard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return newest(sh.m[k], idx)
}

func (s *mvStore) scan(prefix string, idx int, fn func(string, []byte)) {
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

func (s *mvStore) publish(idx int, writes map[string][]byte) {
	for k, v := range writes {
		sh := s.shard(k)
		sh.mu.Lock()
		// Writers of one key are ordered by the DAG, so this appends at
		// the end; the insertion keeps the order even if they were not.
		vs := append(sh.m[k], version{idx, v})
		for j := len(vs) - 1; j > 0 && vs[j-1].idx > vs[j].idx; j-- {
			vs[j-1], vs[j] = vs[j], vs[j-1]
		}
		sh.m[k] = vs
		sh.mu.Unlock()
	}
}

// overlay implements Overlay for transaction idx.
type overlay struct {
	ctx    context.Context
	layer  blockLayer
	cache  *prefetched
	parent StateView
	idx    int
	writes map[string][]byte
	rec    *recorder // non-nil in simulation
}

func (o *overlay) getRaw(k string) ([]byte, error) {
	if v, ok := o.writes[k]; ok {
		return v, nil
	}
	if v, ok := o.layer.get(k, o.idx); ok {
		return v, nil
	}
	if v, ok := o.cache.get(k); ok {
		return v, nil
	}
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
	v, err := o.getRaw(key(module, k))
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
	if o.writes == nil {
		o.writes = make(map[string][]byte)
	}
	o.writes[key(module, k)] = value
	return nil
}

// prefetched holds the parent values of every exact key a block declares,
// read before execution. It is read-only once built.
type prefetched struct {
	idx  map[string]int32
	vals [][]byte
}

func (p *prefetched) get(k string) ([]byte, bool) {
	if p == nil {
		return nil, false
	}
	i, ok := p.idx[k]
	if !ok {
		return nil, false
	}
	return p.vals[i], true
}

// prefetch reads the block's declared exact keys and the senders' account
// records (t.keys) from parent, with readers goroutines (the serial path
// uses the same prefetch, so the baseline is fair). Prefix contents are not
// prefetched: they are read by Iterate when a transaction asks.
func prefetch(ctx context.Context, parent StateView, t *accessTable, readers int) (*prefetched, error) {
	p := &prefetched{idx: t.slots}
	keys := t.keys
	p.vals = make([][]byte, len(keys))
	readers = max(1, min(readers, len(keys)/prefetchChunkMin))
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A contiguous range per reader: interleaved indices would
			// have both readers writing to the same cache lines of vals.
			for i := r * len(keys) / readers; i < (r+1)*len(keys)/readers; i++ {
				if len(keys[i]) > types.AddressLen+types.StateKeyMax {
					// An over-long key fails the transaction when it is
					// used; it must not fail the block here. No state
					// holds it, so absent (nil) is its value.
					continue
				}
				v, err := parent.Get(ctx, splitKey(keys[i]))
				if err != nil {
					errs[r] = fmt.Errorf("%w: prefetch: %w", ErrState, err)
					return
				}
				p.vals[i] = v
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// prefetchChunkMin is the fewest keys worth a prefetch goroutine.
const prefetchChunkMin = 64
