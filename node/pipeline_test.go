package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// TestAfterCommitAgainstModel: the state a block executes on while its
// parent's commit is written (afterCommit) reads like a map holding the
// parent's state: before the parent's commit was even handed over (the
// store still at the version before), while it is written, and after its
// wait; Get, GetMany and Iterate over every prefix of a few short keys,
// with the parent writing, replacing and deleting (nil and empty values).
// A dumb map is the reference, and after the wait the store itself too.
func TestAfterCommitAgainstModel(t *testing.T) {
	ctx := context.Background()
	modules := []types.Address{{1}, {2}, {3}}
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			// Keys over a tiny alphabet share prefixes, so Iterate's
			// runs interleave the store's entries and the parent's.
			randKey := func() []byte {
				k := make([]byte, rng.IntN(4))
				for i := range k {
					k[i] = "ab\x00\xff"[rng.IntN(4)]
				}
				return k
			}
			ref := map[string][]byte{} // module ‖ key → value
			id := func(k types.StateKey) string { return string(k.Module[:]) + string(k.Key) }
			s, err := state.OpenPebble(filepath.Join(t.TempDir(), "db"), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Version 1: the store's state under the view.
			var base []state.Write
			seen := map[string]bool{}
			for range 40 {
				k := types.StateKey{Module: modules[rng.IntN(len(modules))], Key: randKey()}
				if seen[id(k)] {
					continue
				}
				seen[id(k)] = true
				v := []byte(fmt.Sprintf("base-%d", rng.IntN(1000)))
				base = append(base, state.Write{Key: k, Value: v})
				ref[id(k)] = v
			}
			if _, err := s.Commit(ctx, 1, base); err != nil {
				t.Fatal(err)
			}
			// The parent, version 2: new keys, replaced ones, deletes.
			var writes []state.Write
			seen = map[string]bool{}
			for range 30 {
				k := types.StateKey{Module: modules[rng.IntN(len(modules))], Key: randKey()}
				if seen[id(k)] {
					continue
				}
				seen[id(k)] = true
				var v []byte
				switch rng.IntN(3) {
				case 0: // delete
					if rng.IntN(2) == 0 {
						v = []byte{}
					}
					delete(ref, id(k))
				default:
					v = []byte(fmt.Sprintf("new-%d", rng.IntN(1000)))
					ref[id(k)] = v
				}
				writes = append(writes, state.Write{Key: k, Value: v})
			}
			slices.SortFunc(writes, func(a, b state.Write) int { return a.Key.Compare(b.Key) })

			check := func(when string, view interface {
				Get(context.Context, types.StateKey) ([]byte, error)
				Iterate(context.Context, types.Address, []byte, func(k, v []byte) error) error
			}) {
				t.Helper()
				// Every key ever used, and some never used.
				var keys []types.StateKey
				for _, m := range append(modules, types.Address{9}) {
					for range 20 {
						keys = append(keys, types.StateKey{Module: m, Key: randKey()})
					}
				}
				for _, w := range append(slices.Clone(base), writes...) {
					keys = append(keys, w.Key)
				}
				for _, k := range keys {
					got, err := view.Get(ctx, k)
					if err != nil || !bytes.Equal(got, ref[id(k)]) || (got == nil) != (ref[id(k)] == nil) {
						t.Fatalf("%s: Get %s = %q, %v; want %q", when, k, got, err, ref[id(k)])
					}
				}
				if a, ok := view.(*afterCommit); ok {
					got, err := a.GetMany(ctx, keys, [][]byte{[]byte("kept")})
					if err != nil || len(got) != len(keys)+1 || string(got[0]) != "kept" {
						t.Fatalf("%s: GetMany: %d values, %v", when, len(got), err)
					}
					for i, k := range keys {
						if v := got[i+1]; !bytes.Equal(v, ref[id(k)]) || (v == nil) != (ref[id(k)] == nil) {
							t.Fatalf("%s: GetMany %s = %q, want %q", when, k, v, ref[id(k)])
						}
					}
				}
				prefixes := [][]byte{nil, {}, []byte("a"), []byte("b"), []byte("ab"), {0}, {0xff}, []byte("aba"), []byte("zz")}
				for _, m := range modules {
					for _, p := range prefixes {
						var want []string
						for k, v := range ref {
							if k[:types.AddressLen] == string(m[:]) && bytes.HasPrefix([]byte(k[types.AddressLen:]), p) {
								want = append(want, k[types.AddressLen:]+"="+string(v))
							}
						}
						slices.SortFunc(want, cmpKeyPart)
						var got []string
						err := view.Iterate(ctx, m, p, func(k, v []byte) error {
							got = append(got, string(k)+"="+string(v))
							return nil
						})
						if err != nil || !slices.Equal(got, want) {
							t.Fatalf("%s: Iterate %s %x = %q, %v; want %q (in key order)", when, m, p, got, err, want)
						}
					}
				}
				// An error from fn stops the iteration and comes back.
				stop := errors.New("stop")
				calls := 0
				err := view.Iterate(ctx, modules[0], nil, func(k, v []byte) error { calls++; return stop })
				if n := countModule(ref, modules[0]); (n > 0 && (!errors.Is(err, stop) || calls != 1)) || (n == 0 && (err != nil || calls != 0)) {
					t.Fatalf("%s: Iterate stopped by fn: %v after %d calls (%d entries)", when, err, calls, n)
				}
			}
			// The store at version 1, the parent's commit not handed over:
			// what the view reads while the write has not landed.
			check("before the commit", newAfterCommit(s, writes))
			_, wait, err := s.CommitAsync(ctx, 2, writes)
			if err != nil {
				t.Fatal(err)
			}
			view := newAfterCommit(s, writes)
			check("while the commit is written", view)
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			check("after the wait", view)
			check("the store after the wait", s)
		})
	}
}

// cmpKeyPart orders "key=value" strings by their key.
func cmpKeyPart(a, b string) int {
	return bytes.Compare([]byte(a[:bytes.LastIndexByte([]byte(a), '=')]), []byte(b[:bytes.LastIndexByte([]byte(b), '=')]))
}

func countModule(ref map[string][]byte, m types.Address) int {
	n := 0
	for k := range ref {
		if k[:types.AddressLen] == string(m[:]) {
			n++
		}
	}
	return n
}

// TestAfterCommitUnsortedWrites: writes not in key order (exec returns
// them sorted; any other caller may not) are read the same.
func TestAfterCommitUnsortedWrites(t *testing.T) {
	ctx := context.Background()
	s, err := state.OpenPebble(filepath.Join(t.TempDir(), "db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := types.Address{1}
	writes := []state.Write{{Key: types.StateKey{Module: m, Key: []byte("b")}, Value: []byte("2")},
		{Key: types.StateKey{Module: m, Key: []byte("a")}, Value: []byte("1")}}
	a := newAfterCommit(s, writes)
	if v, err := a.Get(ctx, types.StateKey{Module: m, Key: []byte("a")}); err != nil || string(v) != "1" {
		t.Fatalf("Get a = %q, %v", v, err)
	}
	if string(writes[0].Key.Key) != "b" {
		t.Fatal("the caller's writes were reordered")
	}
}

// holdExecutor keeps nd's executor from starting a block until at least
// queued released blocks wait behind the one it took, so the blocks after
// the release run back to back: the pipelined path. The returned func
// lets it go.
func holdExecutor(c *cluster, nd *Node, queued int) (release func()) {
	c.t.Helper()
	nd.exe.run.Lock()
	return func() {
		c.t.Helper()
		c.waitFor(fmt.Sprintf("%d blocks queued behind the held executor", queued), 60*time.Second, func() bool {
			nd.exe.mu.Lock()
			defer nd.exe.mu.Unlock()
			return len(nd.exe.queue) >= queued
		})
		nd.exe.run.Unlock()
	}
}

// TestPipelinedBlocksAgree: node 0 executes blocks back to back, each on
// the state after the one before while that one's commit is written; its
// blocks, roots and receipts are the other nodes' (which executed block
// by block), and every block touches the counters the one before wrote.
func TestPipelinedBlocksAgree(t *testing.T) {
	c := newCluster(t, 4)
	nd := c.nodes[0]
	release := holdExecutor(c, nd, 3)
	c.nodes[0] = nil // the waves neither submit to it nor wait for it
	ids := c.waves(0, 4)
	c.nodes[0] = nd
	release()
	c.waitFor("node 0 executes the waves", 60*time.Second, func() bool { return c.executedAll(nd, ids) })
	if nd.pipelined.Load() == 0 {
		t.Fatal("no block ran on the state of a commit in flight: the test does not cover the pipeline")
	}
	h := c.sameChain()
	for _, id := range ids {
		if r, _, err := nd.Receipt(id); err != nil || r.Status != types.StatusOK {
			t.Fatalf("receipt of %s: %+v, %v", id, r, err)
		}
	}
	t.Logf("%d blocks pipelined; blocks up to %d equal on all nodes", nd.pipelined.Load(), h)
}

// Environment of TestPipelinedCrashRestart's child process.
const (
	crashDirEnv  = "KAIROS_NODE_CRASH_DIR"  // node 3's data directory
	crashBootEnv = "KAIROS_NODE_CRASH_BOOT" // JSON of the running nodes' AddrInfos
)

// TestPipelinedCrashRestart: validator 3 runs in a child process, holds
// its executor until blocks queue, and kills itself (SIGKILL) at the
// pipelined point: one block's state commit handed over and not waited
// for (in flight, or durable without its root record), the next block
// executing on it. Restarted from its directory in this process, it
// reopens as after any crash and reaches the same blocks and roots as the
// three others, with every transaction executed once.
func TestPipelinedCrashRestart(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		runCrashChild(t, dir, os.Getenv(crashBootEnv))
		return
	}
	c := newCluster(t, 4)
	c.waves(0, 1)
	c.stop(3)
	var boot []peer.AddrInfo
	for _, nd := range c.nodes[:3] {
		boot = append(boot, nd.AddrInfo())
	}
	bj, err := json.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestPipelinedCrashRestart$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+c.dirs[3], crashBootEnv+"="+string(bj))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Waves until the child has killed itself: each gives it blocks to
	// queue behind its held executor.
	var ids []types.Hash
	var werr error
	for w := 0; werr == nil; w++ {
		select {
		case werr = <-exited:
		default:
			if w == 30 {
				_ = cmd.Process.Kill()
				t.Fatalf("the child never reached the pipelined point:\n%s", out.String())
			}
			ids = append(ids, c.waves(100+3*w, 1)...)
		}
	}
	var ee *osexec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed:\n%s", werr, out.String())
	}
	at, err := os.ReadFile(filepath.Join(c.dirs[3], "killed-at"))
	if err != nil {
		t.Fatalf("child killed without its mark: %v\n%s", err, out.String())
	}
	// The state is at the block before the one in flight, or at that
	// one if its write landed: nothing else.
	s, err := state.OpenPebble(filepath.Join(c.dirs[3], "db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := s.Latest()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(latest); got != string(at) && fmt.Sprint(latest+1) != string(at) {
		t.Fatalf("killed with block %s in flight, the state reopened at %d", at, latest)
	}
	c.start(3)
	ids = append(ids, c.waves(1000, 2)...)
	c.waitFor("the restarted node executes every wave", 60*time.Second, func() bool { return c.executedAll(c.nodes[3], ids) })
	h := c.sameChain()
	t.Logf("killed with block %s in flight, state reopened at %d; blocks up to %d equal on all nodes", at, latest, h)
}

// runCrashChild is the child of TestPipelinedCrashRestart: validator 3 on
// dir, bootstrapped from boot.
func runCrashChild(t *testing.T, dir, boot string) {
	var peers []peer.AddrInfo
	if err := json.Unmarshal([]byte(boot), &peers); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(dir, "killed-at")
	cfg := Config{Committee: testCommittee(t, 4), Key: validatorKey(3), Dir: dir, Workers: 1,
		Native: exec.NativeModules(), Bootstrap: peers}
	cfg.whilePipelined = func(h uint64) {
		// A kill, not a return: nothing after this point runs.
		if err := os.WriteFile(mark, []byte(fmt.Sprint(h)), 0o600); err != nil {
			t.Error(err)
			return
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // until the signal lands
	}
	nd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, nodes: []*Node{nd}}
	holdExecutor(c, nd, 2)()
	c.waitFor("the kill", 120*time.Second, func() bool { return false })
}
