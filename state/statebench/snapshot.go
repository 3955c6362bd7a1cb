package statebench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// snapshotStats is what the snapshot part of the benchmark measured.
type snapshotStats struct {
	bytes           int64
	chunks, workers int
	export          time.Duration
	exportCPU       time.Duration
	// stage and install are the two phases of the import from peers,
	// stream the import from local chunks; busy is stream again while the
	// commit-phase store was still open (see Run).
	stage, install, stream, busy importRun
	// closeWait is the commit-phase store's Close before the imports.
	closeWait time.Duration
	// rssNote qualifies the RSS figures when the peak could not be reset
	// before each import.
	rssNote string
}

// importRun is one timed import phase: wall time, process CPU time and
// the process's peak RSS during it.
type importRun struct {
	wall, cpu time.Duration
	rss       int64
}

// exportedSnapshot is a snapshot exported as chunk files, as if fetched
// from peers.
type exportedSnapshot struct {
	dir    string
	m      *state.Manifest
	height uint64
	root   types.Root
}

func (e *exportedSnapshot) chunkFile(i int) string {
	return filepath.Join(e.dir, "chunks", fmt.Sprintf("%06d", i))
}

// exportSnapshot exports the latest version of s into chunk files under
// dir and records its size and speed in st. The caller removes dir.
func exportSnapshot(ctx context.Context, s *state.Store, dir string, st *snapshotStats) (*exportedSnapshot, error) {
	h, root := s.Latest()
	e := &exportedSnapshot{dir: dir, height: h, root: root}
	if err := os.MkdirAll(filepath.Join(dir, "chunks"), 0o755); err != nil {
		return nil, err
	}
	t0, c0 := time.Now(), cpuTime()
	m, err := s.ExportSnapshot(ctx, h, state.SnapshotChunkLeavesDefault, func(i int, b []byte) error {
		st.bytes += int64(len(b))
		return os.WriteFile(e.chunkFile(i), b, 0o644)
	})
	if err != nil {
		return e, err
	}
	st.export, st.exportCPU, st.chunks = time.Since(t0), cpuTime()-c0, len(m.Chunks)
	e.m = m
	return e, nil
}

// imports imports e twice into fresh pebble stores, as a syncing node
// does: from peers (every core verifies and stages chunks, then Install
// builds the tree) and as a local chunk stream (InstallFrom reads,
// verifies and builds, nothing staged). Each starts with the memory of
// what ran before returned to the OS and the peak RSS reset. It checks the
// imported roots and audits nothing (Audit reads the whole store; the
// state tests do that).
func (e *exportedSnapshot) imports(ctx context.Context, st *snapshotStats) error {
	if err := e.staged(ctx, st); err != nil {
		return err
	}
	var err error
	st.stream, err = e.streamed(ctx, "streamed")
	return err
}

// timed runs fn and returns its wall and CPU time and the peak RSS while
// it ran (the whole process's so far where the peak cannot be reset).
func timed(fn func() error) (importRun, error) {
	resetPeakRSS()
	t0, c0 := time.Now(), cpuTime()
	err := fn()
	return importRun{wall: time.Since(t0), cpu: cpuTime() - c0, rss: peakRSS()}, err
}

// stageWorkersPerCore is how many chunks per core the staged import has
// in flight. A node fetching from peers keeps several requests open; each
// Add ends in a synced write, and with one worker per core the cores sat
// waiting for fsync (0.94 of 2 cores busy while staging).
const stageWorkersPerCore = 2

// staged imports e as a node fetching from peers does: workers on every
// core verify and stage chunks (read from their files), then Install
// builds the tree.
func (e *exportedSnapshot) staged(ctx context.Context, st *snapshotStats) error {
	dst, err := state.OpenPebble(filepath.Join(e.dir, "staged"), state.Options{})
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(e.dir, "staged"))
	defer dst.Close() // again after the import: a second Close does nothing
	st.rssNote = rssNote()
	var im *state.Importer
	st.workers = stageWorkersPerCore * runtime.GOMAXPROCS(0)
	st.stage, err = timed(func() error {
		var err error
		if im, err = state.NewImporter(ctx, dst.Datastore(), e.m); err != nil {
			return err
		}
		next := make(chan int)
		errs := make(chan error, st.workers)
		for range st.workers {
			go func() {
				var err error
				for i := range next {
					if err != nil {
						continue // drain
					}
					var b []byte
					if b, err = os.ReadFile(e.chunkFile(i)); err == nil {
						_, err = im.Add(ctx, b)
					}
				}
				errs <- err
			}()
		}
		for i := range e.m.Chunks {
			next <- i
		}
		close(next)
		for range st.workers {
			if e := <-errs; e != nil && err == nil {
				err = e
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	// The install's figures go on from the staging's peak: both phases
	// are one import.
	c0, t0 := cpuTime(), time.Now()
	err = im.Install(ctx, dst)
	st.install = importRun{wall: time.Since(t0), cpu: cpuTime() - c0, rss: peakRSS()}
	if err != nil {
		return err
	}
	st.stage.rss = st.install.rss
	if err := e.check(dst, "staged"); err != nil {
		return err
	}
	// Closed before the streamed import, so that its pebble's compactions
	// and memory are not counted there.
	return dst.Close()
}

// streamed imports e into a fresh store with InstallFrom reading the chunk
// files; name is the store's directory, removed afterwards.
func (e *exportedSnapshot) streamed(ctx context.Context, name string) (importRun, error) {
	dir := filepath.Join(e.dir, name)
	dst, err := state.OpenPebble(dir, state.Options{})
	if err != nil {
		return importRun{}, err
	}
	defer os.RemoveAll(dir)
	defer dst.Close()
	r, err := timed(func() error {
		im, err := state.NewImporter(ctx, dst.Datastore(), e.m)
		if err != nil {
			return err
		}
		return im.InstallFrom(ctx, dst, func(_ context.Context, i int) ([]byte, error) { return os.ReadFile(e.chunkFile(i)) })
	})
	if err != nil {
		return r, err
	}
	if err := e.check(dst, name); err != nil {
		return r, err
	}
	return r, dst.Close()
}

// check checks that dst holds the exported version.
func (e *exportedSnapshot) check(dst *state.Store, name string) error {
	if gh, gr := dst.Latest(); gh != e.height || gr != e.root {
		return fmt.Errorf("statebench: %s import at (%d, %s), want (%d, %s)", name, gh, gr, e.height, e.root)
	}
	return nil
}
