package exec

import (
	"context"

	"github.com/kairos-network/kairos/types"
)

// MuxRunner is the node's Runner: a call to one of its native modules runs
// in the NativeRunner, every other transaction (calls to deployed modules
// and the module lifecycle) in the WasmRunner. The system modules
// (AccountsModule, ModulesModule) are not modules a transaction calls: the
// executor keeps nonces and the wasm runner keeps module records.
type MuxRunner struct {
	native *NativeRunner
	wasm   *WasmRunner
}

// NewRunner returns a MuxRunner of native modules (copied; nil for none)
// and wasm modules on e.
func NewRunner(native map[types.Address]NativeModule, e Engine) *MuxRunner {
	return &MuxRunner{native: NewNativeRunner(native), wasm: NewWasmRunner(e)}
}

// Run implements Runner.
func (m *MuxRunner) Run(ctx context.Context, o Overlay, tx *types.Tx, env TxEnv) Result {
	if _, ok := m.native.modules[tx.Body.Payload.Module]; ok && tx.Body.Payload.Kind == types.Call {
		return m.native.Run(ctx, o, tx, env)
	}
	return m.wasm.Run(ctx, o, tx, env)
}
