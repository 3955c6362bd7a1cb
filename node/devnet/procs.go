package devnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node/config"
)

// ProcsConfig describes a devnet of validator processes (`kairos devnet
// --procs`): each validator is a `kairos node --home Dir/<i>` process.
type ProcsConfig struct {
	Bin        string // the kairos binary
	Dir        string // homes Dir/<i>, written by config.WriteTestnet unless Dir/0 has one
	Validators int    // default 4
	// APIPort and P2PPort are validator 0's ports on 127.0.0.1; validator
	// i uses port+i. Used only when the homes are written.
	APIPort, P2PPort int
	// Ready bounds the wait for every API to answer.
	Ready time.Duration
}

// Procs is a running devnet of processes.
type Procs struct {
	APIs      []string
	Committee *consensus.Committee
	Logs      []string // each validator's stdout and stderr, appended across runs
	cmds      []*exec.Cmd
	done      []chan error
}

// StartProcs writes the homes (or resumes the ones in cfg.Dir), starts one
// process per validator and waits until every API answers.
func StartProcs(ctx context.Context, cfg ProcsConfig) (_ *Procs, err error) {
	if cfg.Validators == 0 {
		cfg.Validators = 4
	}
	if cfg.Validators < 1 || cfg.Validators > MaxValidators || cfg.Dir == "" || cfg.Bin == "" || cfg.Ready <= 0 {
		return nil, fmt.Errorf("%w: %d validators (1..%d), dir %q, binary %q, ready %v", ErrConfig, cfg.Validators, MaxValidators, cfg.Dir, cfg.Bin, cfg.Ready)
	}
	homes := make([]string, cfg.Validators)
	for i := range homes {
		homes[i] = filepath.Join(cfg.Dir, fmt.Sprint(i))
	}
	if _, err := os.Stat(filepath.Join(homes[0], config.FileName)); errors.Is(err, os.ErrNotExist) {
		if cfg.APIPort <= 0 || cfg.P2PPort <= 0 {
			return nil, fmt.Errorf("%w: processes need fixed ports (API %d, p2p %d)", ErrConfig, cfg.APIPort, cfg.P2PPort)
		}
		if homes, err = config.WriteTestnet(cfg.Dir, ChainID, cfg.Validators, cfg.P2PPort, cfg.APIPort); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	p := &Procs{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for i, home := range homes {
		l, err := config.Load(home)
		if err != nil {
			return nil, fmt.Errorf("devnet: validator %d: %w", i, err)
		}
		if l.File.ChainID != ChainID || len(l.Committee.Validators) != cfg.Validators {
			return nil, fmt.Errorf("%w: %s holds chain %q of %d validators, want %q of %d", ErrConfig, home,
				l.File.ChainID, len(l.Committee.Validators), ChainID, cfg.Validators)
		}
		if i == 0 {
			p.Committee = l.Committee
		}
		p.APIs = append(p.APIs, "http://"+l.File.API)
		log := filepath.Join(home, "node.log")
		p.Logs = append(p.Logs, log)
		f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(cfg.Bin, "node", "--home", home)
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Start()
		f.Close() // the child holds its own descriptor
		if err != nil {
			return nil, fmt.Errorf("devnet: start validator %d: %w", i, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		p.cmds, p.done = append(p.cmds, cmd), append(p.done, done)
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Ready)
	defer cancel()
	for i, u := range p.APIs {
		c := NewClient(u)
		c.HTTP.Timeout = time.Second
		for {
			if _, err := c.Status(rctx); err == nil {
				break
			}
			if err := p.exited(); err != nil {
				return nil, err
			}
			select {
			case <-rctx.Done():
				return nil, fmt.Errorf("devnet: API of validator %d (%s) not answering: %w (log %s)", i, u, rctx.Err(), p.Logs[i])
			case <-time.After(readyPoll):
			}
		}
	}
	return p, nil
}

// readyPoll spaces the polls of the validators' APIs at start.
const readyPoll = 50 * time.Millisecond

// exited reports a validator process that ended on its own.
func (p *Procs) exited() error {
	for i, d := range p.done {
		select {
		case err := <-d:
			d <- err // keep it for Close
			return fmt.Errorf("devnet: validator %d exited: %v (log %s)", i, err, p.Logs[i])
		default:
		}
	}
	return nil
}

// Close interrupts every validator (a clean shutdown) and waits for them,
// killing one that has not stopped within shutdownMax. It returns the
// processes' exit errors.
func (p *Procs) Close() error {
	for _, c := range p.cmds {
		_ = c.Process.Signal(os.Interrupt)
	}
	var errs []error
	for i, d := range p.done {
		select {
		case err := <-d:
			if err != nil {
				errs = append(errs, fmt.Errorf("validator %d: %w (log %s)", i, err, p.Logs[i]))
			}
		case <-time.After(shutdownMax):
			_ = p.cmds[i].Process.Kill()
			<-d
			errs = append(errs, fmt.Errorf("validator %d: killed after %v (log %s)", i, shutdownMax, p.Logs[i]))
		}
	}
	p.cmds, p.done = nil, nil
	return errors.Join(errs...)
}
