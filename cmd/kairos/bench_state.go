package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/state/statebench"
)

// newBenchStateCmd is `kairos bench state`: the state store against its
// targets, beside the pebble floor measured in the same run.
func newBenchStateCmd() *cobra.Command {
	cfg := statebench.DefaultConfig()
	var dir string
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Benchmark the state store (commit, reads, proofs, disk with and without pruning) against the pebble floor",
		Long: `Runs the same deterministic workload four times: as plain pebble key-value
batches (the floor), through the state store with pruning on, with pruning off,
and with pruning on and commits pipelined (CommitAsync: a block's tree update
runs while the block before is written); every commit is synced. Prints one table with the targets of state.md and
the disk size over the run. The warm pruning store is then exported as a
snapshot, closed, and the snapshot imported into a fresh store twice, as on a
syncing node that runs nothing else: as from peers (verify and stage, two chunks
per core in flight, then install) and as a local chunk stream (verify on every
core and install, nothing staged); the streamed import is also timed once while
the pruning store is still open, for comparison. With --proof-keys a second tree of that many keys is written
bottom-up from sorted keys to measure proofs at that size. Scale it down with
--keys, --block and --blocks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scratch, err := os.MkdirTemp(dir, "kairos-bench-state-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			cfg.Dir = scratch
			cfg.Progress = cmd.ErrOrStderr()
			if err := statebench.Run(cmd.Context(), cfg, cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("bench state: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Workload.Keys, "keys", cfg.Workload.Keys, "live keys in the tree")
	f.IntVar(&cfg.Workload.Block, "block", cfg.Workload.Block, "writes per block")
	f.IntVar(&cfg.Blocks, "blocks", cfg.Blocks, "update blocks after the fill")
	f.IntVar(&cfg.Workload.ValueSize, "value-size", cfg.Workload.ValueSize, "bytes per value")
	f.Uint64Var(&cfg.Workload.Seed, "seed", cfg.Workload.Seed, "workload seed")
	f.Uint64Var(&cfg.Keep, "keep", cfg.Keep, "K: versions kept by the pruning store")
	f.IntVar(&cfg.Samples, "samples", cfg.Samples, "disk size samples")
	f.IntVar(&cfg.ReadSamples, "read-keys", cfg.ReadSamples, "random keys read twice for the first-read and read-again rows")
	f.IntVar(&cfg.WarmReadKeys, "warm-read-keys", cfg.WarmReadKeys, "keys of the warm read (their blocks must fit the block caches: 128 MiB for the store, 8 MiB for the floor)")
	f.IntVar(&cfg.ProofKeys, "proof-keys", cfg.ProofKeys, "also build a tree of this many keys (sorted by key path and written bottom-up by state.Seed, not by commits) to measure proofs at that size; 10000000 for the 10M target takes minutes")
	f.StringVar(&dir, "dir", "", "directory for the scratch stores (default: the system temp dir); use a real disk, not tmpfs")
	return cmd
}
