package state

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"
)

// BenchmarkSnapshot exports the latest version of a benchKeys tree (chunks
// kept in memory) and imports it into a fresh synced pebble store twice:
// staging (verify and write each chunk) then Install (build the tree
// bottom-up), and InstallFrom reading the chunks from memory (verify and
// build, nothing staged), each op being both whole imports. It reports MB/s
// and MB per CPU-second of each phase. KAIROS_BENCH_CPUPROFILE=<file>
// profiles the Install into <file>, the InstallFrom into <file>.stream and
// the export into <file>.export and the staging into <file>.stage.
func BenchmarkSnapshot(b *testing.B) {
	n := benchKeys()
	s, h := fillStore(b, n)
	ctx := context.Background()
	var chunks [][]byte
	var size int64
	stop := profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), ".export")
	cpu, t0 := startCPU(), time.Now()
	m, err := s.ExportSnapshot(ctx, h, SnapshotChunkLeavesDefault, func(_ int, c []byte) error {
		chunks = append(chunks, c)
		size += int64(len(c))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / 1e6
	exportRate, exportCPU := mb/time.Since(t0).Seconds(), mb/cpu.since()
	stop()
	b.ResetTimer()
	var stageCPU, installCPU, streamCPU float64
	var stageWall, installWall, streamWall time.Duration
	for i := 0; i < b.N; i++ {
		dst, err := OpenPebble(filepath.Join(b.TempDir(), "dst"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		stop = profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), ".stage")
		cpu, t0 := startCPU(), time.Now()
		im, err := NewImporter(ctx, dst.Datastore(), m)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range chunks {
			if _, err := im.Add(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
		stageCPU, stageWall = stageCPU+cpu.since(), stageWall+time.Since(t0)
		stop()
		stop = profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), "")
		cpu, t0 = startCPU(), time.Now()
		if err := im.Install(ctx, dst); err != nil {
			b.Fatal(err)
		}
		installCPU, installWall = installCPU+cpu.since(), installWall+time.Since(t0)
		stop()
		closeImported(b, dst, m)

		dst, err = OpenPebble(filepath.Join(b.TempDir(), "dst"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		stop = profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), ".stream")
		cpu, t0 = startCPU(), time.Now()
		im, err = NewImporter(ctx, dst.Datastore(), m)
		if err != nil {
			b.Fatal(err)
		}
		err = im.InstallFrom(ctx, dst, func(_ context.Context, i int) ([]byte, error) { return chunks[i], nil })
		if err != nil {
			b.Fatal(err)
		}
		streamCPU, streamWall = streamCPU+cpu.since(), streamWall+time.Since(t0)
		stop()
		closeImported(b, dst, m)
	}
	total := mb * float64(b.N)
	b.ReportMetric(exportRate, "export-MB/s")
	b.ReportMetric(exportCPU, "export-MB/cpu-s")
	b.ReportMetric(total/stageWall.Seconds(), "stage-MB/s")
	b.ReportMetric(total/stageCPU, "stage-MB/cpu-s")
	b.ReportMetric(total/installWall.Seconds(), "install-MB/s")
	b.ReportMetric(total/installCPU, "install-MB/cpu-s")
	b.ReportMetric(total/(stageWall+installWall).Seconds(), "staged-import-MB/s")
	b.ReportMetric(total/streamWall.Seconds(), "stream-MB/s")
	b.ReportMetric(total/streamCPU, "stream-MB/cpu-s")
	// How many cores the streamed import kept busy on average (CPU-seconds
	// per second): at most GOMAXPROCS, less on a loaded machine.
	b.ReportMetric(streamCPU/streamWall.Seconds(), "stream-cores")
}

// closeImported checks that dst holds m's root and closes it.
func closeImported(b *testing.B, dst *Store, m *Manifest) {
	b.Helper()
	if _, root := dst.Latest(); root != m.Root {
		b.Fatalf("imported root %s, want %s", root, m.Root)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
}

// profileTo profiles the CPU into path+suffix until the returned function
// is called; with an empty path it does nothing. The benchmarks profile only
// their timed work this way (go test's -cpuprofile also covers the fill,
// the cache warming and the warm-up blocks, which can be half the samples).
func profileTo(b *testing.B, path, suffix string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path + suffix)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
