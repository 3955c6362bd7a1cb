package main

import (
	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/runtime/exec"
)

// newBenchExecCmd measures the block executor on token transfers: serial
// with prefetch (the baseline), 1 and 2 workers, and the state commit.
func newBenchExecCmd() *cobra.Command {
	var cfg exec.BenchConfig
	cmd := &cobra.Command{
		Use:   "exec",
		Short: "Block executor: transfers at several conflict rates, serial vs 1 and 2 workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := exec.Bench(cmd.Context(), cfg, cmd.OutOrStdout())
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Accounts, "accounts", 10_000, "accounts with a balance")
	f.IntVar(&cfg.Txs, "txs", 5_000, "transfers per block (at most accounts/2)")
	f.Float64SliceVar(&cfg.ConflictRates, "conflict", []float64{0, 0.1, 1}, "shares of transfers to one hot account")
	f.IntVar(&cfg.Rounds, "rounds", 5, "interleaved executions per figure (the fastest is printed)")
	return cmd
}
