package main

import (
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/sdk"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create and show account keys (hex ed25519 seed files, mode 0600)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "new FILE",
		Short: "Generate a key into FILE (never overwrites) and print its address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := sdk.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := sdk.SaveKey(args[0], k); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Address())
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show FILE",
		Short: "Print the address and public key of the key in FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := sdk.LoadKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "address     %s\npublic key  %s\n", k.Address(), hex.EncodeToString(k.Public()))
			return nil
		},
	})
	return cmd
}
