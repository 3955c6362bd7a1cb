package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kairos-network/kairos/types"
)

// On pebble the flat index holds every version of a value: a write of key
// k at version v is the record /kairos/kv/<module id>/k<key> kvEnd <^v>,
// whose value is the value written, or empty for a deletion (a marker: a
// key holding an empty value does not exist). kvEnd ("\x00\x01") sorts
// below every byte of an escaped key (appendEscapedKV escapes a zero byte
// as "\x00\xff"), so a key's records sort where the key does, before
// those of any longer key; the version follows as 8 raw bytes of ^v, so a
// key's records sort newest first, and kvEnd is the 10th byte from the
// end of every record's key (kvSplit). The record a write supersedes
// stays as the history: a read at version v is the first record of k's
// prefix at or after (k, ^v), one seek, and the latest value is the first
// record of the prefix. Pruning version v deletes, for each key v wrote
// (its stale list names them), the record v superseded, and v's own record
// too when it is a marker.

// kvEnd ends a flat index key's prefix on pebble, before the version.
const kvEnd = "\x00\x01"

// kvVersionLen is the length of the version suffix: kvEnd and 8 bytes.
const kvVersionLen = len(kvEnd) + 8

// appendKVVersion appends the version suffix of version v to a flat index
// key's prefix (appendKVKey's bytes): kvEnd, then ^v as 8 big-endian
// bytes, so that newer versions sort first.
func appendKVVersion(dst []byte, v uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, kvEnd...), ^v)
}

// kvSplit is pebble's Split: a flat index record's key (nsKV, then kvEnd
// 10 bytes from the end) splits before its 8 version bytes, so that bloom
// filters and prefix seeks see the key without its version; every other
// key is its own prefix, among them a prefix itself (it ends with kvEnd,
// which an escaped key holds nowhere else: a zero byte in it is always
// followed by 0xff). A prefix ends with kvEnd and holds no other, so no
// prefix is a proper prefix of another record's prefix, and byte order is
// prefix order, then version order (the Comparer's contract).
func kvSplit(k []byte) int {
	n := len(k)
	if n >= len(nsKV)+kvVersionLen && k[n-kvVersionLen] == kvEnd[0] && k[n-kvVersionLen+1] == kvEnd[1] && string(k[:len(nsKV)]) == nsKV {
		return n - 8
	}
	return n
}

// kvComparerName is the name pebble stores with a database: one created
// by an older format (the default comparer) fails to open (ErrFormat).
const kvComparerName = "kairos.kv-versions.v1"

// kvComparer is pebble's bytewise comparer with kvSplit.
var kvComparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = kvSplit
	c.ImmediateSuccessor = kvImmediateSuccessor
	c.Name = kvComparerName
	return &c
}()

// kvImmediateSuccessor is pebble's ImmediateSuccessor (NextPrefix uses
// it): the smallest prefix key above prefix a. For a record's prefix
// (ending in kvEnd), that is a with kvEnd's last byte raised by one:
// every key between starts with a, so has a's prefix. Any other key: a
// and a zero byte, as the default comparer does.
func kvImmediateSuccessor(dst, a []byte) []byte {
	if n := len(a); n >= len(nsKV)+len(kvEnd) && string(a[n-len(kvEnd):]) == kvEnd && string(a[:len(nsKV)]) == nsKV {
		dst = append(dst, a[:n-1]...)
		return append(dst, kvEnd[1]+1)
	}
	return append(append(dst, a...), 0)
}

// getVersioned returns the value of the flat index key whose bytes
// (appendKVKey's) prefix holds, at version v (latest: the newest record),
// through it: nil if the key is absent there (no record at or below v, or
// a marker). The value is valid until it moves. prefix must have room for
// the version suffix or it is grown.
func getVersioned(it *pebble.Iterator, prefix []byte, v uint64, latest bool) ([]byte, error) {
	k := append(prefix, kvEnd...)
	if !latest {
		k = appendKVVersion(prefix, v)
	}
	if !it.SeekPrefixGE(k) {
		return nil, it.Error()
	}
	val, err := it.ValueAndErr()
	if err != nil || len(val) == 0 {
		return nil, err
	}
	return val, nil
}

// newKVIter returns an iterator over the flat index.
func (s *Store) newKVIter(ctx context.Context) (*pebble.Iterator, error) {
	return s.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(nsKV), UpperBound: nsEnd(nsKV)})
}

// getLatestPebble is Get on pebble: one prefix seek.
func (s *Store) getLatestPebble(ctx context.Context, k types.StateKey) ([]byte, error) {
	var a [64 + kvVersionLen]byte
	kb, ok := s.modules.appendKVKey(a[:0], k)
	if !ok {
		return nil, nil
	}
	it, err := s.newKVIter(ctx)
	if err != nil {
		return nil, err
	}
	v, err := getVersioned(it, kb, 0, true)
	v = bytes.Clone(v)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return v, err
}

// getAtPebble returns k's value at version v from the flat index's
// records (nil: absent at v).
func (s *Store) getAtPebble(ctx context.Context, k types.StateKey, v uint64) ([]byte, error) {
	var a [64 + kvVersionLen]byte
	kb, ok := s.modules.appendKVKey(a[:0], k)
	if !ok {
		return nil, nil
	}
	it, err := s.newKVIter(ctx)
	if err != nil {
		return nil, err
	}
	val, err := getVersioned(it, kb, v, false)
	val = bytes.Clone(val)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return val, err
}

// appendStaleKey appends the flat index key prefix kp to a versioned
// stale list's key section: its length times two, plus one if the version
// deleted the key, as a uvarint, then its bytes.
func appendStaleKey(dst, kp []byte, deleted bool) []byte {
	n := uint64(len(kp)) << 1
	if deleted {
		n |= 1
	}
	return append(binary.AppendUvarint(dst, n), kp...)
}

// staleKey is one entry of a versioned stale list's key section.
type staleKV struct {
	prefix  []byte // appendKVKey's bytes
	deleted bool   // the version deleted the key (its record is a marker)
}

// parseStaleKeys splits a versioned stale list's key section.
func parseStaleKeys(b []byte) ([]staleKV, error) {
	var keys []staleKV
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n>>1 > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: bad stale list key", ErrCorrupt)
		}
		l := int(n >> 1)
		keys = append(keys, staleKV{prefix: b[w : w+l], deleted: n&1 == 1})
		b = b[w+l:]
	}
	return keys, nil
}

// pruneKeys deletes, for each flat index key in keys (those version v
// wrote, in key order), the records no version from v on reads: the one v
// superseded (the newest below v; older ones were deleted when the version
// that superseded them was pruned), found by one prefix seek to (key,
// v-1), and v's own record too when it is a marker (v deleted the key).
// The seeks go through one iterator in increasing key order. A repeated
// prune finds the superseded record gone and deletes the marker again.
// (A range delete per key instead, which needs no read, made commits
// slower; see RATIONALE.md.)
func (s *Store) pruneKeys(ctx context.Context, v uint64, keys []staleKV) error {
	it, err := s.newKVIter(ctx)
	if err != nil {
		return err
	}
	defer it.Close()
	var kb []byte
	for c := 0; c < len(keys); c += s.opts.PruneChunk {
		b := s.pdb.NewBatch()
		for _, k := range keys[c:min(len(keys), c+s.opts.PruneChunk)] {
			kb = appendKVVersion(append(kb[:0], k.prefix...), v-1)
			if it.SeekPrefixGE(kb) {
				err = b.Delete(it.Key(), nil)
			} else {
				err = it.Error()
			}
			if err == nil && k.deleted {
				kb = appendKVVersion(append(kb[:0], k.prefix...), v)
				err = b.Delete(kb, nil)
			}
			if err != nil {
				b.Close()
				return err
			}
		}
		if err := (pebbleBatch{b, pebble.NoSync}).Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// iteratePebble calls fn for every key of the flat index whose key bytes
// start with prefix, in key order, with its latest value: the first record
// of each key's prefix, skipping markers and older records (NextPrefix).
// fn must not keep the slices.
func (s *Store) iteratePebble(ctx context.Context, prefix []byte, fn func(k types.StateKey, v []byte) error) error {
	it, err := s.newKVIter(ctx)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.SeekGE(prefix); ok && bytes.HasPrefix(it.Key(), prefix); ok = it.NextPrefix() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) == 0 {
			continue
		}
		key := it.Key()
		n := kvSplit(key)
		if n == len(key) {
			return fmt.Errorf("%w: unversioned index key %q", ErrCorrupt, key)
		}
		k, err := s.modules.parseKVKey(string(key[:n-len(kvEnd)]))
		if err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return it.Error()
}

// versionedOptions sets what a versioned store (Options.versionedIndex)
// needs of pebble beyond pebbleOptions: kvComparer, and no compactions
// for tombstone density. The pruner's deletes land in the flat index's
// large levels, and pebble compacted the tables they made dense down into
// the bottom level early, rewriting it: at 1M keys with pruning, 2.4–3.2
// kB per update of such compactions (RATIONALE.md).
func versionedOptions(o *pebble.Options) {
	o.Comparer = kvComparer
	o.Experimental.TombstoneDenseCompactionThreshold = -1
}

// format is the on-disk format the store is opened for.
func (s *Store) format() uint64 {
	if s.opts.versionedIndex {
		return storeFormatVersioned
	}
	return storeFormat
}
