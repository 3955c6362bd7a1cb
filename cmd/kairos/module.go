package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/vm"
)

// newModuleCmd groups the commands that work on wasm module files.
func newModuleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module",
		Short: "Inspect wasm modules",
	}
	cmd.AddCommand(newModuleCheckCmd())
	return cmd
}

func newModuleCheckCmd() *cobra.Command {
	var allow []string
	cmd := &cobra.Command{
		Use:   "check FILE.wasm",
		Short: "Validate and instrument a module as a deploy would, and report",
		Long: `check runs the deploy pipeline on a module file: it prints the code CID
(CIDv1 raw, sha2-256 of the file), size, imports, exports, every limit used
against its limit, the instrumented size and the instrumenter version,
whether the instrumented module compiles in wazero, then OK, or the rule
the module breaks (and exits non-zero).

Allowed imports are the network's, the ones a deploy accepts (the kairos
host functions and the virtual WASI), plus every --allow host function,
written module.name(params)->(results), e.g. --allow 'kairos.x(i32)->i32'
to try an ABI addition.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// deploy.Config, not a list of its own: check must accept
			// exactly what a deploy accepts (a Go guest imports both
			// kairos and WASI functions).
			cfg := deploy.Config()
			for _, a := range allow {
				h, err := deploy.ParseHostFunc(a)
				if err != nil {
					return err
				}
				cfg.Imports = append(cfg.Imports, h)
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return checkModule(cmd.OutOrStdout(), args[0], b, cfg)
		},
	}
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "allow a host function import: module.name(params)->(results) (repeatable)")
	return cmd
}

func compileCheck(instrumented []byte) error {
	ctx := context.Background()
	e, err := vm.NewEngine(ctx, vm.DefaultConfig())
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	_, err = e.Compile(ctx, instrumented)
	return err
}

// checkModule prints the report and returns the rejection, if any.
func checkModule(w io.Writer, name string, b []byte, cfg validate.Config) error {
	p, err := deploy.Prepare(b, cfg)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "file\t%s\n", name)
	fmt.Fprintf(tw, "code cid\t%s\n", p.CodeCID)
	fmt.Fprintf(tw, "size\t%d bytes\n", len(b))
	if m := p.Module; m != nil {
		fmt.Fprintf(tw, "imports\t%d\n", len(m.Imports))
		for _, im := range m.Imports {
			desc := im.Kind.String()
			if int(im.TypeIndex) < len(m.Types) && im.Kind == 0 {
				desc = m.Types[im.TypeIndex].String()
			}
			fmt.Fprintf(tw, "  %s.%s\t%s\n", im.Module, im.Name, desc)
		}
		fmt.Fprintf(tw, "exports\t%d\n", len(m.Exports))
		for _, e := range m.Exports {
			fmt.Fprintf(tw, "  %s\t%s %d\n", e.Name, e.Kind, e.Index)
		}
	}
	if len(p.Uses) > 0 {
		fmt.Fprintf(tw, "limits\tused / limit\n")
		for _, u := range p.Uses {
			fmt.Fprintf(tw, "  %s\t%d / %d\n", u.Rule, u.Used, u.Limit)
		}
	}
	if p.Instrumented != nil {
		fmt.Fprintf(tw, "instrumented\t%d bytes (%+.1f%%), instrumenter version %d\n",
			len(p.Instrumented), 100*float64(len(p.Instrumented)-len(b))/float64(len(b)), p.MeterVersion)
		// validate checks structure, not operand types: the engine's
		// compile is the last deploy step and catches the rest.
		start := time.Now()
		if err = compileCheck(p.Instrumented); err == nil {
			fmt.Fprintf(tw, "compiled\tok (wazero compiler engine, %d ms)\n", time.Since(start).Milliseconds())
		}
	}
	tw.Flush()
	if err != nil {
		fmt.Fprintf(w, "REJECTED: %v\n", err)
		return err
	}
	fmt.Fprintln(w, "OK")
	return nil
}
