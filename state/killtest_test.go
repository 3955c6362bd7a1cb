package state_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/state/statebench"
	"github.com/kairos-network/kairos/types"
)

// Kill test settings. KAIROS_KILL_ROUNDS raises the number of kills for the
// long runs; the child finds its store through killDirEnv.
const (
	killDirEnv      = "KAIROS_KILLTEST_DIR"
	killAsyncEnv    = "KAIROS_KILLTEST_ASYNC" // set: the child pipelines with CommitAsync
	killRoundsEnv   = "KAIROS_KILL_ROUNDS"
	killRounds      = 20
	killKeep        = 4    // K of the child's store, small so that it prunes
	killPruneEvery  = 3    // the child prunes after every third commit
	killChildBlocks = 2000 // a child that is never killed stops here
)

// killWorkload's first three blocks bring new modules (module ids in the
// batch), where the first rounds' kills land.
func killWorkload() statebench.Workload {
	return statebench.Workload{Keys: 4000, Block: 400, ValueSize: 100, Modules: 1000, Seed: 42}
}

// TestKillNine runs a writer process that commits blocks to a pebble store
// and reports each durable height on stdout, kills it with SIGKILL at
// varying points (during commits, prunes and recovery), and after each kill
// reopens the store and checks (every other child pipelines its commits
// with CommitAsync, so it dies with two commits in flight): the opened version is at least the last one
// reported durable, its root is the reference root of that height recomputed
// from the deterministic workload, and the audit finds nothing leaked,
// missing or out of step in the flat index.
func TestKillNine(t *testing.T) {
	if dir := os.Getenv(killDirEnv); dir != "" {
		runKillChild(dir)
		return
	}
	if state.RaceEnabled {
		t.Skip("the kill test runs in the plain (non -race) test run")
	}
	rounds := killRounds
	if v := os.Getenv(killRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", killRoundsEnv, v)
		}
		rounds = n
	}
	ctx := context.Background()
	w := killWorkload()
	dir := t.TempDir()
	ref := newRefRoots(t, w)
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < rounds; round++ {
		// Kill after 0..6 reported commits; 0 often lands in recovery or
		// in the first commit after it.
		reported := runAndKill(t, dir, r.IntN(7), round%2 == 1)

		s, err := state.OpenPebble(dir, state.Options{KeepVersions: killKeep})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		h, root := s.Latest()
		if h < reported {
			t.Fatalf("round %d: reopened at version %d, but %d was reported durable", round, h, reported)
		}
		if want := ref.root(h); root != want {
			t.Fatalf("round %d: version %d has root %s, reference %s", round, h, root, want)
		}
		rep, err := s.Audit(ctx)
		if err != nil {
			t.Fatalf("round %d: audit: %v", round, err)
		}
		if !rep.Clean() {
			t.Fatalf("round %d at version %d: audit leaked=%d missing=%d index mismatches=%d",
				round, h, len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d reported, reopened at %d", round, reported, h)
	}
}

// runAndKill starts the writer, kills it once it has reported after more
// commits, and returns the highest height it reported durable (including
// lines still in the pipe when it died).
func runAndKill(t *testing.T, dir string, after int, async bool) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNine$", "-test.count=1")
	cmd.Env = append(os.Environ(), killDirEnv+"="+dir)
	if async {
		cmd.Env = append(cmd.Env, killAsyncEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last uint64
	seen, killed := 0, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "durable "); ok {
			v, err := strconv.ParseUint(h, 10, 64)
			if err != nil {
				t.Fatalf("child wrote %q", line)
			}
			last = max(last, v)
			seen++
		} else if !strings.HasPrefix(line, "open ") {
			continue
		}
		if !killed && seen >= after {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before it was killed: %v", err)
	}
	return last
}

// runKillChild is the writer: it opens the store, resumes after the last
// durable version and commits until it is killed, pruning as it goes. With
// killAsyncEnv set it commits with CommitAsync and reports a version
// durable when its wait returned, after the next one was handed over.
func runKillChild(dir string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "kill child:", err)
		os.Exit(2)
	}
	w := killWorkload()
	s, err := state.OpenPebble(dir, state.Options{KeepVersions: killKeep})
	if err != nil {
		fail(err)
	}
	h, _ := s.Latest()
	fmt.Printf("open %d\n", h)
	async := os.Getenv(killAsyncEnv) != ""
	var wait func() error
	for b := h + 1; b <= h+killChildBlocks; b++ {
		if !async {
			if _, err := s.Commit(ctx, b, w.Writes(b)); err != nil {
				fail(err)
			}
			fmt.Printf("durable %d\n", b)
		} else {
			_, next, err := s.CommitAsync(ctx, b, w.Writes(b))
			if err != nil {
				fail(err)
			}
			if wait != nil {
				if err := wait(); err != nil {
					fail(err)
				}
				fmt.Printf("durable %d\n", b-1)
			}
			wait = next
		}
		if b%killPruneEvery == 0 {
			if _, err := s.Prune(ctx); err != nil {
				fail(err)
			}
		}
	}
	os.Exit(0)
}

// refRoots recomputes the reference root of each height from the workload
// in an in-memory store that keeps every version.
type refRoots struct {
	t     *testing.T
	w     statebench.Workload
	s     *state.Store
	roots []types.Root // roots[h]
}

func newRefRoots(t *testing.T, w statebench.Workload) *refRoots {
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, r0 := s.Latest()
	return &refRoots{t: t, w: w, s: s, roots: []types.Root{r0}}
}

func (r *refRoots) root(h uint64) types.Root {
	for uint64(len(r.roots)) <= h {
		next := uint64(len(r.roots))
		root, err := r.s.Commit(context.Background(), next, r.w.Writes(next))
		if err != nil {
			r.t.Fatal(err)
		}
		r.roots = append(r.roots, root)
	}
	return r.roots[h]
}
