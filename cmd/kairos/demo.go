package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/state/statebench"
	"github.com/kairos-network/kairos/types"
)

// demoWorkload is small enough to run in a few seconds and large enough
// that pruning visibly gives disk space back.
func demoWorkload() statebench.Workload {
	return statebench.Workload{Keys: 10_000, Block: 100, ValueSize: 100, Modules: 4, Seed: 1}
}

const (
	demoUpdateBlocks = 200 // after the 100 fill blocks
	demoKeep         = 10  // K once the demo prunes
)

// newDemoCmd is `kairos demo` (what `make run` runs): a guided tour of the
// state store on disk.
func newDemoCmd() *cobra.Command {
	var home string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Commit a few hundred blocks to a fresh state store, prove and verify reads, prune",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd, filepath.Join(home, "demo"))
		},
	}
	cmd.Flags().StringVar(&home, "home", ".kairos", "data directory; the demo store is <home>/demo, recreated on each run")
	return cmd
}

func runDemo(cmd *cobra.Command, dir string) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	w := demoWorkload()
	last := w.FillBlocks() + demoUpdateBlocks
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "Kairos state demo: a versioned, content-addressed Merkle store on pebble\n")
	fmt.Fprintf(out, "store: %s (fresh)\n\n", dir)

	// Keep everything while committing, so that the prune step below has
	// history to remove.
	s, err := statebench.OpenPebbleStore(ctx, dir, state.Options{})
	if err != nil {
		return err
	}
	defer s.Close()

	fmt.Fprintf(out, "1. Commit %d blocks: %d blocks insert %d keys (%d-byte values), then %d blocks\n", last, w.FillBlocks(), w.Keys, w.ValueSize, demoUpdateBlocks)
	fmt.Fprintf(out, "   overwrite %d random keys each (seed %d). One synced batch per block.\n", w.Block, w.Seed)
	t0 := time.Now()
	for h := uint64(1); h <= last; h++ {
		if _, err := s.Commit(ctx, h, w.Writes(h)); err != nil {
			return err
		}
	}
	took := time.Since(t0)
	height, root := s.Latest()
	fmt.Fprintf(out, "   done in %s (%.0f writes/s)\n", took.Round(time.Millisecond), float64(int(last)*w.Block)/took.Seconds())
	fmt.Fprintf(out, "   version %d, state root %s\n", height, root)
	fmt.Fprintf(out, "   (the root is a sha2-256 multihash; it depends only on the set of key-value pairs)\n\n")

	present, absent := w.Key(42), w.Key(w.Keys+7)
	fmt.Fprintf(out, "2. Prove two keys at version %d and check the proofs against the root alone\n", height)
	for _, k := range []types.StateKey{present, absent} {
		if err := demoProve(ctx, out, s.Store, height, root, k); err != nil {
			return err
		}
	}
	fmt.Fprintln(out)

	fmt.Fprintf(out, "3. Prune: keep the last %d versions\n", demoKeep)
	before, err := demoDisk(ctx, s, dir)
	if err != nil {
		return err
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   before: %s on disk, %d stored nodes and values reachable from %d versions\n", before, rep.Reachable, rep.Versions)
	if err := s.Close(); err != nil {
		return err
	}
	// K can change between opens of the same database.
	s, err = statebench.OpenPebbleStore(ctx, dir, state.Options{KeepVersions: demoKeep})
	if err != nil {
		return err
	}
	t0 = time.Now()
	st, err := s.Prune(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   pruned in %s: %d records deleted, versions below %d are gone\n", time.Since(t0).Round(time.Millisecond), st.Deleted, st.Min)
	after, err := demoDisk(ctx, s, dir)
	if err != nil {
		return err
	}
	rep, err = s.Audit(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   after:  %s on disk (after a compaction), %d records reachable from %d versions\n", after, rep.Reachable, rep.Versions)
	fmt.Fprintf(out, "   audit (mark from retained roots, sweep all records): %d leaked, %d missing, %d flat-index mismatches\n",
		len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
	if _, err := s.Prove(ctx, 1, present); err != nil {
		fmt.Fprintf(out, "   reading version 1 now: %v\n", err)
	}
	if !rep.Clean() {
		return fmt.Errorf("demo: the audit found problems")
	}
	fmt.Fprintf(out, "\nDone. The store stays in %s; `make clean` removes it.\n", dir)
	return nil
}

// demoProve proves k, verifies the proof against root alone, and shows that
// a proof with one changed byte is refused.
func demoProve(ctx context.Context, out io.Writer, s *state.Store, height uint64, root types.Root, k types.StateKey) error {
	p, err := s.Prove(ctx, height, k)
	if err != nil {
		return err
	}
	enc, err := types.Encode(p)
	if err != nil {
		return err
	}
	if err := types.Verify(root, p); err != nil {
		return fmt.Errorf("demo: proof of %s does not verify: %w", k, err)
	}
	e := p.Entries[0]
	what := "absent  "
	if e.Present() {
		what = "present "
	}
	fmt.Fprintf(out, "   %s key %x...: proof of %d bytes, verified", what, k.Key, len(enc))
	if e.Present() {
		got, err := s.Get(ctx, k)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, e.Value) {
			return fmt.Errorf("demo: proof value differs from the store's value")
		}
		e.Value = append([]byte{}, e.Value...)
		e.Value[0] ^= 1
		fmt.Fprintf(out, " (value %x...)", got[:8])
	} else {
		// Claim the absent key holds a value.
		e.Value = []byte("forged")
	}
	p.Entries[0] = e
	if err := types.Verify(root, p); err == nil {
		return fmt.Errorf("demo: a tampered proof of %s verified", k)
	} else {
		fmt.Fprintf(out, "\n            tampered copy refused: %v\n", err)
	}
	return nil
}

// demoDisk compacts the store, so that deleted data has left the files, and
// returns its size on disk.
func demoDisk(ctx context.Context, s *statebench.PebbleStore, dir string) (string, error) {
	if err := s.Compact(ctx); err != nil {
		return "", err
	}
	n, err := statebench.DirBytes(dir)
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)), err
}
