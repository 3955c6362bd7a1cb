package main

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// The process's collector policy. A node's heap is mostly the state store's
// node cache, live for the whole run (~280 MB at 1M keys), and a 10k-key
// commit allocates ~85 MB per block, so with Go's default (GOGC 100) the
// collector marks the whole cache every three blocks, ~10% of a commit's
// CPU. --gogc and --memory-limit let an operator with memory to spare trade
// it for that CPU. The defaults stay the runtime's own (GOGC 100, no limit,
// or the GOGC / GOMEMLIMIT environment variables): every limit that kept
// `kairos bench state` under its 1 GiB peak RSS target measured no CPU
// saved (RATIONALE: "Why does kairos keep Go's default collector
// policy?").

// errGCSetting is returned for a --gogc or --memory-limit the runtime
// cannot take (no prefix: main prints "kairos:" before every error).
var errGCSetting = errors.New("bad GC setting")

// gcPolicy is the collector setting to apply: Percent as debug.SetGCPercent
// takes it (-1 is off), LimitMiB the soft memory limit (0: none); a false
// Set* leaves the runtime's own (environment or default) setting alone.
type gcPolicy struct {
	SetPercent, SetLimit bool
	Percent              int
	LimitMiB             int64
}

// addGCFlags puts the collector flags on the root command, so that every
// command that runs a store (node, devnet, bench, demo) takes them.
func addGCFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.Int("gogc", 100, "GOGC of the process: collect when the heap grew by this percentage of the live heap (-1: only at --memory-limit); when not given, the runtime's own (a GOGC environment variable or 100)")
	f.Int64("memory-limit", 0, "soft memory limit of the Go heap in MiB (0: none; pebble's block cache and memtables are outside it); when not given, the runtime's own (a GOMEMLIMIT environment variable or none)")
}

// resolveGC reads the flags given on cmd's command line.
func resolveGC(cmd *cobra.Command) (gcPolicy, error) {
	f := cmd.Flags()
	percent, err := f.GetInt("gogc")
	if err != nil {
		return gcPolicy{}, err
	}
	limit, err := f.GetInt64("memory-limit")
	if err != nil {
		return gcPolicy{}, err
	}
	p := gcPolicy{SetPercent: f.Changed("gogc"), SetLimit: f.Changed("memory-limit"), Percent: percent, LimitMiB: limit}
	if p.SetPercent && p.Percent < -1 {
		return gcPolicy{}, fmt.Errorf("%w: --gogc %d is below -1", errGCSetting, p.Percent)
	}
	if p.SetLimit && (p.LimitMiB < 0 || p.LimitMiB > math.MaxInt64>>20) {
		return gcPolicy{}, fmt.Errorf("%w: --memory-limit %d MiB out of range", errGCSetting, p.LimitMiB)
	}
	// GOGC off without a limit lets the heap grow until the OS kills the
	// process; an environment GOMEMLIMIT does not count, as it is easily
	// lost between a shell and a service file.
	if p.SetPercent && p.Percent == -1 && p.LimitMiB == 0 {
		return gcPolicy{}, fmt.Errorf("%w: --gogc -1 needs a --memory-limit", errGCSetting)
	}
	return p, nil
}

// applyGC sets the policy given on cmd's command line in the runtime.
func applyGC(cmd *cobra.Command) error {
	p, err := resolveGC(cmd)
	if err != nil {
		return err
	}
	if p.SetLimit {
		limit := int64(math.MaxInt64) // the runtime's "no limit"
		if p.LimitMiB > 0 {
			limit = p.LimitMiB << 20
		}
		debug.SetMemoryLimit(limit)
	}
	if p.SetPercent {
		debug.SetGCPercent(p.Percent)
	}
	return nil
}
