package meter

import "github.com/kairos-network/kairos/runtime/wasm"

// InstrumentPerInstr is the reference metering for tests: every
// instruction charged on its own, just before it runs. With enough gas it
// must use exactly the gas of segment charging.
func InstrumentPerInstr(m *wasm.Module) (*wasm.Module, error) { return instrument(m, true) }
