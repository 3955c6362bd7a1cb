package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/node/config"
	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/sdk"
)

// clientFlags are the flags of every command that talks to a node's API.
type clientFlags struct {
	api        string // host:port
	genesis    string // a validator's config.toml: chain id and validators
	validators int    // without genesis: the devnet of this many validators
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.api, "api", "127.0.0.1:8600", "API address of the node to talk to")
	cmd.Flags().StringVar(&f.genesis, "genesis", "", "a validator's config.toml, whose chain id and validator list the client trusts (default: the local devnet's)")
	cmd.Flags().IntVar(&f.validators, "validators", 4, "without --genesis: the number of validators of the local devnet")
}

// committee is the validator set the client verifies checkpoints with.
func (f *clientFlags) committee() (*sdk.Committee, error) {
	if f.genesis == "" {
		if f.validators < 1 || f.validators > devnet.MaxValidators {
			return nil, fmt.Errorf("--validators %d not in 1..%d", f.validators, devnet.MaxValidators)
		}
		c := &sdk.Committee{ChainID: devnet.ChainID}
		for i := range f.validators {
			c.Validators = append(c.Validators, sdk.Validator{Key: devnet.Key(i).Public().(ed25519.PublicKey), Weight: 1})
		}
		return c, nil
	}
	var file config.File
	if _, err := toml.DecodeFile(f.genesis, &file); err != nil {
		return nil, fmt.Errorf("--genesis: %w", err)
	}
	if file.ChainID == "" || len(file.Validators) == 0 || len(file.Validators) > config.MaxValidators {
		return nil, fmt.Errorf("--genesis %s: needs chain_id and 1..%d validators", f.genesis, config.MaxValidators)
	}
	c := &sdk.Committee{ChainID: file.ChainID}
	for i, v := range file.Validators {
		pub, err := hex.DecodeString(v.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("--genesis %s: validator %d public_key", f.genesis, i)
		}
		c.Validators = append(c.Validators, sdk.Validator{Key: pub, Weight: v.Weight})
	}
	return c, nil
}

func (f *clientFlags) client() (*sdk.Client, error) {
	c, err := f.committee()
	if err != nil {
		return nil, err
	}
	return sdk.NewClient(f.api, c.ChainID, c), nil
}

func newStatusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print a node's progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			s, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			printStatus(cmd.OutOrStdout(), s)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func printStatus(w io.Writer, s *sdk.Status) {
	fmt.Fprintf(w, "validator   %d\nround       %d\nheight      %d\nstate root  %s\ncheckpoint  %d\nmempool     %d\npeers       %d\n",
		s.Validator, s.Round, s.Height, s.StateRoot, s.CheckpointHeight, s.Mempool, s.Peers)
	if s.Halted != "" {
		fmt.Fprintf(w, "HALTED      %s\n", s.Halted)
	}
}
