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
	h, _ := n.store.Latest()
	env := exec.BlockEnv{Height: h + 1, Time: now}
	res, err := n.x.Simulate(ctx, n.store, env, tx)
	if err != nil {
		return nil, 0, fmt.Errorf("node: simulate: %w", err)
	}
	return res, h, nil
}

// ModuleInfo describes a deployed module instance.
type ModuleInfo struct {
	Height uint64
	Code   []byte        // CID bytes of the original code
	Admin  types.Address // zero: immutable
	Size   int           // bytes of the original code
}

// Module reads the record of the module instance at a on the latest state.
func (n *Node) Module(ctx context.Context, a types.Address) (*ModuleInfo, error) {
	h, _ := n.store.Latest()
	raw, err := n.store.Get(ctx, types.StateKey{Module: exec.ModulesModule, Key: a[:]})
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
	// exec.ModulesModule); its size is the sum of theirs.
	size := 0
	err = n.store.Iterate(ctx, exec.ModulesModule, append([]byte{'c'}, rec.Code...), func(_, v []byte) error {
		size += len(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &ModuleInfo{Height: h, Code: rec.Code, Admin: rec.Admin, Size: size}, nil
}
