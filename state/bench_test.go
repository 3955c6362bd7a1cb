package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/types"
)

// benchKeys is the tree size of the benchmarks: KAIROS_BENCH_KEYS, default
// 100k (the 1M-key figures need KAIROS_BENCH_KEYS=1000000 and a few minutes).
func benchKeys() int {
	if n, err := strconv.Atoi(os.Getenv("KAIROS_BENCH_KEYS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

const benchBlock = 10_000

func benchKey(i int) types.StateKey {
	var k types.StateKey
	k.Module[0] = byte(i % 7)
	k.Key = binary.BigEndian.AppendUint64([]byte("acct/"), uint64(i))
	return k
}

func benchValue(i, round int) []byte {
	v := make([]byte, 100)
	binary.BigEndian.PutUint64(v, uint64(i))
	binary.BigEndian.PutUint64(v[8:], uint64(round))
	return v
}

// fillStore opens a synced pebble store holding n keys. With
// KAIROS_BENCH_FILL set to a directory, the filled tree is kept there as a
// template (fill-<n>) and each call opens a pebble checkpoint of it (hard
// links), so a 1M-key fill is paid once per session instead of once per
// sub-benchmark and run. Delete the directory after changing the stored
// format: an old template then fails with ErrFormat (or ErrCorrupt, within
// one format number) rather than measuring anything.
func fillStore(b *testing.B, n int) (*Store, uint64) {
	b.Helper()
	return fillStoreListened(b, n, nil)
}

// fillStoreListened is fillStore with the measured store's pebble events
// also sent to el (when not nil).
func fillStoreListened(b *testing.B, n int, el *pebble.EventListener) (*Store, uint64) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "db")
	tmplRoot := os.Getenv("KAIROS_BENCH_FILL")
	if tmplRoot == "" {
		s, h := fillNew(b, dir, n, el)
		b.Cleanup(func() { s.Close() })
		return s, h
	}
	tmpl := filepath.Join(tmplRoot, "fill-"+strconv.Itoa(n))
	if _, err := os.Stat(tmpl); err != nil {
		s, _ := fillNew(b, tmpl+".part", n, nil)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmpl+".part", tmpl); err != nil {
			b.Fatal(err)
		}
	}
	t, err := OpenPebble(tmpl, Options{KeepVersions: 10})
	if err != nil {
		b.Fatal(err)
	}
	err = t.d.(*pebbleds.Datastore).DB.Checkpoint(dir, pebble.WithFlushedWAL())
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	s, err := openPebbleListened(dir, Options{KeepVersions: 10}, el)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	// A filling process has the tree in its node cache; so does a node
	// that has been running for a while.
	if err := warmCache(s, s.root); err != nil {
		b.Fatal(err)
	}
	h, _ := s.Latest()
	return s, h
}

// warmCache loads every node under sl into the node cache.
func warmCache(s *Store, sl slot) error {
	if sl.kind != slotChild {
		return nil
	}
	n, err := s.loadNode(context.Background(), sl.ref())
	if err != nil {
		return err
	}
	for j := range n.entries() {
		if err := warmCache(s, n.at(j)); err != nil {
			return err
		}
	}
	return nil
}

// fillNew fills a new store in dir with n keys, its pebble events also
// sent to el (when not nil); the caller closes it.
func fillNew(b *testing.B, dir string, n int, el *pebble.EventListener) (*Store, uint64) {
	b.Helper()
	s, err := openPebbleListened(dir, Options{KeepVersions: 10}, el)
	if err != nil {
		b.Fatal(err)
	}
	h := uint64(0)
	// Fill in 25k-key blocks: bigger ones only raise the peak memory of
	// the fill, which is not what is measured.
	for lo := 0; lo < n; lo += 25_000 {
		hi := min(n, lo+25_000)
		ws := make([]Write, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ws = append(ws, Write{Key: benchKey(i), Value: benchValue(i, 0)})
		}
		h++
		if _, err := s.Commit(context.Background(), h, ws); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Prune(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s, h
}

// BenchmarkCommit updates 10k random existing keys per block on a tree of
// benchKeys keys, pebble with sync; "+prune" also prunes to K=10 after each
// block, "+async" commits with CommitAsync (see benchCommit). K blocks run
// before the timer starts, so that the pruner works on versions this
// process wrote (as a node that has run for K blocks does), also on a store
// opened from a KAIROS_BENCH_FILL template. The baseline writes the same
// 10k key/values as one synced raw pebble batch (the flat index alone) in
// the same run. Besides CPU per block it reports pebble's table bytes per
// update by namespace, compaction reason and output level (tableBytes;
// KAIROS_BENCH_LOGCOMPACT also prints each compaction's tables); with
// KAIROS_BENCH_SETTLE set, the timed blocks start and end with pebble's
// compactions settled (settleCompactions), so that settings that defer
// compaction compare fairly. Every other block gives the commit the old
// values as hints, as a node's executor does (see benchCommit), the others
// none: hint-* and nohint-* report each kind's CPU and old-value phase
// per block, measured interleaved in the same run.
func BenchmarkCommit(b *testing.B) {
	n := benchKeys()
	for _, prune := range []bool{false, true} {
		for _, async := range []bool{false, true} {
			name := "tree=" + strconv.Itoa(n)
			if prune {
				name += "+prune"
			}
			if async {
				name += "+async"
			}
			b.Run(name, func(b *testing.B) { benchCommit(b, n, prune, async) })
		}
	}
	b.Run("baseline=raw-pebble-batch", func(b *testing.B) {
		d, err := pebbleds.NewDatastore(filepath.Join(b.TempDir(), "raw"), pebbleds.WithPebbleWriteOptions(pebble.Sync))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		ctx := context.Background()
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			bt, _ := d.Batch(ctx)
			for j := 0; j < benchBlock; j++ {
				k := int((uint64(i)*benchBlock + uint64(j)) * 2654435761 % uint64(n))
				if err := bt.Put(ctx, mustKVKey(b, nil, benchKey(k)), benchValue(k, i)); err != nil {
					b.Fatal(err)
				}
			}
			if err := bt.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(cpu.since()/float64(b.N), "cpu-s/op")
	})
}

// BenchmarkTreeUpdate is the tree update of a commit alone: 10k random
// existing keys per block on a tree of benchKeys keys whose nodes are all
// in the node cache, each block applied to the same root and its result
// dropped (nothing is written, the cache does not change), so that the CPU
// of hashing, node building and cache lookups shows without pebble's
// flushes and compactions around it. "loaded" updates nodes as read from
// the datastore (a store just opened); "committed" first commits 40 blocks,
// after which most nodes a block touches were built by a commit, as in a
// store that has run for a while (a bottom node of a 1M-key tree is
// rewritten every few blocks). The collector's share is in gc-cpu-s/op, as
// in BenchmarkCommit.
func BenchmarkTreeUpdate(b *testing.B) {
	n := benchKeys()
	s, h := fillStore(b, n)
	ctx := context.Background()
	block := func(i, round int) []Write {
		ws := make([]Write, benchBlock)
		for j := range ws {
			k := int((uint64(i)*benchBlock + uint64(j)) * 2654435761 % uint64(n))
			ws[j] = Write{Key: benchKey(k), Value: benchValue(k, round)}
		}
		return ws
	}
	run := func(b *testing.B) {
		s.mu.Lock()
		root, height := s.root, s.latest
		s.mu.Unlock()
		blocks := make([][]item, 8)
		for i := range blocks {
			items, err := prepare(block(1000+i, int(height)))
			if err != nil {
				b.Fatal(err)
			}
			blocks[i] = items
		}
		work := make([]item, benchBlock)
		b.ResetTimer()
		stop := profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), "."+filepath.Base(b.Name()))
		cpu := startCPU()
		gc0 := readGC()
		for i := 0; i < b.N; i++ {
			// update writes the leaf hashes into the items: a fresh copy
			// each time.
			copy(work, blocks[i%len(blocks)])
			c := &committer{s: s, ctx: ctx, height: height + 1}
			if _, err := c.update(new(out), root, 0, work); err != nil {
				b.Fatal(err)
			}
		}
		gc := readGC().minus(gc0)
		stop()
		b.ReportMetric(cpu.since()/float64(b.N), "cpu-s/op")
		b.ReportMetric(gc.cpu/float64(b.N), "gc-cpu-s/op")
		b.ReportMetric(gc.alloc/1e6/float64(b.N), "alloc-MB/op")
	}
	b.Run("loaded", run)
	for i := range 40 {
		h++
		if _, err := s.Commit(ctx, h, block(i, int(h))); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("committed", run)
}

// benchCommit is one BenchmarkCommit run: with async, each block is
// committed by CommitAsync and the next block's tree update runs while it
// is written (the block before is waited for, as a pipelining node would),
// the last one waited for before the timer stops. Block i writes value
// benchValue(k, i+1) to key k, so the bench knows every key's value from
// the round that wrote it last (0: the fill's), 4 bytes per key; a block
// with hints gives those values as its writes' old values. With async a
// block's CPU includes the write of the one before, of the other kind:
// compare the kinds without async.
func benchCommit(b *testing.B, n int, prune, async bool) {
	var tables tableBytes
	s, h := fillStoreListened(b, n, tables.listener())
	ctx := context.Background()
	var wait func() error
	rounds := make([]uint32, n) // the round of each key's value
	var pruneWall time.Duration // Prune's wall time (it runs on the benchmark's goroutine)
	block := func(i int, hints bool) {
		ws := make([]Write, benchBlock)
		for j := range ws {
			k := int((uint64(i)*benchBlock + uint64(j)) * 2654435761 % uint64(n))
			ws[j] = Write{Key: benchKey(k), Value: benchValue(k, i+1)}
			if hints {
				ws[j].Old = benchValue(k, int(rounds[k]))
			}
			rounds[k] = uint32(i + 1)
		}
		h++
		var err error
		if async {
			_, wait, err = s.CommitAsync(ctx, h, ws)
		} else {
			_, err = s.Commit(ctx, h, ws)
		}
		if err != nil {
			b.Fatal(err)
		}
		if !prune {
			return
		}
		t := time.Now()
		if _, err := s.Prune(ctx); err != nil {
			b.Fatal(err)
		}
		pruneWall += time.Since(t)
	}
	drain := func() {
		if wait != nil {
			if err := wait(); err != nil {
				b.Fatal(err)
			}
		}
	}
	warm := int(s.opts.KeepVersions)
	for i := 0; i < warm; i++ {
		block(i, true)
	}
	drain()
	settle := os.Getenv("KAIROS_BENCH_SETTLE") != ""
	if settle {
		settleCompactions(b, s.pdb)
	}
	// With a heap profile, one at the start too: pprof -base <file>.start
	// <file> shows what the timed blocks allocated alone.
	if p := os.Getenv("KAIROS_BENCH_HEAPPROFILE"); p != "" {
		heapProfileTo(b, p+".start")
	}
	b.ResetTimer()
	stop := profileTo(b, os.Getenv("KAIROS_BENCH_CPUPROFILE"), "")
	cpu := startCPU()
	gc0 := readGC()
	wal0, sst0 := pebbleWritten(s)
	debt0 := s.pdb.Metrics().Compact.EstimatedDebt
	tables.reset()
	miss0 := s.cache.missCount()
	pruneWall = 0
	s.phases = new(commitPhases)
	// By kind (0: with hints, 1: without): blocks, CPU, old-value phase.
	var kindN [2]int
	var kindCPU [2]float64
	var kindOld [2]time.Duration
	for i := 0; i < b.N; i++ {
		kind := i % 2
		c0, old0 := cpuNow(), s.phases.snapshot()[phaseOld]
		block(warm+i, kind == 0)
		kindN[kind]++
		kindCPU[kind] += cpuNow() - c0
		kindOld[kind] += s.phases.snapshot()[phaseOld] - old0
	}
	drain()
	if settle {
		settleCompactions(b, s.pdb)
	}
	stop()
	gc := readGC().minus(gc0)
	heapProfileTo(b, os.Getenv("KAIROS_BENCH_HEAPPROFILE"))
	phases := s.phases.snapshot()
	s.phases = nil
	// Wall time per block of each phase of the commit (see commitPhase):
	// where a core idles. With async, the write phases overlap the next
	// block's update.
	for ph, d := range phases {
		b.ReportMetric(d.Seconds()*1e3/float64(b.N), phaseNames[ph]+"-ms/op")
	}
	// Node cache misses per block: each is a pebble read on the commit's
	// path (the pruner reads no records).
	b.ReportMetric(float64(s.cache.missCount()-miss0)/float64(b.N), "misses/op")
	if prune {
		// Prune's wall time per block: the pruner's reads, if it has any,
		// show here (RATIONALE.md, "Why is the flat index not keyed by
		// version…").
		b.ReportMetric(pruneWall.Seconds()*1e3/float64(b.N), "prune-ms/op")
	}
	b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "updates/s")
	b.ReportMetric(cpu.since()/float64(b.N), "cpu-s/op")
	for kind, name := range []string{"hint", "nohint"} {
		if kindN[kind] > 0 {
			b.ReportMetric(kindCPU[kind]/float64(kindN[kind]), name+"-cpu-s/op")
			b.ReportMetric(kindOld[kind].Seconds()*1e3/float64(kindN[kind]), name+"-old-ms/op")
		}
	}
	// Cores the process kept busy: what pipelining raises, when the
	// machine has a core to spare.
	b.ReportMetric(cpu.since()/b.Elapsed().Seconds(), "cores")
	// The collector's share: its CPU (the runtime's estimate, assists
	// included), cycles and the bytes allocated per block, and the live heap
	// it marked last; what the process's GC policy (cmd/kairos gc.go) trades
	// against peak memory.
	b.ReportMetric(gc.cpu/float64(b.N), "gc-cpu-s/op")
	b.ReportMetric(gc.cycles/float64(b.N), "gcs/op")
	b.ReportMetric(gc.alloc/1e6/float64(b.N), "alloc-MB/op")
	b.ReportMetric(gc.live/1e6, "live-MB")
	// The node cache by its own estimate (node.size), which its budget
	// counts: set against live-MB and a heap profile's nodes.
	cn, cb := s.cache.usage()
	b.ReportMetric(float64(cn), "cache-nodes")
	b.ReportMetric(float64(cb)/1e6, "cache-est-MB")
	// Bytes pebble wrote per update: to its log, and to tables by
	// flushes and compactions (the write amplification).
	wal, sst := pebbleWritten(s)
	b.ReportMetric(float64(wal-wal0)/float64(b.N*benchBlock), "wal-B/update")
	b.ReportMetric(float64(sst-sst0)/float64(b.N*benchBlock), "sst-B/update")
	tables.report(b, b.N*benchBlock)
	// Compaction pebble still owes at the end: a run of a few dozen
	// blocks leaves hundreds of MB of it, which cpu-s/op and
	// sst-B/update do not include; compare runs with similar debt, or
	// settle (KAIROS_BENCH_SETTLE).
	m := s.d.(*pebbleds.Datastore).DB.Metrics()
	b.ReportMetric(float64(m.Compact.EstimatedDebt)/1e6, "debt-MB")
	// The debt's growth per update: table bytes a variant of the settings
	// did not write in the window but still owes.
	b.ReportMetric((float64(m.Compact.EstimatedDebt)-float64(debt0))/float64(b.N*benchBlock), "debt+B/update")
	if os.Getenv("KAIROS_BENCH_PEBBLE_METRICS") != "" {
		// Per-level flush and compaction bytes, for tuning pebble's
		// options against this write pattern.
		fmt.Fprintf(os.Stderr, "pebble metrics at the end of %s:\n%s\n", b.Name(), m)
	}
	if du, ok := s.d.(ds.PersistentDatastore); ok {
		// Disk per live key against the raw key+value bytes.
		used, err := du.DiskUsage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		raw := len(benchKey(0).Key) + types.AddressLen + len(benchValue(0, 0))
		b.ReportMetric(float64(used)/float64(n)/float64(raw), "disk-x-raw")
	}
	// What the disk holds, by record kind: key and value bytes per
	// live key.
	usage, err := s.Usage(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range usage {
		if u.Kind != UsageRoots && u.Kind != UsageOther {
			b.ReportMetric(float64(u.Bytes())/float64(n), strings.ReplaceAll(u.Kind, " ", "-")+"-B/key")
		}
	}
}

// BenchmarkGet reads latest values through the flat index (warm), with a
// raw datastore Get of the same key as the baseline, and through a View
// (tree walk, cached nodes). The process CPU time per read (cpu-ns/op) is
// what a shared machine cannot inflate by scheduling.
func BenchmarkGet(b *testing.B) {
	n := benchKeys()
	s, h := fillStore(b, n)
	ctx := context.Background()
	b.Run("flat-index", func(b *testing.B) {
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			if v, err := s.Get(ctx, benchKey(i%n)); err != nil || v == nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
	})
	b.Run("flat-index-random", func(b *testing.B) {
		// The keys in a scattered order: at 1M keys the index is larger
		// than pebble's block cache, so most reads load a block, which
		// the sequential order above hides; the pebble block size shows
		// here.
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			k := int(uint64(i) * 2654435761 % uint64(n))
			if v, err := s.Get(ctx, benchKey(k)); err != nil || v == nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
	})
	// The warm read of kairos bench state: 1000 scattered keys read over
	// and over, with Get's value cache (the default) and without it
	// (every read a pebble Get; the cache is swapped out for the run).
	for _, cached := range []bool{true, false} {
		name := "flat-index-warm"
		if !cached {
			name += "-uncached"
		}
		b.Run(name, func(b *testing.B) {
			if !cached {
				vc := s.values
				s.values = newValueCache(0)
				defer func() { s.values = vc }()
			}
			keys := make([]types.StateKey, min(n, 1000))
			for i := range keys {
				keys[i] = benchKey(int(uint64(i) * 2654435761 % uint64(n)))
			}
			for _, k := range keys {
				if _, err := s.Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				if v, err := s.Get(ctx, keys[i%len(keys)]); err != nil || v == nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
		})
	}
	b.Run("baseline=raw-datastore-get", func(b *testing.B) {
		// The same keys in the same order, with the datastore keys made
		// beforehand: what the flat index costs beyond pebble.
		keys := make([]ds.Key, n)
		for i := range keys {
			keys[i] = mustKVKey(b, s.modules, benchKey(i))
		}
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			if _, err := s.d.Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
	})
	b.Run("view-tree-walk-uncached", func(b *testing.B) {
		// The same walk with every node read from pebble (a store on the
		// same database with a node cache too small to keep any): what a
		// read of a version the cache does not hold costs.
		cold, err := Open(ctx, s.d, Options{CacheBytes: 1})
		if err != nil {
			b.Fatal(err)
		}
		cold.pdb = s.pdb
		v, err := cold.View(ctx, h)
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			k := int(uint64(i) * 2654435761 % uint64(n))
			if val, err := v.Get(ctx, benchKey(k)); err != nil || val == nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
	})
	b.Run("view-tree-walk", func(b *testing.B) {
		v, err := s.View(ctx, h)
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		for i := 0; i < b.N; i++ {
			if val, err := v.Get(ctx, benchKey(i%n)); err != nil || val == nil {
				b.Fatal(err)
			}
		}
	})
	// Last: it commits a version above h, replacing the keys it reads at h.
	var replaced sync.Once
	b.Run("view-old-version", func(b *testing.B) {
		// Keys the version above replaced, read at h through a View
		// whose nodes are cached: the value is not the flat index's, so
		// the read finds it in the history (a value record before
		// format 3).
		keys := min(n, benchBlock)
		replaced.Do(func() {
			ws := make([]Write, keys)
			for i := range ws {
				ws[i] = Write{Key: benchKey(i * (n / keys)), Value: benchValue(i*(n/keys), 1)}
			}
			if _, err := s.Commit(ctx, h+1, ws); err != nil {
				b.Fatal(err)
			}
		})
		v, err := s.View(ctx, h)
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		b.ResetTimer()
		cpu := startCPU()
		for i := 0; i < b.N; i++ {
			k := (i % keys) * (n / keys)
			if val, err := v.Get(ctx, benchKey(k)); err != nil || !bytes.Equal(val, benchValue(k, 0)) {
				b.Fatalf("key %d at %d: %x, %v", k, h, val, err)
			}
		}
		b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
	})
}

// BenchmarkVerify verifies single-key inclusion proofs from a tree of
// benchKeys keys and reports the encoded proof size (100-byte values).
func BenchmarkVerify(b *testing.B) {
	n := benchKeys()
	s, h := fillStore(b, n)
	ctx := context.Background()
	proofs := make([]*types.Proof, 256)
	size := 0
	for i := range proofs {
		p, err := s.Prove(ctx, h, benchKey(i*7919%n))
		if err != nil {
			b.Fatal(err)
		}
		proofs[i] = p
		size += len(types.MustEncode(p))
	}
	_, root := s.Latest()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := types.Verify(root, proofs[i%len(proofs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/float64(len(proofs)), "proof-bytes")
}

// BenchmarkProve makes single-key proofs of the latest version from cached
// nodes, the keys in a scattered order: what serving a proof costs the
// store (a proof reads its nodes' inner hashes, node.sub). CPU per proof
// in cpu-ns/op.
func BenchmarkProve(b *testing.B) {
	n := benchKeys()
	s, h := fillStore(b, n)
	ctx := context.Background()
	for i := range 1000 {
		// Every node on the paths computes what it keeps once.
		if _, err := s.Prove(ctx, h, benchKey(int(uint64(i)*2654435761%uint64(n)))); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu := startCPU()
	for i := 0; i < b.N; i++ {
		k := int(uint64(i%1000) * 2654435761 % uint64(n))
		if _, err := s.Prove(ctx, h, benchKey(k)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(cpu.since()*1e9/float64(b.N), "cpu-ns/op")
}

// settleCompactions flushes the memtable and waits until pebble has run
// every compaction it wants to (none in progress at three polls in a row).
// With KAIROS_BENCH_SETTLE set, the commit benchmark does it before and
// after its timed blocks, so that its CPU and table bytes include the
// compactions the blocks caused and a setting cannot look cheaper by
// leaving them for later.
func settleCompactions(b *testing.B, db *pebble.DB) {
	b.Helper()
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for idle := 0; idle < 3; {
		if db.Metrics().Compact.NumInProgress == 0 {
			idle++
		} else {
			idle = 0
		}
		if time.Now().After(deadline) {
			b.Fatal("pebble's compactions did not settle in 10 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pebbleWritten returns the bytes the store's pebble database has written
// to its log and to tables (flushes and compactions) since it was opened.
func pebbleWritten(s *Store) (wal, sst uint64) {
	m := s.d.(*pebbleds.Datastore).DB.Metrics()
	t := m.Total()
	return m.WAL.BytesWritten, t.TableBytesFlushed - t.TableBytesIn + t.TableBytesCompacted
}

// cpuClock measures the process's CPU time (user+system). On a machine
// shared with other work, wall-clock rates understate the code; the CPU
// seconds per op show what the code itself costs.
type cpuClock float64

func startCPU() cpuClock { return cpuClock(cpuNow()) }

func (c cpuClock) since() float64 { return cpuNow() - float64(c) }

func cpuNow() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// gcCounters are the runtime's cumulative collector figures (runtime/metrics)
// and the live heap of the last cycle.
type gcCounters struct{ cpu, cycles, alloc, live float64 }

var gcMetricNames = []string{
	"/cpu/classes/gc/total:cpu-seconds",
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
}

func readGC() gcCounters {
	ms := make([]metrics.Sample, len(gcMetricNames))
	for i, n := range gcMetricNames {
		ms[i].Name = n
	}
	metrics.Read(ms)
	v := func(i int) float64 {
		switch ms[i].Value.Kind() {
		case metrics.KindFloat64:
			return ms[i].Value.Float64()
		case metrics.KindUint64:
			return float64(ms[i].Value.Uint64())
		}
		return 0
	}
	return gcCounters{cpu: v(0), cycles: v(1), alloc: v(2), live: v(3)}
}

// minus is the counters' growth since c0; live stays the latest.
func (c gcCounters) minus(c0 gcCounters) gcCounters {
	return gcCounters{cpu: c.cpu - c0.cpu, cycles: c.cycles - c0.cycles, alloc: c.alloc - c0.alloc, live: c.live}
}

// BenchmarkOpen opens a pebble store with a long history (2000 versions
// kept, nothing pruned): Open reads a fixed handful of records, so its time
// must not grow with history. The baseline opens the same pebble database
// through go-ds-pebble alone.
func BenchmarkOpen(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "db")
	s, err := OpenPebble(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for h := uint64(1); h <= 2000; h++ {
		ws := make([]Write, 50)
		for j := range ws {
			k := int(h)*50 + j
			ws[j] = Write{Key: benchKey(k % 20_000), Value: benchValue(k, int(h))}
		}
		if _, err := s.Commit(context.Background(), h, ws); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.Run("store", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s, err := OpenPebble(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("baseline=go-ds-pebble", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(pebbleOptions()))
			if err != nil {
				b.Fatal(err)
			}
			d.Close()
		}
	})
}

// tableBytes counts the table bytes pebble's flushes and compactions wrote,
// by the record namespace of each table (see tableNamespace), and the
// tables whose key range spans several namespaces: such a table overlaps
// every table of the level below in between, which a compaction into that
// level must rewrite.
type tableBytes struct {
	mu      sync.Mutex
	written map[string]uint64 // "flush-n", "compact-mixed", "why-default"… → bytes
	mixed   int               // tables written that span namespaces
	tables  int
}

func (t *tableBytes) listener() *pebble.EventListener {
	return &pebble.EventListener{
		FlushEnd: func(fi pebble.FlushInfo) {
			if fi.Err == nil && !fi.Ingest {
				t.add("flush", "", -1, fi.Output)
			}
		},
		CompactionEnd: func(ci pebble.CompactionInfo) {
			if logCompactions {
				fmt.Fprintln(os.Stderr, describeCompaction(ci))
			}
			// A move writes nothing: its output tables are its inputs.
			if ci.Err == nil && ci.Reason != "move" {
				t.add("compact", ci.Reason, ci.Output.Level, ci.Output.Tables)
			}
		},
	}
}

// add counts tables a flush or compaction wrote, under op and the
// namespace, under the compaction's reason when it has one, and under the
// compaction's output level (level >= 0): which level's rewrites a change
// of the pruner or the options moved.
func (t *tableBytes) add(op, reason string, level int, tables []pebble.TableInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.written == nil {
		t.written = map[string]uint64{}
	}
	for _, ti := range tables {
		ns := tableNamespace(ti.Smallest.UserKey)
		if ns != tableNamespace(ti.Largest.UserKey) {
			ns = "mixed"
			t.mixed++
		}
		t.written[op+"-"+ns] += ti.Size
		if reason != "" {
			t.written["why-"+reason] += ti.Size
		}
		if level >= 0 {
			t.written["to-L"+strconv.Itoa(level)] += ti.Size
		}
		t.tables++
	}
}

func (t *tableBytes) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written, t.mixed, t.tables = nil, 0, 0
}

// report adds the table bytes per update by operation and namespace, and
// the share of tables written that span namespaces.
func (t *tableBytes) report(b *testing.B, updates int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.written))
	for k := range t.written {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.ReportMetric(float64(t.written[k])/float64(updates), k+"-B/update")
	}
	if t.tables > 0 {
		b.ReportMetric(float64(t.mixed)/float64(t.tables), "mixed-tables")
	}
}

// tableNamespace names the namespace of a key for a metric: "n" for node
// records, "h" history records, "kv" the flat index, "r" roots, "s" stale lists…, or
// spanClass's "between" and "after".
func tableNamespace(k []byte) string {
	return strings.Trim(strings.TrimPrefix(spanClass(k), "/kairos/"), "/")
}

// logCompactions (KAIROS_BENCH_LOGCOMPACT set) prints each compaction of
// the measured store to stderr with describeCompaction: which tables of
// which levels a pruner's tombstones pull into a rewrite.
var logCompactions = os.Getenv("KAIROS_BENCH_LOGCOMPACT") != ""

// describeCompaction names a compaction's reason and, per input level and
// for the output, each table's key range and size; node record keys show
// as "n<born>" (history keys as "h<version>"), so "L0[ n1..n47 999K n47..n47 2055K]" is a table
// of tombstones over the whole born range next to one of a block's records.
func describeCompaction(ci pebble.CompactionInfo) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "compaction %s:", ci.Reason)
	for _, li := range append(slices.Clone(ci.Input), ci.Output) {
		fmt.Fprintf(&sb, " L%d[", li.Level)
		for _, ti := range li.Tables {
			fmt.Fprintf(&sb, " %s..%s %dK", describeKey(ti.Smallest.UserKey), describeKey(ti.Largest.UserKey), ti.Size>>10)
		}
		sb.WriteString("]")
	}
	return sb.String()
}

// describeKey is a key's namespace (tableNamespace), with the born of a
// node record or the version of a history record.
func describeKey(k []byte) string {
	ns := tableNamespace(k)
	if ns == "n" || ns == "h" {
		if v, _, ok := unescape(string(k[len(nsNode):min(len(k), len(nsNode)+16)]), 8); ok {
			return fmt.Sprintf("%s%d", ns, binary.BigEndian.Uint64(v))
		}
	}
	return ns
}

// heapProfileTo writes the live heap, as a collection right now marks it,
// to path (none if path is empty): what the store holds between blocks, for
// go tool pprof -sample_index=inuse_space (-diff_base against another
// build's). Taken after the timed blocks and their figures, as the
// collection it forces would count in them.
func heapProfileTo(b *testing.B, path string) {
	if path == "" {
		return
	}
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
