package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// BenchmarkExecute runs the workload of each bench module (10 000
// accounts, 5 000 transactions per block) serially and with 1 and 2
// workers; the wasm modules on a warm PooledEngine. KAIROS_EXEC_SKIP_GO=1
// leaves out the Go token (it is built with the local Go toolchain).
func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	code := map[string][]byte{
		BenchWAT:      readWasm(b, "../../contracts/counter_wat/counter.wasm"),
		BenchWATToken: readWasm(b, "../../contracts/token_wat/token.wasm"),
	}
	if os.Getenv("KAIROS_EXEC_SKIP_GO") == "" {
		var err error
		if code[BenchGo], err = BuildGoGuest("../../contracts/token"); err != nil {
			b.Fatal(err)
		}
	}
	for _, module := range []string{BenchNative, BenchWAT, BenchWATToken, BenchGo} {
		var r Runner = NewNativeRunner(NativeModules())
		if module != BenchNative {
			if code[module] == nil {
				continue
			}
			r = NewRunner(nil, newPooledEngine(b, DefaultPoolConfig()))
		}
		for _, rate := range []float64{0, 0.1, 1} {
			blk, txs, genesis, err := Workload(module, code[module], 10_000, 5_000, rate)
			if err != nil {
				b.Fatal(err)
			}
			s, err := state.OpenMemory(state.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Commit(ctx, 1, genesis); err != nil {
				b.Fatal(err)
			}
			serial, w1, w2 := New(r, Options{}), New(r, Options{Workers: 1}), New(r, Options{Workers: 2})
			for _, c := range []struct {
				name string
				run  func() (*BlockResult, error)
			}{
				// One executor per mode for all its blocks, as a node has.
				{"serial", func() (*BlockResult, error) { return serial.ExecuteSerial(ctx, s, blk, txs) }},
				{"workers=1", func() (*BlockResult, error) { return w1.ExecuteBlock(ctx, s, blk, txs) }},
				{"workers=2", func() (*BlockResult, error) { return w2.ExecuteBlock(ctx, s, blk, txs) }},
			} {
				b.Run(fmt.Sprintf("%s/conflict=%.0f%%/%s", module, 100*rate, c.name), func(b *testing.B) {
					cpu0 := processCPU()
					for b.Loop() {
						if _, err := c.run(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(len(txs))*float64(b.N)/b.Elapsed().Seconds(), "tx/s")
					b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
				})
			}
			s.Close()
		}
	}
}

// TestBenchSmall runs Bench on a tiny workload (it fails on any transfer
// that is not OK) and checks the workload's conflict shape: 100% is one
// chain, 0% has no edge.
func TestBenchSmall(t *testing.T) {
	wat := readWasm(t, "../../contracts/counter_wat/counter.wasm")
	for _, cfg := range []BenchConfig{
		{Accounts: 40, Txs: 20, Rounds: 1},
		{Accounts: 40, Txs: 20, Rounds: 1, Module: BenchWAT, Code: wat},
	} {
		rows, err := Bench(context.Background(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Fatalf("%s: %d rows", cfg.Module, len(rows))
		}
		for _, r := range rows {
			if r.Workers2NoGC <= 0 || r.Serial2NoGC <= 0 || r.AllocSerial2 == 0 || r.AllocWorkers2 == 0 {
				t.Fatalf("%s: runs without the collector not measured: %+v", cfg.Module, r)
			}
		}
	}
	for _, m := range []struct {
		name string
		code []byte
	}{{BenchNative, nil}, {BenchWAT, wat}} {
		_, txs, _, err := Workload(m.name, m.code, 40, 20, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := buildDAG(txs, sendersOf(txs))
		for i := 1; i < len(txs); i++ {
			if d.ndeps[i] != 1 {
				t.Fatalf("%s, 100%% conflict: tx %d has %d dependencies, want 1", m.name, i, d.ndeps[i])
			}
		}
		if newAccessTable(txs, sendersOf(txs), 1).independent {
			t.Fatalf("%s, 100%% conflict: independent", m.name)
		}
		_, txs, _, _ = Workload(m.name, m.code, 40, 20, 0)
		if d := buildDAG(txs, sendersOf(txs)); len(d.out) != 0 {
			t.Fatalf("%s, 0%% conflict: %d edges", m.name, len(d.out))
		}
		if !newAccessTable(txs, sendersOf(txs), 1).independent {
			t.Fatalf("%s, 0%% conflict: not independent", m.name)
		}
	}
	if _, _, _, err := TransferWorkload(10, 6, 0); err == nil {
		t.Fatal("workload larger than its accounts accepted")
	}
	if _, _, _, err := Workload(BenchGo, nil, 40, 20, 0); !errors.Is(err, ErrBenchModule) {
		t.Fatalf("go workload without code: %v", err)
	}
	if _, _, _, err := Workload("evm", nil, 40, 20, 0); !errors.Is(err, ErrBenchModule) {
		t.Fatalf("unknown module: %v", err)
	}
}

func sendersOf(txs []*types.Tx) []types.Address {
	s := make([]types.Address, len(txs))
	for i, tx := range txs {
		s[i] = tx.SenderAddress()
	}
	return s
}

// BenchmarkPhases times the phases of a conflict-free block of each bench
// module (10 000 accounts, 5 000 transactions) on one goroutine: the
// key numbering (with the senders), the prefetch (by entry, see feed), the
// execution and the merge; and the execution on two goroutines. The
// serial baseline runs the first three on every worker too, so they bound
// what two workers can gain (see RATIONALE.md).
func BenchmarkPhases(b *testing.B) {
	ctx := context.Background()
	code := map[string][]byte{
		BenchWAT:      readWasm(b, "../../contracts/counter_wat/counter.wasm"),
		BenchWATToken: readWasm(b, "../../contracts/token_wat/token.wasm"),
	}
	for _, module := range []string{BenchNative, BenchWAT, BenchWATToken} {
		var r Runner = NewNativeRunner(NativeModules())
		if module != BenchNative {
			r = NewRunner(nil, newPooledEngine(b, DefaultPoolConfig()))
		}
		blk, txs, genesis, err := Workload(module, code[module], 10_000, 5_000, 0)
		if err != nil {
			b.Fatal(err)
		}
		s, err := state.OpenMemory(state.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, 1, genesis); err != nil {
			b.Fatal(err)
		}
		x := New(r, Options{Workers: 1})
		bl, err := x.prepare(ctx, s, blk, txs)
		if err != nil {
			b.Fatal(err)
		}
		outs := newTxOutcomes(len(txs))
		wctx := withWorker(ctx, new(worker)) // as a worker or the serial path runs them
		run := func() {
			for i := range txs {
				out, err := x.runTx(wctx, bl, emptyLayer{}, s, i, false, nil)
				if err != nil {
					b.Fatal(err)
				}
				outs.set(i, out)
			}
		}
		run() // warm the engine
		// The execution on two goroutines, each with a worker of its own
		// over a contiguous half of the block, as executeIndependent runs
		// it: against "execute", what both cores executing at once cost
		// per transaction. Each worker is allocated on its own, as
		// goWorkers allocates them: in one [2]worker array the first one's
		// overlay and the second one's instance lists shared a cache line
		// that both cores wrote on every transaction (execute-par-adjacent
		// keeps that layout, to show what it costs; see RATIONALE.md).
		w2 := [2]*worker{new(worker), new(worker)}
		var adj [2]worker
		run2 := func(w [2]*worker) {
			var wg sync.WaitGroup
			for p := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					wctx := withWorker(ctx, w[p])
					for i := p * len(txs) / 2; i < (p+1)*len(txs)/2; i++ {
						out, err := x.runTx(wctx, bl, emptyLayer{}, s, i, false, nil)
						if err != nil {
							panic(err)
						}
						outs.set(i, out)
					}
				}()
			}
			wg.Wait()
		}
		numbering, senders := new(scratch), make([]types.Address, len(txs))
		x2 := New(r, Options{Workers: 2})
		for _, p := range []struct {
			name string
			fn   func()
		}{
			// In its own scratch, reused as a block's is; with the
			// senders (a signed transaction has its address at hand).
			{"numbering", func() { newAccessTableIn(numbering, txs, senders, true, 1, nil) }},
			// With 2 workers and a crew started just before, as prepare
			// ran it until round 12 (it now numbers in one part beside
			// the prefetch, see prepare-2w): the listing is the helper's
			// first phase, and in wall time (ns/op) this shows what a
			// late helper costs.
			{"numbering-2w", func() {
				numbering.crew = newCrew(1)
				newAccessTableIn(numbering, txs, senders, true, 2, nil)
				numbering.crew.stop()
				numbering.crew = nil
			}},
			{"prefetch", func() { loadAll(b, newFeed(ctx, s, bl.access, bl.txs, 1), nil) }},
			{"execute", run},
			{"execute-par", func() { run2(w2) }},
			{"execute-par-adjacent", func() { run2([2]*worker{&adj[0], &adj[1]}) }},
			{"merge", func() { x.merge(outs, bl.access, 1, true) }},
			// As ExecuteSerial merges (Serial2's merge, on its one
			// worker): the slots' counting pass too.
			{"merge-serial", func() { x.merge(outs, bl.access, 1, false) }},
			// The whole preparation with 2 workers, as both ExecuteBlock
			// and ExecuteSerial (Serial2) run it: crew start, listing, the
			// numbering and the prefetch beside it, with the caches warm.
			{"prepare-2w", func() {
				bl2, err := x2.prepare(ctx, s, blk, txs)
				if err != nil {
					b.Fatal(err)
				}
				x2.done(bl2)
			}},
		} {
			b.Run(module+"/"+p.name, func(b *testing.B) {
				cpu0 := processCPU()
				for b.Loop() {
					p.fn()
				}
				b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			})
		}
		// prepare-2w with the caches evicted before each run (outside the
		// timing), as a block finds the store's index after executing the
		// last one.
		b.Run(module+"/prepare-2w-cold", func(b *testing.B) {
			evict := make([]byte, 64<<20)
			var cpu time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				evictCaches(evict)
				cpu0 := processCPU()
				b.StartTimer()
				bl2, err := x2.prepare(ctx, s, blk, txs)
				if err != nil {
					b.Fatal(err)
				}
				x2.done(bl2)
				cpu += processCPU() - cpu0
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
		// The merge of a 2-worker block, over a crew whose helper is
		// already running, as after the execution.
		b.Run(module+"/merge-2w", func(b *testing.B) {
			withRunningCrew(b, bl.access.sc, func() { x.merge(outs, bl.access, 2, true) })
		})
		for p := range w2 {
			w2[p].flush() // the instances back to the engine, as after a block
			adj[p].flush()
		}
		// In a block the prefetch finds the datastore's map out of the
		// caches (execution ran since the last block), so each lookup
		// waits for memory: the warm figure above understates it. This
		// one evicts the caches before each run, outside the timing.
		// With 2 readers, as both modes of a 2-core node read, on a crew
		// whose helper is running, as after the numbering: the two share
		// the memory's bandwidth and the last-level cache. (Until round 12
		// this row had no crew, so one goroutine read both halves.)
		for _, readers := range []int{1, 2} {
			name := "/prefetch-cold"
			if readers > 1 {
				name = fmt.Sprintf("/prefetch-cold-%dreaders", readers)
			}
			b.Run(module+name, func(b *testing.B) {
				evict := make([]byte, 64<<20)
				var cpu time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					evictCaches(evict)
					var c *crew
					if readers > 1 {
						c = runningCrew(readers - 1)
					}
					cpu0 := processCPU()
					b.StartTimer()
					loadAll(b, newFeed(ctx, s, bl.access, bl.txs, readers), c)
					b.StopTimer()
					cpu += processCPU() - cpu0
					c.stop()
					b.StartTimer()
				}
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
		s.Close()
	}
}

// loadAll runs f's chunks on crew c (nil: the caller alone).
func loadAll(tb testing.TB, f *feed, c *crew) {
	f.start(c)
	if _, err := f.finish(); err != nil {
		tb.Fatal(err)
	}
}

// runningCrew starts a crew of helpers and returns once one of them has
// claimed a part of a phase, i.e. is running and spinning for the next
// phase, as a block's crew is between its phases (a new goroutine waits
// for a thread to wake first, ~0.1 ms).
func runningCrew(helpers int) *crew {
	c := newCrew(helpers)
	var joined atomic.Bool
	c.parallel(2, func(p int) {
		if p == 1 {
			joined.Store(true)
			return
		}
		for !joined.Load() {
			runtime.Gosched()
		}
	})
	return c
}

// withRunningCrew times fn (wall, and CPU as cpu-s/op) with sc's crew a
// runningCrew of one helper, started and stopped outside the timing.
func withRunningCrew(b *testing.B, sc *scratch, fn func()) {
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sc.crew = runningCrew(1)
		cpu0 := processCPU()
		b.StartTimer()
		fn()
		b.StopTimer()
		cpu += processCPU() - cpu0
		sc.crew.stop()
		sc.crew = nil
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkTwoCoreControl is the machine's own price of running on both
// cores, for reading execute against execute-par (BenchmarkPhases): the
// same total work on one goroutine and split over two, each goroutine
// with memory of its own, so nothing is shared between them. alu is
// register arithmetic (clock, and a core's ports if the two vCPUs were
// hyperthreads of one core); l2 and l3 read at random over 512 KiB and
// 8 MiB per goroutine (a core's L2, the shared L3). If two goroutines
// cost more CPU per unit here, a 2-worker gap of the same size in
// execute-par is the machine's, not the executor's (see RATIONALE.md).
func BenchmarkTwoCoreControl(b *testing.B) {
	for _, kind := range []struct {
		name  string
		bytes int // per goroutine; 0: registers only
		units int // steps per op, split over the goroutines (~5 ms)
	}{{"alu", 0, 1 << 22}, {"l2", 512 << 10, 1 << 20}, {"l3", 8 << 20, 1 << 17}} {
		for _, g := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/%dg", kind.name, g), func(b *testing.B) {
				tables := make([][]uint64, g)
				for p := range tables {
					tables[p] = make([]uint64, kind.bytes/8)
					for j := range tables[p] {
						tables[p][j] = uint64(j) * 0x9e3779b97f4a7c15
					}
				}
				var sink [2]struct {
					v uint64
					_ [56]byte
				}
				cpu0 := processCPU()
				for b.Loop() {
					var wg sync.WaitGroup
					for p := range g {
						wg.Add(1)
						go func() {
							defer wg.Done()
							sink[p].v = controlWork(tables[p], kind.units/g)
						}()
					}
					wg.Wait()
				}
				b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}

// controlWork runs n steps of four independent xorshift generators (so
// the core's ALU ports are kept busy, as a hyperthread sibling would
// show), each step also reading the table at a generated index when
// there is a table.
func controlWork(t []uint64, n int) uint64 {
	x, y, z, w := uint64(88172645463325252), uint64(1), uint64(2), uint64(3)
	mask := uint64(len(t) - 1)
	for range n {
		x ^= x << 13
		y ^= y << 13
		z ^= z << 13
		w ^= w << 13
		x ^= x >> 7
		y ^= y >> 7
		z ^= z >> 7
		w ^= w >> 7
		x ^= x << 17
		y ^= y << 17
		z ^= z << 17
		w ^= w << 17
		if len(t) > 0 {
			x += t[x&mask]
		}
	}
	return x ^ y ^ z ^ w
}

// evictCaches writes a byte of every cache line of evict (64 MiB, larger
// than the machine's caches), so that the timed run after it starts cold.
func evictCaches(evict []byte) {
	for j := 0; j < len(evict); j += 64 {
		evict[j]++
	}
}
