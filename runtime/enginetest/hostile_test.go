package enginetest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/types"
)

// rejected is the deploy rule each rejected fixture breaks.
var rejected = map[string]error{
	"huge_memory":     validate.ErrMemoryTooLarge,
	"huge_br_table":   validate.ErrBrTableTooLarge,
	"many_functions":  validate.ErrTooManyFunctions,
	"many_locals":     validate.ErrTooManyLocals,
	"invalid_binary":  validate.ErrMalformed,
	"unknown_import":  validate.ErrImportNotAllowed,
	"disallowed_wasi": validate.ErrImportNotAllowed,
	"own_gas_left":    validate.ErrReservedName,
}

// runnable lists the statuses each method of the deployable fixtures may
// end in ("wild_pointers" exports one method per ABI function and is
// checked separately).
var runnable = map[string][]types.Status{
	"infinite_loop":    {types.StatusOutOfGas},
	"recursion_bomb":   {types.StatusTrapped},
	"memory_grow_loop": {types.StatusOK, types.StatusOutOfGas},
	"float_nan":        {types.StatusOK},
}

const hostileGas = 10_000_000

func hostileCorpus(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(), "runtime/testdata/hostile/*.wasm"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus (%v): go run ./runtime/internal/genhostile", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".wasm")] = b
	}
	return out
}

// hostileCalls deploys the deployable fixtures on c and returns one
// transaction per exported method.
func hostileCalls(t testing.TB, c *chain, corpus map[string][]byte) []tx {
	t.Helper()
	var calls []tx
	for name, bin := range corpus {
		if rejected[name] != nil {
			continue
		}
		a := addr("hostile/" + name)
		c.deploy(a, bin, alice, nil)
		p, _ := prepare(t, bin)
		for _, m := range p.methods {
			calls = append(calls, tx{from: alice, to: a, method: m, time: t0})
		}
	}
	return calls
}

// TestHostileCorpus: every fixture is rejected at deploy with its rule's
// sentinel, or each of its methods ends in an expected status with the
// same receipt (gas included) on every configuration.
func TestHostileCorpus(t *testing.T) {
	corpus := hostileCorpus(t)
	for name := range rejected {
		if _, ok := corpus[name]; !ok {
			t.Errorf("fixture %s missing", name)
		}
	}
	for name, bin := range corpus {
		_, err := prepare(t, bin)
		want := rejected[name]
		if want == nil && err != nil {
			t.Errorf("%s: rejected (%v)", name, err)
		} else if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: deploy error %v, want %v", name, err, want)
		}
	}
	var want map[string]string // method key -> record on the reference
	for ci, c := range configs {
		ch := newChain(t, c)
		ch.gas = hostileGas
		got := map[string]string{}
		badPointers := 0
		for _, call := range hostileCalls(t, ch, corpus) {
			r := ch.run(call, false, false)
			key := fmt.Sprintf("%x.%s", call.to[:4], call.method)
			got[key] = record(r)
			if fn, ok := strings.CutPrefix(call.method, "w_"); ok {
				// Functions without arguments succeed, and so do the
				// descriptor-based WASI calls: fd 0xfffffff0 is not open
				// (EBADF, docs/abi.md section 8) before any pointer is
				// read. Everything else is stopped.
				wantOK := fn == "tx_time" || fn == "block_height" || fn == "sched_yield" ||
					strings.HasPrefix(fn, "fd_") || strings.HasPrefix(fn, "path_")
				if (r.Status == types.StatusOK) != wantOK || !wantOK && r.Status != types.StatusTrapped {
					t.Errorf("%s %s: %s", c.name, call.method, record(r))
				}
				if errors.Is(r.Err, host.ErrBadPointer) || errors.Is(r.Err, wasi.ErrBadPointer) {
					badPointers++
				}
				continue
			}
			for name, ok := range runnable {
				if call.to == addr("hostile/"+name) && !slices.Contains(ok, r.Status) {
					t.Errorf("%s %s.%s: %s, want one of %v", c.name, name, call.method, record(r), ok)
				}
			}
			if call.to == addr("hostile/recursion_bomb") && !errors.Is(r.Err, host.ErrCallDepth) {
				t.Errorf("%s recursion_bomb: %v, want ErrCallDepth", c.name, r.Err)
			}
		}
		// 23 of the 41 functions read a pointer first (the 4 iterator
		// functions read a handle, proc_exit none).
		if badPointers != 23 {
			t.Errorf("%s: %d wild-pointer calls stopped with a bad-pointer error, want 23", c.name, badPointers)
		}
		if ci == 0 {
			want = got
			continue
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s differs from %s on %s:\n %s\n %s", c.name, configs[0].name, k, w, got[k])
			}
		}
	}
}

// TestHostileRSSBounded: two workers run the deployable corpus on pooled
// instances in a loop and the process RSS stays under 1 GiB (instances are
// bounded by vm.Config.MemoryLimitPages, idle ones by exec.PoolConfig).
// A few rounds normally; KAIROS_LONG=1 loops for a minute. The loop runs
// in a child process (this test binary again), so the RSS is the corpus's
// and not what earlier tests left.
func TestHostileRSSBounded(t *testing.T) {
	if os.Getenv("KAIROS_RSS_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHostileRSSBounded$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "KAIROS_RSS_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		for l := range strings.Lines(string(out)) {
			if strings.Contains(l, "MiB") {
				t.Log(strings.TrimSpace(l))
			}
		}
		return
	}
	const limit = 1 << 30
	corpus := hostileCorpus(t)
	rounds, until := 3, time.Time{}
	if os.Getenv("KAIROS_LONG") == "1" {
		rounds, until = 1<<30, time.Now().Add(time.Minute) // a duration bound, not an assertion
	}
	start, err := vmRSS()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	peak := start
	var wg sync.WaitGroup
	for w := range 2 {
		ch := newChain(t, configs[1])
		ch.gas = hostileGas
		calls := hostileCalls(t, ch, corpus)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds && (until.IsZero() || time.Now().Before(until)); i++ {
				for _, c := range calls {
					ch.run(c, false, false)
				}
				rss, err := vmRSS()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				peak = max(peak, rss)
				mu.Unlock()
				if rss > limit {
					t.Errorf("worker %d round %d: RSS %d MiB", w, i, rss>>20)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("RSS %d MiB at the start, peak %d MiB", start>>20, peak>>20)
}

// vmRSS reads the resident set size from /proc/self/status.
func vmRSS() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status: %v", s.Err())
}
