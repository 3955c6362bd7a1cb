package state

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// reuseKeys is the number of keys the buffer-reuse tests write every
// version: above parallelMin, so that the update runs in parallel too.
const reuseKeys = 300

// reuseValue is key i's value at version h, 8 bytes.
func reuseValue(h uint64, i int) []byte { return fmt.Appendf(nil, "%03d-%04d", h%1000, i) }

// fillReused writes version h's values into buf (reuseKeys × 8 bytes, the
// same every version) and returns writes whose values are slices of it,
// without old-value hints: the commit then takes each old value from the
// version below's writes or from the flat index.
func fillReused(buf []byte, h uint64) []Write {
	ws := make([]Write, reuseKeys)
	for i := range ws {
		v := buf[i*8 : (i+1)*8 : (i+1)*8]
		copy(v, reuseValue(h, i))
		ws[i] = Write{Key: key(fmt.Sprintf("k%d", i)), Value: v}
	}
	return ws
}

// checkReuseVersions checks every key of versions 1..latest against
// reuseValue: a version's values are read back through the history the
// version above wrote.
func checkReuseVersions(t *testing.T, s *Store, latest uint64) {
	t.Helper()
	ctx := context.Background()
	for h := uint64(1); h <= latest; h++ {
		v, err := s.View(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		for i := range reuseKeys {
			if got, err := v.Get(ctx, key(fmt.Sprintf("k%d", i))); err != nil || !bytes.Equal(got, reuseValue(h, i)) {
				v.Close()
				t.Fatalf("version %d, key %d: %q, %v; want %q", h, i, got, err, reuseValue(h, i))
			}
		}
		v.Close()
	}
	// GetMany reads an in-memory store through an index of its own
	// (latest.go), which Commit keeps in step: it must hold the store's
	// copies of the latest values too.
	keys := make([]types.StateKey, reuseKeys)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("k%d", i))
	}
	got, err := s.GetMany(ctx, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if !bytes.Equal(got[i], reuseValue(latest, i)) {
			t.Fatalf("GetMany, key %d: %q; want %q", i, got[i], reuseValue(latest, i))
		}
	}
	auditClean(t, s)
}

// buildIndex makes GetMany build its index of an in-memory store's latest
// values before the commits, so that they update it (apply).
func buildIndex(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.GetMany(context.Background(), []types.StateKey{key("k0")}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCommitReusedBufferNotInHistory: a caller that writes every version
// from one buffer, reused once the version's wait returned, as an executor
// with an arena does. Each version replaces every key the one below wrote,
// without hints; the buffer then holds this version's values, and a commit
// that took the version below's values from it would record them as the
// old values (history), which the reads of the version below show.
func TestCommitReusedBufferNotInHistory(t *testing.T) {
	ctx := context.Background()
	const versions = 6
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			buildIndex(t, s)
			buf := make([]byte, reuseKeys*8)
			var wait func() error
			for h := uint64(1); h <= versions; h++ {
				if wait != nil {
					if err := wait(); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if _, wait, err = s.CommitAsync(ctx, h, fillReused(buf, h)); err != nil {
					t.Fatal(err)
				}
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			for i := range buf {
				buf[i] = 'x' // the last version's buffer is the caller's again
			}
			checkReuseVersions(t, s, versions)
		})
	}
}

// TestCommitBufferReusedWhileNextCommits: the caller waits for each
// version on another goroutine and overwrites its buffer as soon as that
// wait returns, while the next version's update, which replaces every key
// the version wrote without hints, may still be running. The old values
// must be the written ones (no torn or overwritten value in the history),
// and under -race no read of the buffer may race with the overwrite.
func TestCommitBufferReusedWhileNextCommits(t *testing.T) {
	ctx := context.Background()
	const versions = 12
	for name, s := range historyStores(t, Options{}) {
		t.Run(name, func(t *testing.T) {
			buildIndex(t, s)
			var bufs [2][]byte
			var freed [2]chan error // closed when a buffer's scribbler is done
			for i := range bufs {
				bufs[i] = make([]byte, reuseKeys*8)
				freed[i] = make(chan error, 1)
				freed[i] <- nil
			}
			for h := uint64(1); h <= versions; h++ {
				b := h % 2
				if err := <-freed[b]; err != nil {
					t.Fatal(err)
				}
				_, wait, err := s.CommitAsync(ctx, h, fillReused(bufs[b], h))
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					err := wait()
					for i := range bufs[b] {
						bufs[b][i] = 'x'
					}
					freed[b] <- err
				}()
			}
			for i := range freed {
				if err := <-freed[i]; err != nil {
					t.Fatal(err)
				}
			}
			checkReuseVersions(t, s, versions)
		})
	}
}
