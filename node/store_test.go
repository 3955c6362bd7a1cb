package node

import (
	"context"
	"errors"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// TestCheckFormat: a store without node records is stamped with this
// build's format and accepted again; node records without a format record
// (an older build's) and another format are ErrFormat.
func TestCheckFormat(t *testing.T) {
	ctx := context.Background()
	fresh := dssync.MutexWrap(ds.NewMapDatastore())
	// State records are not node records.
	if err := fresh.Put(ctx, ds.NewKey("/kairos/latest"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := checkFormat(ctx, fresh); err != nil {
			t.Fatalf("fresh store, open %d: %v", i, err)
		}
	}
	var f uint64
	if err := getCBOR(ctx, fresh, keyFormat, &f); err != nil || f != recordFormat {
		t.Fatalf("format record %d (%v), want %d", f, err, recordFormat)
	}

	old := dssync.MutexWrap(ds.NewMapDatastore())
	if err := old.Put(ctx, idKey(nsTx, testID(1)), []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := checkFormat(ctx, old); !errors.Is(err, ErrFormat) {
		t.Fatalf("records without a format record: %v, want %v", err, ErrFormat)
	}

	other := dssync.MutexWrap(ds.NewMapDatastore())
	if err := other.Put(ctx, keyFormat, types.MustEncode(uint64(recordFormat+1))); err != nil {
		t.Fatal(err)
	}
	if err := checkFormat(ctx, other); !errors.Is(err, ErrFormat) {
		t.Fatalf("format %d: %v, want %v", recordFormat+1, err, ErrFormat)
	}
}
