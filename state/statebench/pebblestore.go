package statebench

import (
	"context"
	"errors"

	"github.com/kairos-network/kairos/state"
)

// PebbleStore is a state store opened by state.OpenPebble (the same pebble
// options and synced writes as a node's), whose pebble handle a tool uses
// to force a compaction and show the disk space pruning gives back (pebble
// reclaims deleted data only when it compacts the files holding it).
type PebbleStore struct {
	*state.Store
}

// ErrNoPebble reports a store that state.OpenPebble did not open.
var ErrNoPebble = errors.New("statebench: store has no pebble database")

// OpenPebbleStore opens a state store in dir with state.OpenPebble. It used
// to open go-ds-pebble with its default options, so the demo measured
// another store than the one a node runs (no bloom filters, snappy,
// pebble's default memtable and L0 thresholds).
func OpenPebbleStore(_ context.Context, dir string, opts state.Options) (*PebbleStore, error) {
	s, err := state.OpenPebble(dir, opts)
	if err != nil {
		return nil, err
	}
	return &PebbleStore{Store: s}, nil
}

// Compact flushes the memtables and compacts the whole key space.
func (p *PebbleStore) Compact(ctx context.Context) error {
	db := p.Pebble()
	if db == nil {
		return ErrNoPebble
	}
	if err := db.Flush(); err != nil {
		return err
	}
	return db.Compact(ctx, []byte{0}, []byte{0xff}, true)
}
