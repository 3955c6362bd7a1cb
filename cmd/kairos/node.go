package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/node/config"
	"github.com/kairos-network/kairos/runtime/exec"
)

func newInitCmd() *cobra.Command {
	var dir, chain string
	var n, p2pPort, apiPort int
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the homes of a local multi-process testnet (fresh keys, 127.0.0.1 ports)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			homes, err := config.WriteTestnet(dir, chain, n, p2pPort, apiPort)
			if err != nil {
				return err
			}
			for _, h := range homes {
				fmt.Fprintf(cmd.OutOrStdout(), "kairos node --home %s\n", h)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./.kairos/testnet", "directory of the homes")
	cmd.Flags().StringVar(&chain, "chain", "kairos-local", "chain id")
	cmd.Flags().IntVar(&n, "validators", 4, "number of validators")
	cmd.Flags().IntVar(&p2pPort, "p2p-port", 19000, "libp2p port of validator 0 (validator i uses port+i)")
	cmd.Flags().IntVar(&apiPort, "api-port", 18600, "API port of validator 0 (validator i uses port+i)")
	return cmd
}

func newNodeCmd() *cobra.Command {
	var home string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one validator from HOME/config.toml (kairos init writes it)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := config.Load(home)
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			nc := l.NodeConfig()
			nc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			nc.Native = exec.NativeModules() // wasm modules run on the node's own pooled engine
			ln, err := net.Listen("tcp", l.File.API)
			if err != nil {
				return err
			}
			n, err := node.New(nc)
			if err != nil {
				ln.Close()
				return err
			}
			defer n.Close()
			srv := &http.Server{Handler: api.Handler(n, nc.Logger), ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "validator %d of %s: API http://%s/v1/status, p2p %s\n",
				n.Index(), l.File.ChainID, l.File.API, l.File.Listen)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
			case <-n.Halted():
			}
			st := n.Status()
			fmt.Fprintf(cmd.OutOrStdout(), "stopping at height %d, root %s\n", st.Height, st.StateRoot)
			return n.Err()
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the validator's home (config.toml, key)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	_ = cmd.MarkFlagRequired("home")
	return cmd
}
