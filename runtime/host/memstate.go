package host

import (
	"bytes"
	"slices"
	"strings"

	"github.com/kairos-network/kairos/types"
)

// MemState is a State in memory, for tests and tools: a map from
// module ‖ key to value. It is not safe for concurrent use.
type MemState map[string][]byte

// Set stores a value (test setup).
func (m MemState) Set(module types.Address, key, val []byte) {
	m[string(module[:])+string(key)] = append([]byte{}, val...)
}

// Apply commits the writes of a successful transaction.
func (m MemState) Apply(ws []Write) {
	for _, w := range ws {
		if w.Deleted {
			delete(m, string(w.Module[:])+string(w.Key))
		} else {
			m.Set(w.Module, w.Key, w.Value)
		}
	}
}

// Get implements State. The map key is built in a stack buffer, since
// m[string(b)] does not allocate: the concatenation it replaced was an
// allocation per read (four per token transfer), paid by the wasm path and
// the native floor of runtime/enginetest alike, and the collector's work
// it caused ran on the other core, inflating both figures' CPU time.
func (m MemState) Get(module types.Address, key []byte) ([]byte, bool, error) {
	var buf [addressLen + 64]byte // longer keys spill to the heap
	k := append(append(buf[:0], module[:]...), key...)
	v, ok := m[string(k)]
	return v, ok, nil
}

// Iterate implements State over a sorted copy of the matching entries.
func (m MemState) Iterate(module types.Address, prefix []byte) (Iterator, error) {
	p := string(module[:]) + string(prefix)
	it := &memIter{}
	for k, v := range m {
		if strings.HasPrefix(k, p) {
			it.kvs = append(it.kvs, kv{key: []byte(k[addressLen:]), val: v})
		}
	}
	slices.SortFunc(it.kvs, func(a, b kv) int { return bytes.Compare(a.key, b.key) })
	return it, nil
}

type memIter struct {
	kvs []kv
	pos int // 1 + index of the current entry
}

func (it *memIter) Next() bool {
	if it.pos <= len(it.kvs) {
		it.pos++
	}
	return it.pos <= len(it.kvs)
}
func (it *memIter) Key() []byte   { return it.kvs[it.pos-1].key }
func (it *memIter) Value() []byte { return it.kvs[it.pos-1].val }
func (it *memIter) Err() error    { return nil }
func (it *memIter) Close() error  { return nil }
