package main

import (
	"encoding/hex"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/types"
)

func newDeployCmd() *cobra.Command {
	var cf clientFlags
	var keyFile, initArgs string
	var immutable bool
	cmd := &cobra.Command{
		Use:   "deploy FILE.wasm",
		Short: "Deploy a module (admin: the sender, or none with --immutable) and print its address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			in, err := hex.DecodeString(initArgs)
			if err != nil {
				return fmt.Errorf("--init must be hex: %w", err)
			}
			k, c, err := keyAndClient(&cf, keyFile)
			if err != nil {
				return err
			}
			admin := k.Address()
			if immutable {
				admin = types.Address{}
			}
			addr, r, err := c.Deploy(cmd.Context(), k, code, in, admin)
			if r != nil {
				printResult(cmd.OutOrStdout(), r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "module   %s\n", addr)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&keyFile, "key", "", "the deployer's key file (kairos keys new)")
	cmd.Flags().StringVar(&initArgs, "init", "", "hex input of the module's init")
	cmd.Flags().BoolVar(&immutable, "immutable", false, "deploy without an admin: the module can never be upgraded")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
