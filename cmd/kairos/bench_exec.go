package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/runtime/exec"
)

// newBenchExecCmd measures the block executor on a module's workload:
// serial with prefetch (the baseline), 1 and 2 workers, and the state
// commit.
func newBenchExecCmd() *cobra.Command {
	var cfg exec.BenchConfig
	var wasmFile, watToken, goPkg, cpuProfile string
	cmd := &cobra.Command{
		Use:   "exec",
		Short: "Block executor: a module's workload at several conflict rates, serial vs 1 and 2 workers",
		Long: `Block executor: a module's workload at several conflict rates, serial vs 1 and 2 workers.
--module native: transfers of the native Go-coded token (no wasm);
--module wat:    increments of the WAT counter (--wasm), one instance per receiver;
--module go:     transfers of the Go token (--go-package, built with the local Go toolchain);
--module wattoken: transfers of the WAT token (--wat-token), the Go token's twin by hand.
wasm modules run on the pooled engine, warmed up before timing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			switch cfg.Module {
			case exec.BenchNative:
			case exec.BenchWAT:
				if cfg.Code, err = os.ReadFile(wasmFile); err != nil {
					return err
				}
			case exec.BenchWATToken:
				if cfg.Code, err = os.ReadFile(watToken); err != nil {
					return err
				}
			case exec.BenchGo:
				if cfg.Code, err = exec.BuildGoGuest(goPkg); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%w: --module %q (native, wat, go or wattoken)", exec.ErrBenchModule, cfg.Module)
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			_, err = exec.Bench(cmd.Context(), cfg, cmd.OutOrStdout())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Module, "module", exec.BenchNative, "workload module: native, wat, go or wattoken")
	f.StringVar(&wasmFile, "wasm", "contracts/counter_wat/counter.wasm", "the WAT counter's wasm (--module wat)")
	f.StringVar(&watToken, "wat-token", "contracts/token_wat/token.wasm", "the WAT token's wasm (--module wattoken)")
	f.StringVar(&goPkg, "go-package", "./contracts/token", "the Go token's package directory (--module go)")
	f.IntVar(&cfg.Accounts, "accounts", 10_000, "accounts with a balance")
	f.IntVar(&cfg.Txs, "txs", 5_000, "transactions per block (at most accounts/2)")
	f.Float64SliceVar(&cfg.ConflictRates, "conflict", []float64{0, 0.1, 1}, "shares of transactions to one hot account")
	f.IntVar(&cfg.Rounds, "rounds", 5, "interleaved executions per figure (the fastest is printed)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (workload set-up and commits too: focus on exec.(*Executor)) to this file")
	return cmd
}
