package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/node/devnet"
)

// procsReady bounds the wait for validator processes' APIs.
const procsReady = 30 * time.Second

// startProcs runs the devnet of cfg as processes of this binary.
func startProcs(ctx context.Context, cfg devnet.Config, p2pPort int) (*devnet.Procs, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	_, port, err := net.SplitHostPort(cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("--api %q: %w", cfg.APIAddr, err)
	}
	apiPort, err := strconv.Atoi(port)
	if err != nil || apiPort == 0 {
		return nil, fmt.Errorf("--api %q: --procs needs a fixed port", cfg.APIAddr)
	}
	return devnet.StartProcs(ctx, devnet.ProcsConfig{Bin: bin, Dir: cfg.Dir, Validators: cfg.Validators,
		APIPort: apiPort, P2PPort: p2pPort, Ready: procsReady})
}

func newDevnetCmd() *cobra.Command {
	var cfg devnet.Config
	var verbose, exit bool
	var contracts, counter string
	var accounts, rounds, p2pPort int
	var procs bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a local network of validators in this process (127.0.0.1 only) and show it working",
		Long: "devnet starts validators with pebble datastores under --dir, libp2p and the HTTP API on\n" +
			"127.0.0.1, deploys the example modules (the WAT counter, and the Go token from\n" +
			"--contracts/token.wasm when it exists: `make contracts` builds it) as transactions,\n" +
			"runs a token workload signed by several accounts through the APIs, verifies a balance's\n" +
			"Merkle proof against a checkpoint certificate, and runs until interrupted (--exit stops\n" +
			"after the demo). Restarting on the same --dir resumes the chain.\n\n" +
			"With --procs each validator is a `kairos node` process of this binary, from homes\n" +
			"under --dir (written like `kairos init` on the first run, resumed afterwards; each logs\n" +
			"to HOME/node.log); Ctrl-C stops them cleanly.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			dc := devnet.DemoConfig{Accounts: accounts, Rounds: rounds}
			var err error
			if dc.Counter, err = os.ReadFile(counter); err != nil {
				return fmt.Errorf("the WAT counter (run from the repository root, or set --counter): %w", err)
			}
			token := filepath.Join(contracts, "token.wasm")
			if dc.Token, err = os.ReadFile(token); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			out := cmd.OutOrStdout()
			var apis []string
			var stopped func() // prints each validator's final status
			if procs {
				p, err := startProcs(ctx, cfg, p2pPort)
				if err != nil {
					return err
				}
				defer func() {
					if err := p.Close(); err != nil {
						fmt.Fprintln(out, "devnet stop:", err)
					}
				}()
				apis, dc.Committee = p.APIs, p.Committee
				fmt.Fprintf(out, "devnet %s: %d validator processes started in %v\n", devnet.ChainID, len(apis), time.Since(start).Round(time.Millisecond))
				for i, u := range apis {
					fmt.Fprintf(out, "  validator %d  API %s/v1/status  home %s/%d  log %s\n", i, u, cfg.Dir, i, p.Logs[i])
				}
				stopped = func() {
					for i, u := range apis {
						if st, err := devnet.NewClient(u).Status(context.Background()); err == nil {
							fmt.Fprintf(out, "validator %d stops at height %d, root %s %s\n", i, st.Height, st.StateRoot, st.Halted)
						}
					}
				}
			} else {
				d, err := devnet.Start(cfg)
				if err != nil {
					return err
				}
				defer d.Close()
				apis, dc.Committee = d.APIs, d.Committee
				fmt.Fprintf(out, "devnet %s: %d validators started in %v\n", devnet.ChainID, len(d.Nodes), time.Since(start).Round(time.Millisecond))
				for i, u := range d.APIs {
					fmt.Fprintf(out, "  validator %d  API %s/v1/status  data %s/%d\n", i, u, cfg.Dir, i)
				}
				stopped = func() {
					for i, n := range d.Nodes {
						st := n.Status()
						fmt.Fprintf(out, "validator %d stops at height %d, root %s %s\n", i, st.Height, st.StateRoot, st.Err)
					}
				}
			}
			if dc.Token == nil {
				fmt.Fprintf(out, "no %s (make contracts builds it): the token workload is skipped\n", token)
			}
			demoStart := time.Now()
			dctx, cancel := context.WithTimeout(ctx, timeout)
			rep, err := devnet.Demo(dctx, out, apis, dc)
			cancel()
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			fmt.Fprintf(out, "first block of this run committed %v after `kairos devnet` started\n",
				(demoStart.Sub(start) + rep.FirstBlock).Round(time.Millisecond))
			if !exit {
				fmt.Fprintln(out, "devnet running; APIs:")
				for i, u := range apis {
					fmt.Fprintf(out, "  validator %d  %s/v1/status\n", i, u)
				}
				fmt.Fprintln(out, "Ctrl-C stops it.")
				<-ctx.Done()
			}
			stopped()
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "./.kairos/devnet", "data directory")
	cmd.Flags().IntVar(&cfg.Validators, "validators", 4, "number of validators")
	cmd.Flags().StringVar(&cfg.APIAddr, "api", "127.0.0.1:8600", "API address of validator 0 (validator i uses port+i; port 0 picks free ports)")
	cmd.Flags().StringVar(&contracts, "contracts", "bin/contracts", "directory of the built Go example modules")
	cmd.Flags().StringVar(&counter, "counter", "contracts/counter_wat/counter.wasm", "the WAT counter module")
	cmd.Flags().IntVar(&accounts, "accounts", 8, "token holders sending transfers")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "transfer rounds (one transfer per holder each)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "bound on the demo")
	cmd.Flags().BoolVar(&exit, "exit", false, "stop after the demo instead of running until interrupted")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	cmd.Flags().BoolVar(&procs, "procs", false, "run each validator as its own `kairos node` process")
	cmd.Flags().IntVar(&p2pPort, "p2p-port", 9700, "with --procs: libp2p port of validator 0 (validator i uses port+i)")
	return cmd
}
