package main

import (
	"encoding/hex"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/sdk"
	"github.com/kairos-network/kairos/types"
)

func newCallCmd() *cobra.Command {
	var cf clientFlags
	var keyFile string
	cmd := &cobra.Command{
		Use:   "call MODULE METHOD [ARGS_HEX]",
		Short: "Call a module: simulate for the access list, sign, submit, wait for the receipt",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			mod, err := types.ParseAddress(args[0])
			if err != nil {
				return err
			}
			var in []byte
			if len(args) == 3 {
				if in, err = hex.DecodeString(args[2]); err != nil {
					return fmt.Errorf("ARGS must be hex: %w", err)
				}
			}
			k, c, err := keyAndClient(&cf, keyFile)
			if err != nil {
				return err
			}
			r, err := c.Call(cmd.Context(), k, mod, args[1], in)
			if r != nil {
				printResult(cmd.OutOrStdout(), r)
			}
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&keyFile, "key", "", "the sender's key file (kairos keys new)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func keyAndClient(cf *clientFlags, keyFile string) (*sdk.Key, *sdk.Client, error) {
	k, err := sdk.LoadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := cf.client()
	return k, c, err
}

func printResult(w io.Writer, r *sdk.TxResult) {
	if r.ID != (types.Hash{}) {
		fmt.Fprintf(w, "tx       %s\n", r.ID)
	}
	fmt.Fprintf(w, "height   %d (%s)\nstatus   %s\ngas      %d\nreturn   %s\n", r.Height, r.Status, r.Receipt.Status, r.Receipt.GasUsed, hex.EncodeToString(r.Receipt.Return))
	if r.Receipt.Error != "" {
		fmt.Fprintf(w, "error    %s\n", r.Receipt.Error)
	}
	for _, e := range r.Receipt.Events {
		fmt.Fprintf(w, "event    %s %s %s\n", e.Module, e.Topic, hex.EncodeToString(e.Data))
	}
}
