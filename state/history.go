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
// version d that replaces or deletes the leaf L writes the old value as the
// history record (d, L), in the batch that changes the index. A read of
// version v finds the value of its leaf L in the flat index if the index
// still holds it (its hash is L's value hash), and otherwise in the record
// (d, L) of the version d > v that replaced it. L fixes the value, so any
// record (d, L) with d > v holds it, also when the key went A → B → A.
// Pruning version d deletes all of d's history with its stale list: only
// versions below d read it.

// leafValue returns the value of leaf at version v (a retained version
// that holds the leaf): the flat index's when it matches the leaf, else the
// history's. The index is read first: a version's history is written with
// (or before, on backends without atomic batches) its index changes, so
// an index newer than the leaf comes with the record that holds the leaf's
// value.
func (s *Store) leafValue(ctx context.Context, v uint64, leaf *slot) ([]byte, error) {
	flat, err := s.Get(ctx, leaf.key())
	if err != nil {
		return nil, err
	}
	if flat != nil && types.ValueHash(flat) == leaf.vh() {
		return flat, nil
	}
	return s.historyValue(ctx, v, leaf)
}

// historyValue returns the value of leaf at version v from the history
// record of the first version above v that has one for it.
func (s *Store) historyValue(ctx context.Context, v uint64, leaf *slot) ([]byte, error) {
	if s.pdb == nil {
		val, err := s.historyProbe(ctx, v, leaf.h)
		if err != nil {
			return nil, err
		}
		return checkHistory(v, leaf, val)
	}
	it, err := s.historyIter(ctx, v)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	return historySeek(it, v, leaf)
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

// historyIter returns an iterator over the history records of the
// versions above v, for historySeek.
func (s *Store) historyIter(ctx context.Context, v uint64) (*pebble.Iterator, error) {
	lower, _ := histVersionRange(v + 1)
	return s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: nsEnd(nsHist)})
}

// historySeek returns the value of leaf at version v from the record
// (d, leaf hash) with the least d > v, through it (historyIter(v)): a
// seek to (d, l) lands on it or on the next key, whose version is the next
// d to try, so the seeks are at most the versions above v that wrote
// history.
func historySeek(it *pebble.Iterator, v uint64, leaf *slot) ([]byte, error) {
	var kb [histKeyLen]byte
	for d := v + 1; ; {
		k := appendHistKey(kb[:0], d, leaf.h)
		if !it.SeekGE(k) {
			if err := it.Error(); err != nil {
				return nil, err
			}
			return checkHistory(v, leaf, nil)
		}
		if bytes.Equal(it.Key(), k) {
			return checkHistory(v, leaf, bytes.Clone(it.Value()))
		}
		next, _, err := parseHistKey(string(it.Key()[len(nsHist):]))
		if err != nil {
			return nil, err
		}
		if next == d {
			next++ // d has records, none for l
		}
		d = next
	}
}

// historyProbe is historySeek by point reads of (d, l) for each d from
// v+1 up to the version being written, if any (latest+1): the backend may
// have no ordered iteration.
func (s *Store) historyProbe(ctx context.Context, v uint64, l types.Hash) ([]byte, error) {
	s.mu.Lock()
	last := s.latest + 1
	s.mu.Unlock()
	for d := v + 1; d <= last; d++ {
		b, err := s.d.Get(ctx, histKey(d, l))
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
	it *pebble.Iterator
	kb []byte
}

func (s *Store) newIndexLookup(ctx context.Context) (*indexLookup, error) {
	it, err := s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(nsKV), UpperBound: nsEnd(nsKV)})
	if err != nil {
		return nil, err
	}
	return &indexLookup{it: it}, nil
}

// get returns k's value (nil: absent), valid until the next get.
func (l *indexLookup) get(k types.StateKey) ([]byte, error) {
	l.kb = appendKVKey(l.kb[:0], k)
	if l.it.SeekPrefixGE(l.kb) && bytes.Equal(l.it.Key(), l.kb) {
		return l.it.Value(), nil
	}
	return nil, l.it.Error()
}

func (l *indexLookup) close() error { return l.it.Close() }
