package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// A leaf's value is stored once while it is live: in the flat index. The
// version d that replaces or deletes the leaf L of key k writes the old
// value as the history record (k's key path, d), in the batch that
// changes the index. A read of version v finds the value of its leaf L in
// the flat index if the index still holds it (its hash is L's value hash),
// and otherwise in the record of the first version d > v that changed k:
// k held L from v until d-1, so that record holds L's value, also when the
// key went A → B → A or was deleted and created again. Records are keyed
// by key path first and version second, so that record is the first at or
// after (k's path, v+1): one seek, whatever the distance from v to the
// latest version. Pruning version d deletes the records d wrote (its stale
// list names their paths): only versions below d read them.

// leafValue returns the value of leaf, whose key path is kp (the callers
// have it: a slot does not keep it), at version v (a retained version that
// holds the leaf): the flat index's when it matches the leaf, else the
// history's. The index is read first: a version's history is written with
// (or before, on backends without atomic batches) its index changes, so
// an index newer than the leaf comes with the record that holds the leaf's
// value.
func (s *Store) leafValue(ctx context.Context, v uint64, kp types.Hash, leaf *slot) ([]byte, error) {
	flat, err := s.Get(ctx, leaf.key())
	if err != nil {
		return nil, err
	}
	if flat != nil && types.ValueHash(flat) == leaf.vh() {
		return flat, nil
	}
	return s.historyValue(ctx, v, kp, leaf)
}

// historyValue returns the value of leaf at version v from the history
// record of the first version above v that changed its key.
func (s *Store) historyValue(ctx context.Context, v uint64, kp types.Hash, leaf *slot) ([]byte, error) {
	if s.pdb == nil {
		val, err := s.historyProbe(ctx, v, kp)
		if err != nil {
			return nil, err
		}
		return checkHistory(v, leaf, val)
	}
	// An iterator bounded to the key's records: pebble opens only the
	// tables that may hold them.
	var lb, ub [histKeyLen]byte
	end := appendHistPath(ub[:0], kp)
	end[len(end)-1] = '/' + 1
	it, err := s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: appendHistKey(lb[:0], kp, v+1), UpperBound: end})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	return historySeek(it, v, kp, leaf)
}

// checkHistory returns val, the value history holds for leaf at version v
// (nil: none), if it is the leaf's.
func checkHistory(v uint64, leaf *slot, val []byte) ([]byte, error) {
	if val == nil {
		return nil, fmt.Errorf("%w: no value for leaf %s (%s) of version %d: not in the flat index nor in the history", ErrCorrupt, leaf.h, leaf.key(), v)
	}
	if types.ValueHash(val) != leaf.vh() {
		return nil, fmt.Errorf("%w: history record of leaf %s does not hold its value", ErrCorrupt, leaf.h)
	}
	return val, nil
}

// historyIter returns an iterator over the whole history, for calls of
// historySeek in increasing key path order (an export's): each seek goes
// on from where the last one stopped.
func (s *Store) historyIter(ctx context.Context) (*pebble.Iterator, error) {
	return s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(nsHist), UpperBound: nsEnd(nsHist)})
}

// historySeek returns the value of leaf, whose key path is kp, at version
// v through it: one seek to (kp, v+1), which lands on the record of the
// first version above v that changed the key, if it is the key's (a key
// of another path, or none, is ErrCorrupt: the record is missing).
func historySeek(it *pebble.Iterator, v uint64, kp types.Hash, leaf *slot) ([]byte, error) {
	var kb [histKeyLen]byte
	path := appendHistPath(kb[:0], kp)
	k := appendBorn(path, v+1)
	if !it.SeekGE(k) || !bytes.HasPrefix(it.Key(), path) {
		if err := it.Error(); err != nil {
			return nil, err
		}
		return checkHistory(v, leaf, nil)
	}
	return checkHistory(v, leaf, bytes.Clone(it.Value()))
}

// historyProbe is historySeek by point reads of (kp, d) for each d from
// v+1 up to the version being written, if any (latest+1), on every backend
// but pebble (the in-memory one has no ordered iteration; leveldb's prefix
// query over the key's records would do better and is not written yet), so
// the reads are linear in the distance there.
func (s *Store) historyProbe(ctx context.Context, v uint64, kp types.Hash) ([]byte, error) {
	s.mu.Lock()
	last := s.latest + 1
	s.mu.Unlock()
	for d := v + 1; d <= last; d++ {
		b, err := s.d.Get(ctx, histKey(kp, d))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, ds.ErrNotFound) {
			return nil, err
		}
	}
	return nil, nil
}

// nsEnd returns the first key after namespace ns.
func nsEnd(ns string) []byte {
	return append([]byte(ns[:len(ns)-1]), '/'+1)
}

// indexLookup reads flat-index values through one pebble iterator, for
// keys asked in increasing order: a prefix seek is an exact lookup (the
// whole key is the prefix) that the tables' bloom filters serve, and in
// increasing key order pebble goes on from where the last one stopped, so
// a data block holding several of the keys is loaded once.
type indexLookup struct {
	it   *pebble.Iterator
	mods *moduleTable
	kb   []byte
}

func (s *Store) newIndexLookup(ctx context.Context) (*indexLookup, error) {
	it, err := s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(nsKV), UpperBound: nsEnd(nsKV)})
	if err != nil {
		return nil, err
	}
	return &indexLookup{it: it, mods: s.modules}, nil
}

// get returns k's value (nil: absent), valid until the next get.
func (l *indexLookup) get(k types.StateKey) ([]byte, error) {
	var ok bool
	if l.kb, ok = l.mods.appendKVKey(l.kb[:0], k); !ok {
		return nil, nil // a module with no entries
	}
	if l.it.SeekPrefixGE(l.kb) && bytes.Equal(l.it.Key(), l.kb) {
		return l.it.Value(), nil
	}
	return nil, l.it.Error()
}

func (l *indexLookup) close() error { return l.it.Close() }
