package main

import (
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/types"
)

func newQueryCmd() *cobra.Command {
	var cf clientFlags
	var prove bool
	cmd := &cobra.Command{
		Use:   "query MODULE KEY_HEX",
		Short: "Read a state value; with --prove, verified against the latest checkpoint certificate",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, err := types.ParseAddress(args[0])
			if err != nil {
				return err
			}
			key, err := hex.DecodeString(args[1])
			if err != nil {
				return fmt.Errorf("KEY must be hex: %w", err)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			k := types.StateKey{Module: mod, Key: key}
			w := cmd.OutOrStdout()
			if !prove {
				v, h, err := c.Get(cmd.Context(), k)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "height   %d (unverified)\nvalue    %s\n", h, valueString(v))
				return nil
			}
			v, err := c.Query(cmd.Context(), k)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "height   %d (checkpoint, %d-validator committee)\nroot     %s\nvalue    %s\nproof    verified\n",
				v.Height, len(c.Committee.Validators), v.Root, valueString(v.Value))
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&prove, "prove", false, "verify the value with a Merkle proof against a quorum-signed checkpoint")
	return cmd
}

func valueString(v []byte) string {
	if v == nil {
		return "(absent)"
	}
	return hex.EncodeToString(v)
}
