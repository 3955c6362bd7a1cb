package node

import (
	"bytes"
	"context"
	"slices"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// afterCommit is the state a block executes on while its parent's state
// commit is still being written (state.Store.CommitAsync): the store's
// latest durable version with the parent's writes over it. Until the
// parent's wait returns, the store serves the version before the parent;
// once it returns, the version of the parent itself. Either way the
// parent's writes cover every key in which the two differ, so every read
// here gives what the store gives once the parent is durable, whenever the
// write completes (a pebble iteration reads one snapshot, a Get one key).
//
// The writes are the parent's exec result: distinct keys sorted by
// (module, key), the order state.Commit takes; an empty value is a delete.
// They are only read (CommitAsync's batch reads them too).
type afterCommit struct {
	store  *state.Store
	writes []state.Write
}

func newAfterCommit(store *state.Store, writes []state.Write) *afterCommit {
	if !slices.IsSortedFunc(writes, func(a, b state.Write) int { return a.Key.Compare(b.Key) }) {
		// Not what exec returns; sorted here rather than read wrong.
		writes = slices.Clone(writes)
		slices.SortFunc(writes, func(a, b state.Write) int { return a.Key.Compare(b.Key) })
	}
	return &afterCommit{store: store, writes: writes}
}

// find returns the parent's write of k, if it wrote k.
func (a *afterCommit) find(k types.StateKey) (*state.Write, bool) {
	i, ok := slices.BinarySearchFunc(a.writes, k, func(w state.Write, k types.StateKey) int { return w.Key.Compare(k) })
	if !ok {
		return nil, false
	}
	return &a.writes[i], true
}

// Get returns the value of k after the parent block (nil when absent). A
// value of the parent's is copied: the returned slice belongs to the
// caller, as the store's does, and the parent's batch still reads it.
func (a *afterCommit) Get(ctx context.Context, k types.StateKey) ([]byte, error) {
	if w, ok := a.find(k); ok {
		if len(w.Value) == 0 {
			return nil, nil
		}
		return bytes.Clone(w.Value), nil
	}
	return a.store.Get(ctx, k)
}

// GetMany is the store's GetMany (the executor's prefetch) with the
// parent's values in place of the store's. Like the store's, the values
// must not be modified.
func (a *afterCommit) GetMany(ctx context.Context, keys []types.StateKey, dst [][]byte) ([][]byte, error) {
	from := len(dst)
	dst, err := a.store.GetMany(ctx, keys, dst)
	if err != nil {
		return dst, err
	}
	for i, k := range keys {
		if w, ok := a.find(k); ok {
			dst[from+i] = nil
			if len(w.Value) > 0 {
				dst[from+i] = w.Value
			}
		}
	}
	return dst, nil
}

// Iterate calls fn for every key of module starting with prefix after the
// parent block, in key byte order: the store's entries merged with the
// parent's writes under the prefix (a write replaces or deletes the
// store's entry of its key). fn must not keep the slices.
func (a *afterCommit) Iterate(ctx context.Context, module types.Address, prefix []byte, fn func(key, value []byte) error) error {
	// The parent's writes under (module, prefix) are one run of the
	// sorted writes.
	lo, _ := slices.BinarySearchFunc(a.writes, types.StateKey{Module: module, Key: prefix}, func(w state.Write, k types.StateKey) int { return w.Key.Compare(k) })
	hi := lo
	for hi < len(a.writes) && a.writes[hi].Key.Module == module && bytes.HasPrefix(a.writes[hi].Key.Key, prefix) {
		hi++
	}
	run := a.writes[lo:hi]
	// emit passes the parent's writes ordered before key (all of them
	// when key is nil and last) to fn, deletes left out.
	emit := func(key []byte, last bool) error {
		for len(run) > 0 && (last || bytes.Compare(run[0].Key.Key, key) < 0) {
			w := run[0]
			run = run[1:]
			if len(w.Value) > 0 {
				if err := fn(w.Key.Key, w.Value); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := a.store.Iterate(ctx, module, prefix, func(k, v []byte) error {
		if err := emit(k, false); err != nil {
			return err
		}
		if len(run) > 0 && bytes.Equal(run[0].Key.Key, k) {
			// The parent wrote k: its value, or nothing for a delete.
			w := run[0]
			run = run[1:]
			if len(w.Value) == 0 {
				return nil
			}
			return fn(w.Key.Key, w.Value)
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	return emit(nil, true)
}
