package meter

import "github.com/kairos-network/kairos/runtime/wasm"

// Version identifies this instrumentation (cost table, charge points,
// injected code). Bump it whenever any output byte could change; callers
// store it beside the instrumented module.
const Version = 2

// Consensus parameters of the instrumentation.
const (
	// MaxCallDepth is the deepest nesting of guest function calls. It is
	// below the smallest engine limit (wazero's interpreter stops at 2 000
	// frames) so every engine traps at the same call.
	MaxCallDepth = 1_000
	// GrowPageGas is charged per page memory.grow asks for (granted or not).
	GrowPageGas = 1_024
	// BulkBytesPerGas: memory.copy, memory.fill and memory.init cost one gas
	// per this many bytes (rounded down) on top of their Cost.
	// It must be a power of two (the charge is a shift).
	BulkBytesPerGas = 16
	// FoldBulkMax is the longest constant length whose bulk-memory charge
	// is folded into its segment's static cost (see foldedBulk): a segment
	// that overspends runs at most this many bytes per bulk operation before
	// its next test.
	FoldBulkMax = 256
)

// Cost is the static gas of one instruction, charged with its segment:
//   - 0 for structure that compiles to nothing: nop, block, loop, else, end;
//   - 4 for call, 6 for call_indirect (frame setup, table check);
//   - 4 for integer division and remainder and float division and sqrt;
//   - 16 for memory.grow, 4 for memory.copy/fill/init (plus their dynamic
//     charge);
//   - 1 for everything else.
func Cost(op wasm.Opcode) uint64 {
	switch op {
	case wasm.OpNop, wasm.OpBlock, wasm.OpLoop, wasm.OpElse, wasm.OpEnd:
		return 0
	case wasm.OpCall:
		return 4
	case wasm.OpCallIndirect:
		return 6
	case 0x6D, 0x6E, 0x6F, 0x70, // i32.div_s/u, rem_s/u
		0x7F, 0x80, 0x81, 0x82, // i64.div_s/u, rem_s/u
		0x91, 0x95, 0x9F, 0xA3: // f32.sqrt, f32.div, f64.sqrt, f64.div
		return 4
	case wasm.OpMemoryGrow:
		return 16
	case wasm.OpMemoryCopy, wasm.OpMemoryFill, wasm.OpMemoryInit:
		return 4
	}
	return 1
}

// nanResult gives the float type of an instruction whose result may be a
// NaN with an engine-dependent payload, or 0.
func nanResult(op wasm.Opcode) wasm.ValType {
	switch {
	case op >= 0x8D && op <= 0x97: // f32 ceil floor trunc nearest sqrt add sub mul div min max
		return wasm.F32
	case op >= 0x9B && op <= 0xA5: // the same for f64
		return wasm.F64
	case op == 0xB6: // f32.demote_f64
		return wasm.F32
	case op == 0xBB: // f64.promote_f32
		return wasm.F64
	}
	return 0
}

// Canonical NaNs: positive, quiet, zero payload.
const (
	CanonicalNaN32 uint32 = 0x7FC00000
	CanonicalNaN64 uint64 = 0x7FF8000000000000
)
