package state

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
)

// TestOpenRefusesOtherFormats: a store of format 1 (nodes keyed by hash
// alone, no format record), of format 2 (value records), of format 3
// (history keyed by version first, module addresses in node records) or of
// an unknown format fails Open with ErrFormat instead of reading records by
// keys they were not written under.
func TestOpenRefusesOtherFormats(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		format []byte // nil: no format record
	}{
		{"format 1", nil},
		{"format 2", binary.AppendUvarint(nil, 2)},
		{"format 3", binary.AppendUvarint(nil, 3)},
		{"a later format", binary.AppendUvarint(nil, storeFormat+1)},
		{"format 0", binary.AppendUvarint(nil, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dssync.MutexWrap(ds.NewMapDatastore())
			s, err := Open(ctx, d, Options{})
			if err != nil {
				t.Fatal(err)
			}
			mustCommit(t, s, 1, []Write{{Key: key("a"), Value: []byte("1")}})
			if tc.format == nil {
				err = d.Delete(ctx, keyFormat)
			} else {
				err = d.Put(ctx, keyFormat, tc.format)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, d, Options{}); !errors.Is(err, ErrFormat) {
				t.Fatalf("open: %v, want ErrFormat", err)
			}
			if err := d.Put(ctx, keyFormat, binary.AppendUvarint(nil, storeFormat)); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, d, Options{}); err != nil {
				t.Fatalf("open with the format restored: %v", err)
			}
		})
	}
}
