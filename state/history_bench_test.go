package state

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// archiveKeys and archiveVersions shape BenchmarkHistoryRead's store: an
// archive (KeepVersions 0) of archiveKeys keys written at version 1, a hot
// key changed by every version after it, and a cold key changed only by the
// last one, so that reads 10,000 versions below the latest have a version
// to read.
const (
	archiveKeys     = 10_000
	archiveVersions = 10_002
)

func archiveHot() types.StateKey  { return benchKey(archiveKeys) }
func archiveCold() types.StateKey { return benchKey(archiveKeys / 2) }

// archiveStore opens the archive store, filling it first (about 10k synced
// commits) unless KAIROS_BENCH_FILL holds one already. Only the public API,
// so that the benchmark builds against older formats too.
func archiveStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "archive")
	if root := os.Getenv("KAIROS_BENCH_FILL"); root != "" {
		dir = filepath.Join(root, "archive-"+strconv.Itoa(archiveKeys)+"-"+strconv.Itoa(archiveVersions))
	}
	if _, err := os.Stat(dir); err == nil {
		s, err := OpenPebble(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	s, err := OpenPebble(dir+".part", Options{})
	if err != nil {
		b.Fatal(err)
	}
	ws := make([]Write, 0, archiveKeys+1)
	for i := 0; i <= archiveKeys; i++ {
		ws = append(ws, Write{Key: benchKey(i), Value: benchValue(i, 0)})
	}
	if _, err := s.Commit(ctx, 1, ws); err != nil {
		b.Fatal(err)
	}
	for h := uint64(2); h <= archiveVersions; h++ {
		ws := []Write{{Key: archiveHot(), Value: benchValue(archiveKeys, int(h))}}
		if h == archiveVersions {
			ws = append(ws, Write{Key: archiveCold(), Value: benchValue(archiveKeys/2, int(h))})
		}
		if _, err := s.Commit(ctx, h, ws); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(dir+".part", dir); err != nil {
		b.Fatal(err)
	}
	s, err = OpenPebble(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkHistoryRead reads a key's value at a version dist versions
// below the latest of an archive store (archiveStore), through a View whose
// nodes are cached, and reports CPU per read: "hot" is the key every
// version changes (the value is in the record of the version right above),
// "cold" the key only the latest version changed (its record is dist
// versions above the one read; format 3 paid a seek per version between),
// "latest-index" a key no version after the first changed (the flat
// index's value, the floor of any read through a View).
func BenchmarkHistoryRead(b *testing.B) {
	s := archiveStore(b)
	ctx := context.Background()
	latest, _ := s.Latest()
	if latest != archiveVersions {
		b.Fatalf("archive store at version %d, want %d", latest, archiveVersions)
	}
	for _, dist := range []uint64{1, 100, 10_000} {
		h := latest - dist
		for _, c := range []struct {
			name string
			key  types.StateKey
			want []byte
		}{
			{"hot", archiveHot(), benchValue(archiveKeys, int(h))},
			{"cold", archiveCold(), benchValue(archiveKeys/2, 0)},
			{"latest-index", benchKey(1), benchValue(1, 0)},
		} {
			b.Run(fmt.Sprintf("dist=%d/%s", dist, c.name), func(b *testing.B) {
				v, err := s.View(ctx, h)
				if err != nil {
					b.Fatal(err)
				}
				defer v.Close()
				if got, err := v.Get(ctx, c.key); err != nil || !bytes.Equal(got, c.want) {
					b.Fatalf("version %d: %x, %v; want %x", h, got, err, c.want)
				}
				b.ResetTimer()
				cpu := startCPU()
				for i := 0; i < b.N; i++ {
					if _, err := v.Get(ctx, c.key); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(cpu.since()*1e6/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
