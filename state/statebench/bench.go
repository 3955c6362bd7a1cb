package statebench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
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
	// the four stores (floor, pruning on, pruning off, pruning on with
	// pipelined commits).
	Blocks int
	// Keep is K of the pruning-on store.
	Keep uint64
	// Samples is how many disk-size samples the disk table has.
	Samples int
	// ReadSamples and ProofSamples are how many reads and proofs are timed.
	ReadSamples, ProofSamples int
	// WarmReadKeys is the key set of the warm read: few enough that the
	// data blocks holding them (about 4 KiB each) fit the block cache of
	// the state store (128 MiB) and of the floor (pebble's default, 8 MiB);
	// see measureReads.
	WarmReadKeys int
	// ProofKeys, if > 0, builds a second tree of that many keys only to
	// measure proofs at that size; 0 reports it as not measured. The tree
	// is not committed block by block (10M keys through commits take far
	// too long here): the keys are sorted by key path and written with
	// state.Seed, the bottom-up builder of snapshot installs, which gives
	// the same tree and the same stored nodes as commits would.
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
		ReadSamples: 100_000, ProofSamples: 1000, WarmReadKeys: 1000,
	}
}

// storeRun is what one store's run measured.
type storeRun struct {
	fill, update   time.Duration // commit time of the fill and the (hinted) update blocks
	prune          time.Duration // time spent in Prune after those update blocks
	fillN, updateN int           // updates of each
	// The update blocks committed without old-value hints (every other
	// one on a store that alternates, see runStore), apart: their commit
	// and prune time and updates.
	bare, barePrune time.Duration
	bareN           int
	disk            []int64       // disk bytes at each sample point
	diskAt          []uint64      // the heights of the samples
	final           int64         // disk bytes at the end
	close           time.Duration // the store's Close: its pebble finishing flushes and compactions
	usage           []state.UsageKind
}

func (r storeRun) updateRate() float64 { return float64(r.updateN) / r.update.Seconds() }
func (r storeRun) fillRate() float64   { return float64(r.fillN) / r.fill.Seconds() }

// bareRate is the update rate of the blocks without hints, "-" if none
// ran (a run of one update block).
func (r storeRun) bareRate() string {
	if r.bareN == 0 {
		return "-"
	}
	return rate(float64(r.bareN) / r.bare.Seconds())
}

// loopRate is the update rate of commits and prunes together: a pipelined
// commit's write runs on while the block is pruned, so its commit time
// alone would leave out what the prune hid.
func (r storeRun) loopRate() float64 {
	return float64(r.updateN) / (r.update + r.prune).Seconds()
}

// Run executes the benchmark and prints the table to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	w := cfg.Workload
	if err := w.Validate(); err != nil {
		return err
	}
	if cfg.Blocks < 1 || cfg.Samples < 1 || cfg.ReadSamples < 1 || cfg.ProofSamples < 1 || cfg.WarmReadKeys < 1 {
		return fmt.Errorf("statebench: blocks, samples, read and proof samples and warm read keys must be positive")
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
	var floorRead readStats
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
			floor.addCommit(w, h, time.Since(t0), len(ws), false)
			if sampleAt(h) {
				if err := floor.sample(dir, h); err != nil {
					f.Close()
					return err
				}
			}
			progress(cfg.Progress, "floor", h, last, &floor)
		}
		floorRead, err = measureReads(readKeys(w, cfg.ReadSamples), cfg.WarmReadKeys, func(k types.StateKey) error {
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
	unpruned, unprunedRSS, err := runStore(ctx, cfg, "no-prune", 0, false, sampleAt, nil)
	if err != nil {
		return err
	}
	var read, readUncached readStats
	var proofs proofStats
	var snap snapshotStats
	var exp *exportedSnapshot
	pruned, rss, err := runStore(ctx, cfg, "prune", cfg.Keep, false, sampleAt, func(s *state.Store) error {
		var err error
		if read, err = measureReads(readKeys(w, cfg.ReadSamples), cfg.WarmReadKeys, func(k types.StateKey) error {
			_, err := s.Get(ctx, k)
			return err
		}); err != nil {
			return err
		}
		// The warm read again without Get's value cache: GetMany reads
		// pebble for every key (one key per call here).
		var dst [][]byte
		if readUncached, err = measureReads(readKeys(w, cfg.ReadSamples)[:min(cfg.WarmReadKeys, cfg.ReadSamples)], cfg.WarmReadKeys, func(k types.StateKey) error {
			var err error
			dst, err = s.GetMany(ctx, []types.StateKey{k}, dst[:0])
			return err
		}); err != nil {
			return err
		}
		if proofs, err = measureProofs(ctx, s, w, cfg.ProofSamples); err != nil {
			return err
		}
		exp, err = exportSnapshot(ctx, s, filepath.Join(cfg.Dir, "import"), &snap)
		if err != nil {
			return err
		}
		// The streamed import once more while this store is still open
		// and compacting, as the table measured it before: the price of
		// sharing the machine with a store's background work.
		snap.busy, err = exp.streamed(ctx, "streamed-busy")
		return err
	})
	if exp != nil {
		defer os.RemoveAll(exp.dir)
	}
	if err != nil {
		return err
	}
	// A syncing node runs nothing but the import: the commit-phase store
	// is closed now (its Close waited for its pebble's flushes and
	// compactions, pruned.close) and its memory returned before the
	// imports are timed.
	snap.closeWait = pruned.close
	if err := exp.imports(ctx, &snap); err != nil {
		return err
	}
	// The pruning store again, each block's tree update running while the
	// block before is written (CommitAsync), as a node can pipeline them.
	pipelined, _, err := runStore(ctx, cfg, "prune-pipelined", cfg.Keep, true, func(uint64) bool { return false }, nil)
	if err != nil {
		return err
	}
	bigSize, bigVerify, bigKeys := "not measured (run with --proof-keys 10000000)", "not measured", 10_000_000
	var bigNote string
	if cfg.ProofKeys > 0 {
		bigKeys = cfg.ProofKeys
		var p proofStats
		if p, bigNote, err = bigProofs(ctx, cfg); err != nil {
			return err
		}
		bigSize, bigVerify = p.size(), p.verify()
	}

	raw := float64(types.AddressLen + len(w.Key(0).Key) + w.ValueSize)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "what\tstate, prune K=%d\tstate, no prune\tpebble floor\ttarget\n", cfg.Keep)
	fmt.Fprintf(tw, "commit, update blocks, old values given (updates/s)\t%s\t%s\t%s\t>= 100k/s\n", rate(pruned.updateRate()), rate(unpruned.updateRate()), rate(floor.updateRate()))
	fmt.Fprintf(tw, "  the same, old values read back (every other block, no hints)\t%s\t%s\t-\t\n", pruned.bareRate(), unpruned.bareRate())
	fmt.Fprintf(tw, "commit+prune, update blocks, Commit / pipelined CommitAsync (updates/s)\t%s / %s\t-\t-\t>= 100k/s\n", rate(pruned.loopRate()), rate(pipelined.loopRate()))
	fmt.Fprintf(tw, "commit, fill blocks (inserts/s)\t%s\t%s\t%s\t\n", rate(pruned.fillRate()), rate(unpruned.fillRate()), rate(floor.fillRate()))
	fmt.Fprintf(tw, "prune time per update block\t%s\t-\t-\t\n", dur((pruned.prune+pruned.barePrune)/time.Duration(cfg.Blocks)))
	fmt.Fprintf(tw, "latest read, warm (flat index; %d keys read before, %d passes; wall (reading thread's CPU))\t%s\t-\t%s\t<= 5µs\n", read.warmKeys, warmReadPasses, read.warm, floorRead.warm)
	fmt.Fprintf(tw, "  the same without the value cache (GetMany of one key: a pebble Get each)\t%s\t-\t-\t\n", readUncached.warm)
	fmt.Fprintf(tw, "latest read, %d random keys, first read\t%s\t-\t%s\t\n", read.keys, read.first, floorRead.first)
	fmt.Fprintf(tw, "latest read, the same %d keys again\t%s\t-\t%s\t\n", read.keys, read.again, floorRead.again)
	fmt.Fprintf(tw, "proof at %d keys: size present/absent\t%s\t-\t-\t<= 1 KB at 10M\n", w.Keys, proofs.size())
	fmt.Fprintf(tw, "proof at %d keys: verify present/absent (median)\t%s\t-\t-\t<= 20µs at 10M\n", w.Keys, proofs.verify())
	fmt.Fprintf(tw, "proof at %d keys: size present/absent\t%s\t\t\t<= 1 KB\n", bigKeys, bigSize)
	fmt.Fprintf(tw, "proof at %d keys: verify present/absent (median)\t%s\t\t\t<= 20µs\n", bigKeys, bigVerify)
	fmt.Fprintf(tw, "snapshot export (%s in %d chunks; the store open, as on a serving node)\t%s (%s)\t-\t-\t\n", mib(snap.bytes), snap.chunks, mbps(snap.bytes, snap.export), cpuPerMB(snap.exportCPU, snap.bytes))
	fmt.Fprintf(tw, "imports below: the commit-phase store closed first, as on a syncing node (its Close, waiting for pebble's compactions, not timed)\t%s\t-\t-\t\n", dur(snap.closeWait))
	fmt.Fprintf(tw, "snapshot import: verify+stage (%d chunks in flight)\t%s (%s)\t-\t-\t\n", snap.workers, mbps(snap.bytes, snap.stage.wall), cpuPerMB(snap.stage.cpu, snap.bytes))
	fmt.Fprintf(tw, "snapshot import: build+install\t%s (%s)\t-\t-\t\n", mbps(snap.bytes, snap.install.wall), cpuPerMB(snap.install.cpu, snap.bytes))
	fmt.Fprintf(tw, "snapshot import: end to end\t%s (%s)\t-\t-\t>= 50 MB/s\n", mbps(snap.bytes, snap.stage.wall+snap.install.wall), cpuPerMB(snap.stage.cpu+snap.install.cpu, snap.bytes))
	fmt.Fprintf(tw, "snapshot import from local chunks: verify+install, nothing staged\t%s (%s)\t-\t-\t>= 50 MB/s\n", mbps(snap.bytes, snap.stream.wall), cpuPerMB(snap.stream.cpu, snap.bytes))
	fmt.Fprintf(tw, "  the same, the commit-phase store still open and compacting\t%s (%s)\t-\t-\t\n", mbps(snap.bytes, snap.busy.wall), cpuPerMB(snap.busy.cpu, snap.bytes))
	fmt.Fprintf(tw, "peak RSS during the staged / streamed import%s\t%s / %s\t\t\t<= 1 GiB\n", snap.rssNote, mib(snap.stage.rss), mib(snap.stream.rss))
	fmt.Fprintf(tw, "disk bytes per live key (raw %0.f B)\t%.0f (%.1f× raw)\t%.0f (%.1f× raw)\t%.0f (%.1f× raw)\t<= 3× raw\n", raw,
		perKey(pruned.final, w), perKey(pruned.final, w)/raw, perKey(unpruned.final, w), perKey(unpruned.final, w)/raw, perKey(floor.final, w), perKey(floor.final, w)/raw)
	fmt.Fprintf(tw, "peak RSS during the store's commits%s\t%s\t%s\t\t<= 1 GiB\n", rssNote(), mib(rss), mib(unprunedRSS))
	if err := tw.Flush(); err != nil {
		return err
	}
	if bigNote != "" {
		fmt.Fprintf(out, "\nproofs at %d keys: %s\n", bigKeys, bigNote)
	}
	if err := printUsage(out, pruned, unpruned, w); err != nil {
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

// printUsage prints the logical bytes per live key of each record kind
// beside the size on disk, for both state stores.
func printUsage(out io.Writer, pruned, unpruned storeRun, w Workload) error {
	fmt.Fprintf(out, "\ndisk by record kind at the end, key+value bytes per live key (records):\n")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "kind\tprune\t\tno prune\t\t\n")
	var sums [2]int64
	for i := range pruned.usage {
		fmt.Fprintf(tw, "%s\t", pruned.usage[i].Kind)
		for j, r := range []storeRun{pruned, unpruned} {
			u := r.usage[i]
			sums[j] += u.Bytes()
			fmt.Fprintf(tw, "%.0f B\t(%d)\t", perKey(u.Bytes(), w), u.Records)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "sum\t%.0f B\t\t%.0f B\t\t\n", perKey(sums[0], w), perKey(sums[1], w))
	fmt.Fprintf(tw, "on disk\t%.0f B\t\t%.0f B\t\t\n", perKey(pruned.final, w), perKey(unpruned.final, w))
	return tw.Flush()
}

func (r *storeRun) addCommit(w Workload, h uint64, d time.Duration, n int, bare bool) {
	switch {
	case h <= w.FillBlocks():
		r.fill += d
		r.fillN += n
	case bare:
		r.bare += d
		r.bareN += n
	default:
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
// store. The writes carry their old values as hints, as a node's executor
// gives them (HintedWrites); without async every other update block has
// none, and is measured apart (storeRun.bare): the commit then reads the
// old values back from the flat index, and that cost stays visible,
// measured in the same minutes as the hinted blocks. With async it commits with CommitAsync and waits for each block's
// write after handing over the next block; a block's commit time is then
// its CommitAsync call (which waits for the write before it), the last
// wait counted with the last block. It returns the run and the peak RSS of
// its commits (fill, updates and pruning; not of what measure does, such
// as holding a snapshot).
func runStore(ctx context.Context, cfg Config, name string, keep uint64, async bool, sampleAt func(uint64) bool, measure func(*state.Store) error) (storeRun, int64, error) {
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
	var wait func() error
	heights := w.NewHeights()
	for h := uint64(1); h <= last; h++ {
		ws := w.HintedWrites(h, heights)
		bare := !async && h > w.FillBlocks() && (h-w.FillBlocks())%2 == 0
		if bare {
			for i := range ws {
				ws[i].Old = nil
			}
		}
		t0 := time.Now()
		if async {
			_, next, err := s.CommitAsync(ctx, h, ws)
			if err != nil {
				return fail(err)
			}
			if wait != nil {
				if err := wait(); err != nil {
					return fail(err)
				}
			}
			wait = next
			if h == last {
				if err := wait(); err != nil {
					return fail(err)
				}
			}
		} else if _, err := s.Commit(ctx, h, ws); err != nil {
			return fail(err)
		}
		r.addCommit(w, h, time.Since(t0), len(ws), bare)
		if keep > 0 {
			t0 = time.Now()
			if _, err := s.Prune(ctx); err != nil {
				return fail(err)
			}
			switch {
			case bare:
				r.barePrune += time.Since(t0)
			case h > w.FillBlocks():
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
	if r.usage, err = s.Usage(ctx); err != nil {
		return fail(err)
	}
	if measure != nil {
		if err := measure(s); err != nil {
			return fail(err)
		}
	}
	t0 := time.Now()
	if err := s.Close(); err != nil {
		return r, 0, err
	}
	r.close = time.Since(t0)
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

// warmReadPasses is how many times the warm read's key set is timed.
const warmReadPasses = 100

// readTime is the mean wall time of one read of a pass and the CPU time of
// the thread that read (threadCPU): on a shared machine the wall time is
// mostly waiting for a core, and the process's CPU time counted pebble's
// compactions after the commits (8.5 µs per warm read against 2 µs).
type readTime struct{ wall, cpu time.Duration }

func (r readTime) String() string { return fmt.Sprintf("%s (%s)", dur(r.wall), dur(r.cpu)) }

// readStats are mean latencies of latest reads.
type readStats struct {
	keys, warmKeys int
	// first: every key read once, most for the first time since the
	// commits wrote them. again: the same keys a second time; at 100k
	// random keys of 1M they touch most of the flat index's data blocks,
	// more than the block cache holds, so many are read again from the
	// file. warm: the first warmKeys keys, read once more and then timed
	// warmReadPasses times, their blocks in the cache: the read state.md's
	// target names.
	first, again, warm readTime
}

// measureReads times the reads of readStats with get.
func measureReads(keys []types.StateKey, warmKeys int, get func(types.StateKey) error) (readStats, error) {
	warmKeys = min(warmKeys, len(keys))
	st := readStats{keys: len(keys), warmKeys: warmKeys}
	// passes reads ks n times and returns the mean time per read.
	passes := func(ks []types.StateKey, n int) (readTime, error) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu, t0 := threadCPU(), time.Now()
		for range n {
			for _, k := range ks {
				if err := get(k); err != nil {
					return readTime{}, err
				}
			}
		}
		reads := time.Duration(n * max(1, len(ks)))
		return readTime{wall: time.Since(t0) / reads, cpu: (threadCPU() - cpu) / reads}, nil
	}
	var err error
	if st.first, err = passes(keys, 1); err != nil {
		return st, err
	}
	if st.again, err = passes(keys, 1); err != nil {
		return st, err
	}
	if _, err = passes(keys[:warmKeys], 1); err != nil {
		return st, err
	}
	st.warm, err = passes(keys[:warmKeys], warmReadPasses)
	return st, err
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
// version and returns the mean encoded size and the median verification
// time (on a shared machine a few preempted samples would dominate a mean).
// Every proof is checked: a failing one aborts the benchmark.
func measureProofs(ctx context.Context, s *state.Store, w Workload, n int) (proofStats, error) {
	var st proofStats
	h, root := s.Latest()
	r := rand.New(rand.NewPCG(w.Seed, 0x70726f6f66))
	for _, absent := range []bool{false, true} {
		var bytes int
		verify := make([]time.Duration, n)
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
			verify[i] = time.Since(t0)
			if err != nil {
				return st, fmt.Errorf("statebench: proof of %s does not verify: %w", k, err)
			}
			if p.Entries[0].Present() == absent {
				return st, fmt.Errorf("statebench: proof of %s has presence %v", k, !absent)
			}
		}
		slices.Sort(verify)
		if absent {
			st.absentBytes, st.absentVerify = bytes/n, verify[n/2]
		} else {
			st.presentBytes, st.presentVerify = bytes/n, verify[n/2]
		}
	}
	return st, nil
}

// bigProofs builds a tree of cfg.ProofKeys keys and measures proofs on it.
// Committing that many keys block by block takes too long here, so the keys
// are sorted by key path and written bottom-up by state.Seed (the builder of
// snapshot installs): the same tree, built the fast way.
func bigProofs(ctx context.Context, cfg Config) (proofStats, string, error) {
	w := cfg.Workload
	w.Keys = cfg.ProofKeys
	dir := filepath.Join(cfg.Dir, "proofs")
	s, err := state.OpenPebble(dir, state.Options{})
	if err != nil {
		return proofStats{}, "", err
	}
	defer os.RemoveAll(dir)
	defer s.Close()
	t0 := time.Now()
	order := keysByPath(w)
	fmt.Fprintf(cfg.Progress, "proofs    %d keys sorted by key path in %s\n", len(order), dur(time.Since(t0)))
	vals := w.rng(0)
	root, err := s.Seed(ctx, 1, func(add func([]state.SnapshotLeaf) error) error {
		const piece = 1 << 14
		buf := make([]byte, piece*w.ValueSize)
		for lo := 0; lo < len(order); lo += piece {
			hi := min(lo+piece, len(order))
			_, _ = vals.Read(buf) // ChaCha8.Read never fails
			ls := make([]state.SnapshotLeaf, hi-lo)
			for j := range ls {
				v := buf[j*w.ValueSize : (j+1)*w.ValueSize]
				ls[j] = state.SnapshotLeaf{Key: w.Key(int(order[lo+j])), Value: append([]byte(nil), v...)}
			}
			if err := add(ls); err != nil {
				return err
			}
			if n := hi / piece; n%64 == 0 || hi == len(order) {
				fmt.Fprintf(cfg.Progress, "proofs    seeded %d/%d keys  %s keys/s\n", hi, len(order), rate(float64(hi)/time.Since(t0).Seconds()))
			}
		}
		return nil
	})
	if err != nil {
		return proofStats{}, "", err
	}
	build := time.Since(t0)
	if _, r := s.Latest(); r != root {
		return proofStats{}, "", fmt.Errorf("statebench: seeded root %s, store at %s", root, r)
	}
	p, err := measureProofs(ctx, s, w, cfg.ProofSamples)
	if err != nil {
		return p, "", err
	}
	disk, err := DirBytes(dir)
	if err != nil {
		return proofStats{}, "", err
	}
	return p, fmt.Sprintf("the tree was not committed block by block but written bottom-up by state.Seed (the snapshot install builder) from the %d keys sorted by key path, %d-byte values, in %s; %s on disk",
		w.Keys, w.ValueSize, dur(build), mib(disk)), nil
}

// keysByPath returns the key indexes 0..w.Keys-1 sorted by key path. The
// key paths (32 bytes per key) are hashed on every core.
func keysByPath(w Workload) []uint32 {
	type entry struct {
		kp types.Hash
		i  uint32
	}
	es := make([]entry, w.Keys)
	parts := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p * len(es) / parts; i < (p+1)*len(es)/parts; i++ {
				es[i] = entry{types.KeyPath(w.Key(i)), uint32(i)}
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(es, func(a, b entry) int { return bytes.Compare(a.kp[:], b.kp[:]) })
	out := make([]uint32, len(es))
	for j, e := range es {
		out[j] = e.i
	}
	return out
}

// cpuTime is the CPU time (user + system) the process has used so far. It
// counts pebble's background compactions too, which wall time on a shared
// machine hides or inflates.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuPerMB(cpu time.Duration, b int64) string {
	return fmt.Sprintf("%.1f MB per cpu-s", float64(b)/1e6/cpu.Seconds())
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
