package state_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/state"
)

// TestCrashHarnessCanFail is the negative control of the crash tests: a
// batch written with go-ds-pebble's default NoSync and acknowledged is gone
// after the simulated power loss, while the same batch written with Sync
// survives. If the harness ever stopped dropping unsynced data, the first
// half of this test fails and the crash tests below would prove nothing.
func TestCrashHarnessCanFail(t *testing.T) {
	ctx := context.Background()
	key := ds.NewKey("/kairos/latest")
	for _, sync := range []bool{false, true} {
		fs := vfs.NewCrashableMem()
		d := state.OpenOnFS(t, fs, sync)
		b, err := d.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Put(ctx, key, []byte{1}); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Get(ctx, key); err != nil {
			t.Fatalf("sync=%v: acknowledged batch not readable before the crash: %v", sync, err)
		}
		after := state.Crash(fs)
		d.Close() // the clone is taken; closing the original cannot change it
		d2 := state.OpenOnFS(t, after, sync)
		_, err = d2.Get(ctx, key)
		d2.Close()
		switch {
		case !sync && !errors.Is(err, ds.ErrNotFound):
			t.Fatalf("NoSync batch survived the crash (err=%v): the harness does not drop unsynced data", err)
		case sync && err != nil:
			t.Fatalf("synced batch lost in the crash: %v", err)
		}
	}
}
