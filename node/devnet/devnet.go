// Package devnet runs a local network of validators in one process: real
// nodes with pebble datastores under one directory, libp2p and the HTTP API
// on 127.0.0.1 only. Validator keys derive from the validator index, so a
// devnet restarted on the same directory resumes where it stopped.
//
// Each node runs its own MuxRunner: wasm modules deployed by transactions
// on one pooled wazero engine per node, plus the runtime's native test set
// (exec.NativeModules: token, counter, scan) at their fixed addresses.
// Demo deploys the example modules and runs a workload through the APIs.
//
// StartProcs runs a devnet as processes instead (`kairos devnet --procs`):
// one `kairos node --home` per validator from homes that config.WriteTestnet
// writes on the first run, resumed afterwards; Procs.Close interrupts them
// (a clean shutdown) and kills one that does not stop in time.
package devnet

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node"
	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/runtime/exec"
)

// ChainID of every devnet.
const ChainID = "kairos-devnet"

// MaxValidators bounds a devnet's size (one process, a shared machine).
const MaxValidators = 16

// shutdownMax bounds how long Close waits for an API's requests to end.
const shutdownMax = 5 * time.Second

// ErrConfig reports an unusable devnet configuration.
var ErrConfig = errors.New("devnet: bad config")

// Config describes a devnet.
type Config struct {
	Dir        string // data directory; validator i uses Dir/<i>
	Validators int    // default 4
	// APIAddr is where validator 0's API listens ("127.0.0.1:0" picks a
	// port); validator i listens on the next ports when the port is fixed.
	APIAddr string
	Params  *consensus.Params // nil = consensus.DefaultParams
	Logger  *slog.Logger
	// GossipBatchDelay is every validator's node.Config.GossipBatchDelay
	// (0 = node.DefaultGossipBatchDelay).
	GossipBatchDelay time.Duration
}

// Devnet is a running local network.
type Devnet struct {
	Nodes     []*node.Node
	APIs      []string // base URLs, http://127.0.0.1:port
	Committee *consensus.Committee
	servers   []*http.Server
}

// Key returns the deterministic key of validator i.
func Key(i int) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(fmt.Sprintf("kairos-devnet-validator-%d", i)))
	return ed25519.NewKeyFromSeed(s[:])
}

// Start starts every validator and its API.
func Start(cfg Config) (_ *Devnet, err error) {
	if cfg.Validators == 0 {
		cfg.Validators = 4
	}
	if cfg.Validators < 1 || cfg.Validators > MaxValidators || cfg.Dir == "" {
		return nil, fmt.Errorf("%w: %d validators (1..%d), dir %q", ErrConfig, cfg.Validators, MaxValidators, cfg.Dir)
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(cfg.APIAddr)
	if err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("%w: API address %q must be 127.0.0.1:port", ErrConfig, cfg.APIAddr)
	}
	var basePort int
	if _, err := fmt.Sscan(port, &basePort); err != nil {
		return nil, fmt.Errorf("%w: API port %q", ErrConfig, port)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := consensus.DefaultParams()
	if cfg.Params != nil {
		p = *cfg.Params
	}
	vals := make([]consensus.Validator, cfg.Validators)
	for i := range vals {
		vals[i] = consensus.Validator{Key: Key(i).Public().(ed25519.PublicKey), Weight: 1}
	}
	comm, err := consensus.NewCommittee(ChainID, 0, vals, p, nil)
	if err != nil {
		return nil, err
	}
	d := &Devnet{Committee: comm}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	var boot []peer.AddrInfo
	for i := range vals {
		n, err := node.New(node.Config{Committee: comm, Key: Key(i), Dir: filepath.Join(cfg.Dir, fmt.Sprint(i)),
			Native: exec.NativeModules(), Bootstrap: boot, Logger: cfg.Logger, GossipBatchDelay: cfg.GossipBatchDelay})
		if err != nil {
			return nil, fmt.Errorf("devnet: validator %d: %w", i, err)
		}
		d.Nodes = append(d.Nodes, n)
		boot = append(boot, n.AddrInfo())
		addr := cfg.APIAddr
		if basePort != 0 {
			addr = fmt.Sprintf("127.0.0.1:%d", basePort+i)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("devnet: API of validator %d: %w", i, err)
		}
		srv := api.NewServer(n, cfg.Logger)
		d.servers = append(d.servers, srv)
		d.APIs = append(d.APIs, "http://"+ln.Addr().String())
		go func() { _ = srv.Serve(ln) }()
	}
	return d, nil
}

// Close stops the APIs and the validators.
func (d *Devnet) Close() error {
	var errs []error
	for _, s := range d.servers {
		// Event streams end when Shutdown starts (api.NewServer); the
		// bound only covers a client that stops reading a response.
		ctx, cancel := context.WithTimeout(context.Background(), shutdownMax)
		errs = append(errs, s.Shutdown(ctx))
		cancel()
	}
	for _, n := range d.Nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}
