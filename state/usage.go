package state

import (
	"context"
	"strings"

	"github.com/ipfs/go-datastore/query"
)

// Record kinds of a Usage breakdown, in the order Usage returns them.
const (
	UsageNodes   = "nodes"
	UsageHistory = "history"
	UsageIndex   = "flat index"
	UsageStale   = "stale lists"
	UsageRoots   = "root records"
	UsageModules = "module table"
	UsageOther   = "other"
)

// UsageKind is the logical size of one kind of record: the bytes of the
// keys and values the store holds, before the datastore's own overhead
// (pebble's block and index bytes, and data it has not compacted away yet,
// which only the size on disk shows).
type UsageKind struct {
	Kind       string
	Records    int64
	KeyBytes   int64
	ValueBytes int64
}

// Bytes is the kind's key and value bytes.
func (u UsageKind) Bytes() int64 { return u.KeyBytes + u.ValueBytes }

// Usage scans the whole store and returns the logical bytes per record
// kind, to tell which records the disk goes to (the benchmarks print it
// beside the size on disk). It reads every record: a tool, not a metric.
func (s *Store) Usage(ctx context.Context) ([]UsageKind, error) {
	kinds := []UsageKind{{Kind: UsageNodes}, {Kind: UsageHistory}, {Kind: UsageIndex}, {Kind: UsageStale}, {Kind: UsageRoots}, {Kind: UsageModules}, {Kind: UsageOther}}
	add := func(k string, v []byte) {
		i := len(kinds) - 1
		switch {
		case strings.HasPrefix(k, nsNode):
			i = 0
		case strings.HasPrefix(k, nsHist):
			i = 1
		case strings.HasPrefix(k, nsKV):
			i = 2
		case strings.HasPrefix(k, nsStale):
			i = 3
		case strings.HasPrefix(k, nsRoot):
			i = 4
		case strings.HasPrefix(k, nsModule):
			i = 5
		}
		kinds[i].Records++
		kinds[i].KeyBytes += int64(len(k))
		kinds[i].ValueBytes += int64(len(v))
	}
	if s.pdb != nil {
		// Pebble's own iterator: go-ds-pebble's query would copy every
		// key and value of a store of gigabytes.
		it, err := s.pdb.NewIterWithContext(ctx, nil)
		if err != nil {
			return nil, err
		}
		for it.First(); it.Valid(); it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return nil, err
			}
			add(string(it.Key()), v)
		}
		return kinds, it.Close()
	}
	res, err := s.d.Query(ctx, query.Query{})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		add(r.Key, r.Value)
	}
	return kinds, nil
}
