// Command kairos is the one binary of Kairos: it runs a node or a local
// devnet, manages keys, deploys and calls modules, and runs the benchmarks
// and the simulator.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kairos:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kairos",
		Short:         "Kairos: a WebAssembly execution network with fair timestamp ordering",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --gogc and --memory-limit (gc.go) apply to every command;
		// they matter to those that run a store or a node.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyGC(cmd) },
	}
	addGCFlags(root)
	root.AddCommand(newBenchCmd())
	root.AddCommand(newModuleCmd())
	root.AddCommand(newSimCmd())
	root.AddCommand(newDemoCmd())
	root.AddCommand(newDevnetCmd())
	root.AddCommand(newInitCmd())
	root.AddCommand(newNodeCmd())
	root.AddCommand(newKeysCmd())
	root.AddCommand(newDeployCmd())
	root.AddCommand(newCallCmd())
	root.AddCommand(newQueryCmd())
	root.AddCommand(newStatusCmd())
	return root
}

// newBenchCmd is the parent of the benchmark commands; each prints a table
// with its baseline measured in the same run.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run a benchmark and print a table with its baseline",
	}
	cmd.AddCommand(newBenchStateCmd())
	cmd.AddCommand(newBenchExecCmd())
	cmd.AddCommand(newBenchNodeCmd())
	return cmd
}
