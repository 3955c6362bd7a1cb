package statebench

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/state"
)

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Floor writes a workload as plain key-value pairs into go-ds-pebble: one
// synced batch per block, keys shaped like the state's flat index. It is the
// lower bound for the state store, which writes these bytes and its tree.
type Floor struct {
	ds *pebbleds.Datastore
}

// OpenFloor opens (or creates) a floor datastore in dir with synced writes.
func OpenFloor(dir string) (*Floor, error) {
	d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleWriteOptions(pebble.Sync))
	if err != nil {
		return nil, fmt.Errorf("statebench: open floor: %w", err)
	}
	return &Floor{ds: d}, nil
}

// FloorKey is the datastore key of one state key, in the flat index shape.
func FloorKey(w state.Write) ds.Key {
	b := append(append(make([]byte, 0, 32+len(w.Key.Key)), w.Key.Module[:]...), w.Key.Key...)
	return ds.NewKey("/kairos/kv/" + keyEncoding.EncodeToString(b))
}

// Commit writes one block as one synced batch.
func (f *Floor) Commit(ctx context.Context, writes []state.Write) error {
	b, err := f.ds.Batch(ctx)
	if err != nil {
		return err
	}
	for _, w := range writes {
		if err := b.Put(ctx, FloorKey(w), w.Value); err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// Get reads the latest value of one key.
func (f *Floor) Get(ctx context.Context, w state.Write) ([]byte, error) {
	return f.ds.Get(ctx, FloorKey(w))
}

// Close flushes and closes the datastore.
func (f *Floor) Close() error { return f.ds.Close() }

// DirBytes is the total size of the regular files under dir.
func DirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted by a compaction while we walk
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}
