package statebench

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/state"
)

// PebbleStore is a state store on a go-ds-pebble datastore whose pebble
// handle it keeps, so that a tool can force a compaction and show the disk
// space pruning gives back (pebble reclaims deleted data only when it
// compacts the files holding it).
type PebbleStore struct {
	*state.Store
	ds *pebbleds.Datastore
}

// OpenPebbleStore opens a state store in dir with synced writes, like
// state.OpenPebble.
func OpenPebbleStore(ctx context.Context, dir string, opts state.Options) (*PebbleStore, error) {
	d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleWriteOptions(pebble.Sync))
	if err != nil {
		return nil, fmt.Errorf("statebench: open pebble %s: %w", dir, err)
	}
	opts.AtomicBatches = true
	s, err := state.Open(ctx, d, opts)
	if err != nil {
		d.Close()
		return nil, err
	}
	return &PebbleStore{Store: s, ds: d}, nil
}

// Compact flushes the memtables and compacts the whole key space.
func (p *PebbleStore) Compact(ctx context.Context) error {
	if err := p.ds.DB.Flush(); err != nil {
		return err
	}
	return p.ds.DB.Compact(ctx, []byte{0}, []byte{0xff}, true)
}

// Close closes the store and its datastore.
func (p *PebbleStore) Close() error {
	if err := p.Store.Close(); err != nil {
		p.ds.Close()
		return err
	}
	return p.ds.Close()
}
