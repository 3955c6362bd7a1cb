package statebench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Config is one run of the state benchmark.
type Config struct {
	Workload Workload
	// Blocks is the number of update blocks after the fill, for each of
	// the three stores (floor, pruning on, pruning off).
	Blocks int
	// Keep is K of the pruning-on store.
	Keep uint64
	// Samples is how many disk-size samples the disk table has.
	Samples int
	// ReadSamples and ProofSamples are how many reads and proofs are timed.
	ReadSamples, ProofSamples int
	// ProofKeys, if > 0, builds a second tree of that many keys (in blocks
	// of state.BlockWritesMax, no pruning) only to measure proofs at that
	// size; 0 reports it as not measured.
	ProofKeys int
	// Dir is the scratch directory; each store gets a sub-directory that is
	// removed when its part of the run ends.
	Dir string
	// Progress receives one line per progress step (stderr in the command).
	Progress io.Writer
}

// DefaultConfig is the run of state.md's targets.
func DefaultConfig() Config {
	return Config{
		Workload: DefaultWorkload(), Blocks: 2000, Keep: 100, Samples: 10,
		ReadSamples: 100_000, ProofSamples: 1000,
	}
}

// storeRun is what one store's run measured.
type storeRun struct {
	fill, update   time.Duration // commit time of the fill and update phases
	prune          time.Duration // time spent in Prune
	fillN, updateN int           // updates in each phase
	disk           []int64       // disk bytes at each sample point
	diskAt         []uint64      // the heights of the samples
	final          int64         // disk bytes at the end
}

func (r storeRun) updateRate() float64 { return float64(r.updateN) / r.update.Seconds() }
func (r storeRun) fillRate() float64   { return float64(r.fillN) / r.fill.Seconds() }

// Run executes the benchmark and prints the table to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	w := cfg.Workload
	if err := w.Validate(); err != nil {
		return err
	}
	if cfg.Blocks < 1 || cfg.Samples < 1 || cfg.ReadSamples < 1 || cfg.ProofSamples < 1 {
		return fmt.Errorf("statebench: blocks, samples, read and proof samples must be positive")
	}
	if w.Block > state.BlockWritesMax {
		return fmt.Errorf("statebench: %d-key blocks exceed state.BlockWritesMax (%d)", w.Block, state.BlockWritesMax)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	last := w.FillBlocks() + uint64(cfg.Blocks)
	every := max(1, uint64(cfg.Blocks)/uint64(cfg.Samples))
	sampleAt := func(h uint64) bool { return h > w.FillBlocks() && (h-w.FillBlocks())%every == 0 }

	fmt.Fprintf(out, "kairos bench state\n")
	fmt.Fprintf(out, "machine:  %s/%s, %d cores (GOMAXPROCS %d), %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(out, "workload: %d keys, %d-key blocks, %d-byte values, %d modules, seed %d; fill %d blocks, then %d update blocks; K=%d; synced commits\n",
		w.Keys, w.Block, w.ValueSize, w.Modules, w.Seed, w.FillBlocks(), cfg.Blocks, cfg.Keep)
	fmt.Fprintf(out, "scratch:  %s\n\n", cfg.Dir)

	// The floor: the same key-value bytes, one synced pebble batch per block.
	var floor storeRun
	var floorRead time.Duration
	{
		dir := filepath.Join(cfg.Dir, "floor")
		f, err := OpenFloor(dir)
		if err != nil {
			return err
		}
		for h := uint64(1); h <= last; h++ {
			ws := w.Writes(h)
			t0 := time.Now()
			if err := f.Commit(ctx, ws); err != nil {
				f.Close()
				return err
			}
			floor.addCommit(w, h, time.Since(t0), len(ws))
			if sampleAt(h) {
				if err := floor.sample(dir, h); err != nil {
					f.Close()
					return err
				}
			}
			progress(cfg.Progress, "floor", h, last, &floor)
		}
		keys := readKeys(w, cfg.ReadSamples)
		floorRead, err = timeReads(keys, func(k types.StateKey) error {
			_, err := f.Get(ctx, state.Write{Key: k})
			return err
		})
		if err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if floor.final, err = DirBytes(dir); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}

	// Pruning off first, so that the pruning-on store is the one left warm
	// for the read and proof measurements.
	unpruned, unprunedRSS, err := runStore(ctx, cfg, "no-prune", 0, sampleAt, nil)
	if err != nil {
		return err
	}
	var read time.Duration
	var proofs proofStats
	var snap snapshotStats
	pruned, rss, err := runStore(ctx, cfg, "prune", cfg.Keep, sampleAt, func(s *state.Store) error {
		keys := readKeys(w, cfg.ReadSamples)
		var err error
		if read, err = timeReads(keys, func(k types.StateKey) error {
			_, err := s.Get(ctx, k)
			return err
		}); err != nil {
			return err
		}
		if proofs, err = measureProofs(ctx, s, w, cfg.ProofSamples); err != nil {
			return err
		}
		snap, err = measureSnapshot(ctx, s, filepath.Join(cfg.Dir, "import"))
		return err
	})
	if err != nil {
		return err
	}
	big, bigKeys := "not measured (run with --proof-keys 10000000)", 10_000_000
	if cfg.ProofKeys > 0 {
		bigKeys = cfg.ProofKeys
		if big, err = bigProofs(ctx, cfg); err != nil {
			return err
		}
	}

	raw := float64(types.AddressLen + len(w.Key(0).Key) + w.ValueSize)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "what\tstate, prune K=%d\tstate, no prune\tpebble floor\ttarget\n", cfg.Keep)
	fmt.Fprintf(tw, "commit, update blocks (updates/s)\t%s\t%s\t%s\t>= 100k/s\n", rate(pruned.updateRate()), rate(unpruned.updateRate()), rate(floor.updateRate()))
	fmt.Fprintf(tw, "commit, fill blocks (inserts/s)\t%s\t%s\t%s\t\n", rate(pruned.fillRate()), rate(unpruned.fillRate()), rate(floor.fillRate()))
	fmt.Fprintf(tw, "prune time per update block\t%s\t-\t-\t\n", dur(pruned.prune/time.Duration(cfg.Blocks)))
	fmt.Fprintf(tw, "latest read, warm (flat index)\t%s\t-\t%s\t<= 5µs\n", dur(read), dur(floorRead))
	fmt.Fprintf(tw, "proof at %d keys: size present/absent\t%s\t-\t-\t<= 1 KB at 10M\n", w.Keys, proofs.size())
	fmt.Fprintf(tw, "proof at %d keys: verify present/absent\t%s\t-\t-\t<= 20µs at 10M\n", w.Keys, proofs.verify())
	fmt.Fprintf(tw, "proof at %d keys\t%s\t\t\t\n", bigKeys, big)
	fmt.Fprintf(tw, "snapshot export (%s in %d chunks)\t%s\t-\t-\t\n", mib(snap.bytes), snap.chunks, mbps(snap.bytes, snap.export))
	fmt.Fprintf(tw, "snapshot import: verify+stage / rebuild+install\t%s / %s\t-\t-\t>= 50 MB/s\n", mbps(snap.bytes, snap.stage), mbps(snap.bytes, snap.install))
	fmt.Fprintf(tw, "disk bytes per live key (raw %0.f B)\t%.0f (%.1f× raw)\t%.0f (%.1f× raw)\t%.0f (%.1f× raw)\t<= 3× raw\n", raw,
		perKey(pruned.final, w), perKey(pruned.final, w)/raw, perKey(unpruned.final, w), perKey(unpruned.final, w)/raw, perKey(floor.final, w), perKey(floor.final, w)/raw)
	fmt.Fprintf(tw, "peak RSS during the store's commits%s\t%s\t%s\t\t<= 1 GiB\n", rssNote(), mib(rss), mib(unprunedRSS))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndisk size during the update blocks (pruning on must level off after K blocks):\n")
	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "height\tprune K=%d\tno prune\tfloor\t\n", cfg.Keep)
	for i := range pruned.disk {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t\n", pruned.diskAt[i], mib(pruned.disk[i]), mib(unpruned.disk[i]), mib(floor.disk[i]))
	}
	fmt.Fprintf(tw, "end\t%s\t%s\t%s\t\n", mib(pruned.final), mib(unpruned.final), mib(floor.final))
	return tw.Flush()
}

func (r *storeRun) addCommit(w Workload, h uint64, d time.Duration, n int) {
	if h <= w.FillBlocks() {
		r.fill += d
		r.fillN += n
	} else {
		r.update += d
		r.updateN += n
	}
}

func (r *storeRun) sample(dir string, h uint64) error {
	n, err := DirBytes(dir)
	r.disk = append(r.disk, n)
	r.diskAt = append(r.diskAt, h)
	return err
}

// runStore commits the workload into a fresh pebble state store with K=keep
// (0: no pruning), pruning after every block, then calls measure on the warm
// store. It returns the run and the peak RSS of its commits (fill, updates
// and pruning; not of what measure does, such as holding a snapshot).
func runStore(ctx context.Context, cfg Config, name string, keep uint64, sampleAt func(uint64) bool, measure func(*state.Store) error) (storeRun, int64, error) {
	w := cfg.Workload
	last := w.FillBlocks() + uint64(cfg.Blocks)
	dir := filepath.Join(cfg.Dir, name)
	var r storeRun
	s, err := state.OpenPebble(dir, state.Options{KeepVersions: keep})
	if err != nil {
		return r, 0, err
	}
	fail := func(err error) (storeRun, int64, error) {
		s.Close()
		return r, 0, err
	}
	resetPeakRSS()
	for h := uint64(1); h <= last; h++ {
		ws := w.Writes(h)
		t0 := time.Now()
		if _, err := s.Commit(ctx, h, ws); err != nil {
			return fail(err)
		}
		r.addCommit(w, h, time.Since(t0), len(ws))
		if keep > 0 {
			t0 = time.Now()
			if _, err := s.Prune(ctx); err != nil {
				return fail(err)
			}
			if h > w.FillBlocks() {
				r.prune += time.Since(t0)
			}
		}
		if sampleAt(h) {
			if err := r.sample(dir, h); err != nil {
				return fail(err)
			}
		}
		progress(cfg.Progress, name, h, last, &r)
	}
	rss := peakRSS()
	if measure != nil {
		if err := measure(s); err != nil {
			return fail(err)
		}
	}
	if err := s.Close(); err != nil {
		return r, 0, err
	}
	if r.final, err = DirBytes(dir); err != nil {
		return r, 0, err
	}
	return r, rss, os.RemoveAll(dir)
}

func progress(p io.Writer, name string, h, last uint64, r *storeRun) {
	if h%10 != 0 && h != last {
		return
	}
	rt := r.fillRate()
	if r.updateN > 0 {
		rt = r.updateRate()
	}
	fmt.Fprintf(p, "%-9s block %6d/%d  %s updates/s\n", name, h, last, rate(rt))
}

// readKeys returns n live keys drawn at random (fixed seed).
func readKeys(w Workload, n int) []types.StateKey {
	r := rand.New(rand.NewPCG(w.Seed, 0x7265616473))
	keys := make([]types.StateKey, n)
	for i := range keys {
		keys[i] = w.Key(r.IntN(w.Keys))
	}
	return keys
}

// timeReads reads every key once to warm the caches, then times a second
// pass and returns the mean latency.
func timeReads(keys []types.StateKey, get func(types.StateKey) error) (time.Duration, error) {
	for _, k := range keys {
		if err := get(k); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	for _, k := range keys {
		if err := get(k); err != nil {
			return 0, err
		}
	}
	return time.Since(t0) / time.Duration(len(keys)), nil
}

type proofStats struct {
	presentBytes, absentBytes   int
	presentVerify, absentVerify time.Duration
}

func (p proofStats) size() string {
	return fmt.Sprintf("%d B / %d B", p.presentBytes, p.absentBytes)
}

func (p proofStats) verify() string {
	return fmt.Sprintf("%s / %s", dur(p.presentVerify), dur(p.absentVerify))
}

// measureProofs proves n present and n absent keys one by one at the latest
// version and returns the mean encoded size and verification time. Every
// proof is checked: a failing one aborts the benchmark.
func measureProofs(ctx context.Context, s *state.Store, w Workload, n int) (proofStats, error) {
	var st proofStats
	h, root := s.Latest()
	r := rand.New(rand.NewPCG(w.Seed, 0x70726f6f66))
	for _, absent := range []bool{false, true} {
		var bytes int
		var verify time.Duration
		for i := 0; i < n; i++ {
			k := w.Key(r.IntN(w.Keys))
			if absent {
				k = w.Key(w.Keys + r.IntN(w.Keys))
			}
			p, err := s.Prove(ctx, h, k)
			if err != nil {
				return st, err
			}
			enc, err := types.Encode(p)
			if err != nil {
				return st, err
			}
			bytes += len(enc)
			t0 := time.Now()
			err = types.Verify(root, p)
			verify += time.Since(t0)
			if err != nil {
				return st, fmt.Errorf("statebench: proof of %s does not verify: %w", k, err)
			}
			if p.Entries[0].Present() == absent {
				return st, fmt.Errorf("statebench: proof of %s has presence %v", k, !absent)
			}
		}
		if absent {
			st.absentBytes, st.absentVerify = bytes/n, verify/time.Duration(n)
		} else {
			st.presentBytes, st.presentVerify = bytes/n, verify/time.Duration(n)
		}
	}
	return st, nil
}

// bigProofs builds a tree of cfg.ProofKeys keys in the largest blocks the
// store accepts and measures proofs on it.
func bigProofs(ctx context.Context, cfg Config) (string, error) {
	w := cfg.Workload
	w.Keys, w.Block = cfg.ProofKeys, min(cfg.ProofKeys, state.BlockWritesMax)
	dir := filepath.Join(cfg.Dir, "proofs")
	s, err := state.OpenPebble(dir, state.Options{})
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	defer s.Close()
	t0 := time.Now()
	for h := uint64(1); h <= w.FillBlocks(); h++ {
		if _, err := s.Commit(ctx, h, w.Writes(h)); err != nil {
			return "", err
		}
		if h%5 == 0 || h == w.FillBlocks() {
			fmt.Fprintf(cfg.Progress, "proofs    block %6d/%d  %s inserts/s\n", h, w.FillBlocks(), rate(float64(int(h)*w.Block)/time.Since(t0).Seconds()))
		}
	}
	p, err := measureProofs(ctx, s, w, cfg.ProofSamples)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("size %s, verify %s (present/absent)", p.size(), p.verify()), nil
}

type snapshotStats struct {
	bytes                  int64
	chunks                 int
	export, stage, install time.Duration
}

// measureSnapshot exports the latest version of s into memory and imports
// it into a fresh pebble store in dir, checking the imported root.
func measureSnapshot(ctx context.Context, s *state.Store, dir string) (snapshotStats, error) {
	var st snapshotStats
	h, root := s.Latest()
	var chunks [][]byte
	t0 := time.Now()
	m, err := s.ExportSnapshot(ctx, h, state.SnapshotChunkLeavesDefault, func(_ int, b []byte) error {
		chunks = append(chunks, b)
		st.bytes += int64(len(b))
		return nil
	})
	if err != nil {
		return st, err
	}
	st.export, st.chunks = time.Since(t0), len(chunks)
	dst, err := state.OpenPebble(dir, state.Options{})
	if err != nil {
		return st, err
	}
	defer os.RemoveAll(dir)
	defer dst.Close()
	t0 = time.Now()
	im, err := state.NewImporter(ctx, dst.Datastore(), m)
	if err != nil {
		return st, err
	}
	for _, c := range chunks {
		if _, err := im.Add(ctx, c); err != nil {
			return st, err
		}
	}
	st.stage = time.Since(t0)
	t0 = time.Now()
	if err := im.Install(ctx, dst); err != nil {
		return st, err
	}
	st.install = time.Since(t0)
	if gh, gr := dst.Latest(); gh != h || gr != root {
		return st, fmt.Errorf("statebench: imported snapshot at (%d, %s), want (%d, %s)", gh, gr, h, root)
	}
	return st, nil
}

// dur rounds a duration to about three significant digits.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond).String()
	}
	return d.String()
}

func mbps(b int64, d time.Duration) string {
	return fmt.Sprintf("%.1f MB/s", float64(b)/1e6/d.Seconds())
}

func rate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func perKey(disk int64, w Workload) float64 { return float64(disk) / float64(w.Keys) }

// resetPeakRSS returns the memory of earlier stores to the OS and sets the
// process's peak RSS back to its current RSS (Linux >= 4.0), so that each
// store's figure is its own and not the high-water mark of an earlier store
// or measurement. It reports whether that worked.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// rssNote qualifies the RSS figures when they cannot be reset per store.
func rssNote() string {
	if resetPeakRSS() {
		return ""
	}
	return " (whole process so far)"
}

// peakRSS is the process's maximum resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // Linux reports KiB
}
