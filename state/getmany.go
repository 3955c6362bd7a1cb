package state

import (
	"context"
	"errors"
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
// lock per read. GetMany builds every key in one reused buffer (the
// datastores only compare it), takes the in-memory store's read lock once
// per getManyLockMax keys, and on pebble copies the values into one
// growing arena instead of one allocation each. The returned values must
// not be modified (like Get's on the in-memory store); values of one call
// may share an array. A key over types.StateKeyMax fails the call with
// ErrKeyTooLong, as Get does; dst then holds the values read before it.
func (s *Store) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	// buf holds the last key, whose first mod bytes are module's part:
	// callers such as the prefetch pass keys sorted, so runs of one module
	// reuse its escaped bytes and escape only the key.
	var buf []byte
	var module types.Address
	mod := 0
	key := func(k types.StateKey) ([]byte, error) {
		if err := checkKeyLen(k); err != nil {
			return nil, err
		}
		if mod == 0 || k.Module != module {
			buf = appendKVKey(buf[:0], types.StateKey{Module: k.Module}) // kept: the next key reuses what it grew to
			module, mod = k.Module, len(buf)
		}
		buf = appendEscaped(buf[:mod], k.Key)
		return buf, nil
	}
	// unsafeKey views b as a datastore key without copying it: valid only
	// until buf is next written, which is enough for a lookup.
	unsafeKey := func(b []byte) ds.Key { return ds.RawKey(unsafe.String(unsafe.SliceData(b), len(b))) }

	if s.pdb != nil {
		var arena []byte
		for _, k := range keys {
			b, err := key(k)
			if err != nil {
				return dst, err
			}
			v, closer, err := s.pdb.Get(b)
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
			for len(keys) > 0 {
				run := keys[:min(len(keys), getManyLockMax)]
				keys = keys[len(run):]
				md.RLock()
				for _, k := range run {
					b, err := key(k)
					if err != nil {
						md.RUnlock()
						return dst, err
					}
					v, err := m.Get(ctx, unsafeKey(b))
					if errors.Is(err, ds.ErrNotFound) {
						v, err = nil, nil
					}
					if err != nil {
						md.RUnlock()
						return dst, err
					}
					dst = append(dst, v)
				}
				md.RUnlock()
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
