package state_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/state/statebench"
)

// TestCrashHarnessCanFail is the negative control of the crash tests: a
// store over go-ds-pebble with its default NoSync loses acknowledged commits
// in the simulated power loss, while the same commits written with Sync
// survive. If the harness ever stopped dropping unsynced data, the first
// half of this test fails and the crash tests below would prove nothing.
func TestCrashHarnessCanFail(t *testing.T) {
	ctx := context.Background()
	w := crashWorkload()
	const blocks = 3
	for _, sync := range []bool{false, true} {
		fs := vfs.NewCrashableMem()
		d := state.OpenOnFS(t, fs, sync)
		s, err := state.Open(ctx, d, state.Options{AtomicBatches: true})
		if err != nil {
			t.Fatal(err)
		}
		for h := uint64(1); h <= blocks; h++ {
			if _, err := s.Commit(ctx, h, w.Writes(h)); err != nil {
				t.Fatal(err)
			}
		}
		after := state.Crash(fs)
		d.Close() // the clone is taken; closing the original cannot change it
		d2 := state.OpenOnFS(t, after, sync)
		s2, err := state.Open(ctx, d2, state.Options{AtomicBatches: true})
		if err != nil {
			t.Fatalf("sync=%v: reopen after the crash: %v", sync, err)
		}
		h, _ := s2.Latest()
		d2.Close()
		switch {
		case !sync && h == blocks:
			t.Fatalf("NoSync: all %d acknowledged commits survived the crash: the harness does not drop unsynced data", blocks)
		case sync && h != blocks:
			t.Fatalf("Sync: reopened at version %d after %d acknowledged commits", h, blocks)
		}
		t.Logf("sync=%v: %d commits acknowledged, version %d after the crash", sync, blocks, h)
	}
}

// Crash point sweep settings; KAIROS_CRASH_POINTS raises the count for the
// long runs.
const (
	crashPoints    = 48
	crashPointsEnv = "KAIROS_CRASH_POINTS"
	crashKeep      = 3
)

// crashWorkload spreads its keys over more modules than a block writes, so
// that the first four of its 16 blocks bring new modules (module ids in the
// batch) and crash points fall in them too.
func crashWorkload() statebench.Workload {
	return statebench.Workload{Keys: 600, Block: 60, ValueSize: 40, Modules: 240, Seed: 9}
}

// crashProgress is how far a crashRun got: the highest height handed to
// Commit or CommitAsync, and the last one whose Commit (or CommitAsync's
// wait) returned.
type crashProgress struct{ handed, acked atomic.Uint64 }

// crashRun opens a store on fs, commits blocks 1..blocks and prunes after
// each, recording its progress in p. With async, block h+1's tree update runs
// while h is written, and the test takes h's wait only after CommitAsync
// of h+1 returned, so that the crash point can fall with two versions in
// flight: h+1's write may then be running, or even be over, while only h-1
// is acknowledged. It keeps going after the crash point: the clone is
// already taken.
func crashRun(t *testing.T, fs vfs.FS, blocks uint64, p *crashProgress, async bool) {
	t.Helper()
	ctx := context.Background()
	w := crashWorkload()
	s := state.OpenOnFSStore(t, fs, state.Options{KeepVersions: crashKeep, PruneChunk: 16})
	var wait func() error
	for h := uint64(1); h <= blocks; h++ {
		p.handed.Store(h)
		if !async {
			if _, err := s.Commit(ctx, h, w.Writes(h)); err != nil {
				t.Fatalf("commit %d: %v", h, err)
			}
			p.acked.Store(h)
		} else {
			_, next, err := s.CommitAsync(ctx, h, w.Writes(h))
			if err != nil {
				t.Fatalf("commit %d: %v", h, err)
			}
			if wait != nil {
				if err := wait(); err != nil {
					t.Fatalf("wait %d: %v", h-1, err)
				}
				p.acked.Store(h - 1)
			}
			wait = next
		}
		if _, err := s.Prune(ctx); err != nil {
			t.Fatalf("prune after %d: %v", h, err)
		}
	}
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatalf("wait %d: %v", blocks, err)
		}
		p.acked.Store(blocks)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashPoints simulates a power loss at many points of a run of commits
// and prunes: after the N-th write-side filesystem operation (writes, syncs,
// creates, renames, removes, in pebble's WAL, memtable flushes, compactions
// and manifest) it keeps only synced data, synced data plus a random half
// of the unsynced blocks, or everything. Each crashed filesystem must
// reopen at the last acknowledged version or the one in flight, with the
// reference root, and audit clean: no leaked or missing node, the flat
// index in step. Every other point runs the commits pipelined
// (CommitAsync): there the version can be up to two above the
// acknowledged one (see crashRun), never above the last one handed over.
func TestCrashPoints(t *testing.T) {
	points := crashPoints
	if state.RaceEnabled {
		points = crashPoints / 8
	}
	if v := os.Getenv(crashPointsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", crashPointsEnv, v)
		}
		points = n
	}
	ctx := context.Background()
	w := crashWorkload()
	blocks := w.FillBlocks() + 6
	ref := newRefRoots(t, w)

	var dryProgress crashProgress
	dry := state.NewCrashPointFS(vfs.NewCrashableMem(), 0, vfs.CrashCloneCfg{})
	crashRun(t, dry, blocks, &dryProgress, false)
	total := dry.Ops()
	if total < 100 {
		t.Fatalf("only %d filesystem operations in a run: the hook sees too little", total)
	}
	points = min(points, int(total))
	r := rand.New(rand.NewPCG(3, 3))
	// inFlight[async][d]: points that reopened d versions above the
	// acknowledged one.
	var inFlight [2][3]int
	twoInFlight := 0 // points that crashed with two commits handed over and not acknowledged
	versions := map[uint64]bool{}
	for p := 0; p < points; p++ {
		target := 1 + int64(p)*total/int64(points) + r.Int64N(max(1, total/int64(points)))
		// A third of the points keep only synced data (power loss), a
		// third a random half of the unsynced blocks (a disk that wrote
		// some of its cache), a third all of it (a process crash: the OS
		// still has every write).
		cfg := vfs.CrashCloneCfg{}
		if keep := 50 * (p % 3); keep > 0 {
			cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rand.New(rand.NewPCG(uint64(p), 1))}
		}
		mem := vfs.NewCrashableMem()
		fs := state.NewCrashPointFS(mem, target, cfg)
		var ackAtCrash, handedAtCrash atomic.Uint64
		progress := &crashProgress{}
		fs.OnCrash = func() {
			ackAtCrash.Store(progress.acked.Load())
			handedAtCrash.Store(progress.handed.Load())
		}
		async := p%2 == 1
		crashRun(t, fs, blocks, progress, async)
		clone := fs.Clone()
		if clone == nil {
			continue // background work made this run shorter than the dry one
		}
		s := state.OpenOnFSStore(t, clone, state.Options{KeepVersions: crashKeep})
		h, root := s.Latest()
		ack := ackAtCrash.Load()
		ahead := uint64(1)
		if async {
			ahead = 2
		}
		if h < ack || h > ack+ahead || h > handedAtCrash.Load() {
			t.Fatalf("point %d/%d (op %d, async %v): reopened at version %d, acknowledged %d, handed over %d",
				p, points, target, async, h, ack, handedAtCrash.Load())
		}
		inFlight[b2i(async)][h-ack]++
		if handedAtCrash.Load() >= ack+2 {
			twoInFlight++
		}
		versions[h] = true
		if want := ref.root(h); root != want {
			t.Fatalf("point %d (op %d): version %d root %s, reference %s", p, target, h, root, want)
		}
		rep, err := s.Audit(ctx)
		if err != nil {
			t.Fatalf("point %d (op %d): audit: %v", p, target, err)
		}
		if !rep.Clean() {
			t.Fatalf("point %d (op %d) at version %d: leaked=%d missing=%d index mismatches=%d",
				p, target, h, len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
		}
		// The recovered store carries on: the next block commits on top.
		if _, err := s.Commit(ctx, h+1, w.Writes(h+1)); err != nil {
			t.Fatalf("point %d: commit after recovery: %v", p, err)
		}
		if _, root := s.Latest(); root != ref.root(h+1) {
			t.Fatalf("point %d: root after recovery and one more block differs from the reference", p)
		}
	}
	t.Logf("%d crash points over %d operations: reopened at %d distinct versions; "+
		"versions above the acknowledged one (0, 1, 2): Commit %v, CommitAsync %v; %d with two commits in flight",
		points, total, len(versions), inFlight[0], inFlight[1], twoInFlight)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
