package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// Simulate runs tx alone on the latest state, as the next block would run
// it, with access recording on: it returns the receipt and the exact access
// list, and writes nothing. tx may be unsigned (empty Sig, but a Sender):
// clients simulate to learn the access list they must sign. Everything else
// Validate checks applies, against the node's clock.
func (n *Node) Simulate(ctx context.Context, tx *types.Tx) (*exec.SimResult, uint64, error) {
	now := n.clock.Now()
	lim := n.cfg.Mempool.Limits
	if lim == (types.TxLimits{}) {
		lim = types.DefaultTxLimits
	}
	if err := tx.Validate(n.cfg.Committee.ChainID, now, lim); err != nil {
		// The signature is checked last, so an unsigned tx that fails only
		// on it passed every other rule.
		unsigned := len(tx.Sig) == 0 && len(tx.Body.Sender) == ed25519.PublicKeySize
		if !unsigned || !errors.Is(err, types.ErrTxSignature) {
			return nil, 0, err
		}
	}
	// The executor's latest version, not the served height: the next block
	// executes on it, so that is what an access list must fit. A block
	// committed while the simulation read would mix two versions; reading
	// the version before and after finds that, and the simulation is run
	// again (a commit per block leaves a quiet moment soon).
	for try := 0; ; try++ {
		h, _ := n.store.Latest()
		env := exec.BlockEnv{Height: h + 1, Time: now}
		res, err := n.x.Simulate(ctx, n.store, env, tx)
		if err != nil {
			return nil, 0, fmt.Errorf("node: simulate: %w", err)
		}
		if after, _ := n.store.Latest(); after == h || try == simulateTries-1 {
			return res, h, nil
		}
	}
}

// simulateTries bounds the runs of a simulation that keeps overlapping
// block commits; the last run's result is returned (its reads then span
// two adjacent versions, which a simulation may: it is advice).
const simulateTries = 3

// ModuleInfo describes a deployed module instance.
type ModuleInfo struct {
	Height uint64
	Code   []byte        // CID bytes of the original code
	Admin  types.Address // zero: immutable
	Size   int           // bytes of the original code
}

// Module reads the record of the module instance at a at the served
// height (like State, Block and Receipt), so a client can prove its state
// at the height it is told.
func (n *Node) Module(ctx context.Context, a types.Address) (*ModuleInfo, error) {
	h, _ := n.servedLatest()
	v, err := n.store.View(ctx, h)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	raw, err := v.Get(ctx, types.StateKey{Module: exec.ModulesModule, Key: a[:]})
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: no module at %s", ErrNotFound, a)
	}
	var rec exec.ModuleRecord
	if err := types.Decode(raw, &rec); err != nil {
		return nil, fmt.Errorf("node: module record of %s: %w", a, err)
	}
	// The original code is stored in chunks under 'c' ‖ CID ‖ u16 (see
	// exec.ModulesModule), at most exec.CodeChunksMax; its size is the sum
	// of theirs.
	size := 0
	for i := range exec.CodeChunksMax {
		c, err := v.Get(ctx, types.StateKey{Module: exec.ModulesModule, Key: exec.CodeChunkKey(rec.Code, i)})
		if err != nil {
			return nil, err
		}
		if c == nil {
			break
		}
		size += len(c)
	}
	return &ModuleInfo{Height: h, Code: rec.Code, Admin: rec.Admin, Size: size}, nil
}
