package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/node/devnet"
)

func newDevnetCmd() *cobra.Command {
	var cfg devnet.Config
	var verbose bool
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a local network of validators in this process (127.0.0.1 only)",
		Long: "devnet starts validators with pebble datastores under --dir, libp2p and the HTTP API on\n" +
			"127.0.0.1, and runs until interrupted. Restarting on the same --dir resumes the chain.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			start := time.Now()
			d, err := devnet.Start(cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "devnet %s: %d validators started in %v\n", devnet.ChainID, len(d.Nodes), time.Since(start).Round(time.Millisecond))
			for i, u := range d.APIs {
				fmt.Fprintf(out, "  validator %d  API %s/v1/status  data %s/%d\n", i, u, cfg.Dir, i)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			for i, n := range d.Nodes {
				st := n.Status()
				fmt.Fprintf(out, "validator %d stops at height %d, root %s %s\n", i, st.Height, st.StateRoot, st.Err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "./.kairos/devnet", "data directory")
	cmd.Flags().IntVar(&cfg.Validators, "validators", 4, "number of validators")
	cmd.Flags().StringVar(&cfg.APIAddr, "api", "127.0.0.1:8600", "API address of validator 0 (validator i uses port+i)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	return cmd
}
