package state

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// getManyLockMax is the most keys GetMany reads from the in-memory store
// under one hold of its read lock, so a commit waiting for the write lock
// waits for a bounded run of map lookups, not for a whole batch.
const getManyLockMax = 1024

// GetMany appends the latest values of keys to dst, in order (nil for an
// absent key), and returns the extended slice: what Get returns for each
// key, read in one call. The executor's prefetch reads a block's declared
// keys with it (thousands per block): Get built each datastore key in an
// allocation of its own and, on the in-memory store, took the datastore's
// lock per read. GetMany builds the keys in one reused buffer (the
// datastores only compare them), escaping a module once for a run of its
// keys (callers such as the prefetch pass them sorted), takes the
// in-memory store's read lock once per getManyLockMax keys, and on pebble
// copies the values into one growing arena instead of one allocation each.
// An in-memory store reads its own index of the flat index instead
// (latest.go) whenever that holds the latest version.
// The returned values must not be modified (like Get's on the in-memory
// store); values of one call may share an array. A key over
// types.StateKeyMax fails the call with ErrKeyTooLong, as Get does; dst
// then holds the values read before it.
func (s *Store) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	// unsafeKey views b as a datastore key without copying it: valid only
	// until b's bytes are next written, which is enough for a lookup.
	unsafeKey := func(b []byte) ds.Key { return ds.RawKey(unsafe.String(unsafe.SliceData(b), len(b))) }
	kb := keyBufs.Get().(*keyBuf)
	defer keyBufs.Put(kb)

	if s.pdb != nil {
		var arena []byte
		for _, k := range keys {
			if err := checkKeyLen(k); err != nil {
				return dst, err
			}
			kb.reset() // one key at a time: pebble's read costs far more than the escaping
			key := kb.add(s.modules, k)
			if len(key) == 0 {
				dst = append(dst, nil) // a module with no entries
				continue
			}
			v, closer, err := s.pdb.Get(key)
			if errors.Is(err, pebble.ErrNotFound) {
				dst = append(dst, nil)
				continue
			}
			if err != nil {
				return dst, err
			}
			if len(arena)+len(v) > cap(arena) {
				// A fresh array: the values already handed out keep theirs.
				arena = make([]byte, 0, max(4096, 2*cap(arena), len(v)))
			}
			from := len(arena)
			arena = append(arena, v...)
			closer.Close()
			dst = append(dst, arena[from:len(arena):len(arena)])
		}
		return dst, nil
	}

	if md, ok := s.d.(*dssync.MutexDatastore); ok {
		if m, ok := md.Children()[0].(*ds.MapDatastore); ok {
			var err error
			if keys, dst, err = s.latestIdx.getMany(ctx, s, kb, keys, dst); err != nil || len(keys) == 0 {
				return dst, err
			}
			// The index stands aside (a writer runs). Each run's keys are
			// built first, outside the lock, then looked up in a loop of
			// map lookups alone. The map holds the whole state and is
			// mostly out of the caches, so a lookup waits for memory; in a
			// tight loop of independent lookups the CPU overlaps more of
			// those waits than with the escaping in between (the prefetch
			// of a 5 000-transfer block, caches evicted: 2.9 → 2.4 ms).
			for len(keys) > 0 {
				run := keys[:min(len(keys), getManyLockMax)]
				keys = keys[len(run):]
				kb.reset()
				var bad error
				for _, k := range run {
					if bad = checkKeyLen(k); bad != nil {
						break // the keys before it are still read
					}
					kb.add(s.modules, k)
					kb.ends = append(kb.ends, len(kb.buf))
				}
				md.RLock()
				from := 0
				for _, to := range kb.ends {
					if to == from {
						dst = append(dst, nil) // a module with no entries
						continue
					}
					v, err := m.Get(ctx, unsafeKey(kb.buf[from:to]))
					if errors.Is(err, ds.ErrNotFound) {
						v, err = nil, nil
					}
					if err != nil {
						md.RUnlock()
						return dst, err
					}
					dst = append(dst, v)
					from = to
				}
				md.RUnlock()
				if bad != nil {
					return dst, bad
				}
			}
			return dst, nil
		}
	}

	// Any other datastore: Get per key (nothing is known of what it keeps).
	for _, k := range keys {
		v, err := s.Get(ctx, k)
		if err != nil {
			return dst, err
		}
		dst = append(dst, v)
	}
	return dst, nil
}

// keyBufs holds GetMany's key buffers between calls: the prefetch calls
// it for every few hundred keys, and a buffer grown from empty each time
// cost more allocation than the values read.
var keyBufs = sync.Pool{New: func() any { return new(keyBuf) }}

// keyBuf builds datastore keys of state keys (kvKey) one after the
// other in one buffer, reusing the escaped module of the previous key
// when the next has the same module.
type keyBuf struct {
	buf    []byte
	ends   []int // where each key built since reset ends
	last   int   // where the latest key starts
	mod    int   // the length of its module part (0: none yet)
	module types.Address

	tags  []uint64 // latestIndex.lookup's hashes
	cand  []uint32 // and candidate slots
	touch uint64   // and the sum of what it touched (stored, so the loads are not dropped)
}

// reset empties the buffer, keeping its array.
func (b *keyBuf) reset() { b.buf, b.ends, b.last, b.mod = b.buf[:0], b.ends[:0], 0, 0 }

// add appends the datastore key of k (in t's flat index) and returns it,
// valid until the buffer is next written. It appends nothing and returns
// an empty key for a key of a module with no flat index entries
// (appendKVModule): no datastore key is empty.
func (b *keyBuf) add(t *moduleTable, k types.StateKey) []byte {
	from := len(b.buf)
	if b.mod > 0 && k.Module == b.module {
		b.buf = append(b.buf, b.buf[b.last:b.last+b.mod]...)
	} else {
		var ok bool
		if b.buf, ok = t.appendKVModule(b.buf, k.Module); !ok {
			b.mod = 0
			return nil
		}
		b.buf = append(b.buf, "/k"...)
		b.mod, b.module = len(b.buf)-from, k.Module
	}
	b.last = from
	b.buf = appendEscapedWords(b.buf, k.Key)
	return b.buf[from:]
}

// appendEscapedWords appends what appendEscaped appends, eight bytes at a
// time where none of them is escaped. appendEscaped's append per byte was
// 40% of a warm prefetch (the keys are ~33 random bytes, of which
// about a quarter hold a '.' or '/' anywhere).
func appendEscapedWords(dst, src []byte) []byte {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	w := len(dst)
	dst = slices.Grow(dst, 2*len(src))[:w+2*len(src)] // at most two bytes per byte
	i := 0
	for ; i+8 <= len(src); i += 8 {
		x := binary.LittleEndian.Uint64(src[i:])
		// '.' (0x2e) and '/' (0x2f) differ in the lowest bit alone: with
		// it set, a byte is 0x2f exactly when it is one of them, and
		// then the xor makes it zero, which the borrow test finds
		// exactly (it can misplace a zero byte, not invent one).
		y := (x | ones) ^ (0x2f * ones)
		if (y-ones)&^y&highs == 0 {
			binary.LittleEndian.PutUint64(dst[w:], x)
			w += 8
			continue
		}
		w = len(appendEscaped(dst[:w], src[i:i+8]))
	}
	return appendEscaped(dst[:w], src[i:])
}
