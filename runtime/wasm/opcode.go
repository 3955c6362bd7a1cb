package wasm

import "fmt"

// Opcode identifies an instruction. Single-byte opcodes are their byte;
// opcodes behind the 0xFC prefix are 0xFC00 | sub-opcode.
type Opcode uint16

// Opcodes the rest of the runtime refers to by name. The full set the decoder
// accepts is the immediate table below.
const (
	OpUnreachable   Opcode = 0x00
	OpNop           Opcode = 0x01
	OpBlock         Opcode = 0x02
	OpLoop          Opcode = 0x03
	OpIf            Opcode = 0x04
	OpElse          Opcode = 0x05
	OpEnd           Opcode = 0x0B
	OpBr            Opcode = 0x0C
	OpBrIf          Opcode = 0x0D
	OpBrTable       Opcode = 0x0E
	OpReturn        Opcode = 0x0F
	OpCall          Opcode = 0x10
	OpCallIndirect  Opcode = 0x11
	OpDrop          Opcode = 0x1A
	OpSelect        Opcode = 0x1B
	OpLocalGet      Opcode = 0x20
	OpLocalSet      Opcode = 0x21
	OpLocalTee      Opcode = 0x22
	OpGlobalGet     Opcode = 0x23
	OpGlobalSet     Opcode = 0x24
	OpI32Load       Opcode = 0x28
	OpI64Load       Opcode = 0x29
	OpF32Load       Opcode = 0x2A
	OpF64Load       Opcode = 0x2B
	OpI32Store      Opcode = 0x36
	OpI64Store      Opcode = 0x37
	OpF32Store      Opcode = 0x38
	OpF64Store      Opcode = 0x39
	OpMemorySize    Opcode = 0x3F
	OpMemoryGrow    Opcode = 0x40
	OpI32Const      Opcode = 0x41
	OpI64Const      Opcode = 0x42
	OpF32Const      Opcode = 0x43
	OpF64Const      Opcode = 0x44
	OpI32Eqz        Opcode = 0x45
	OpI32Eq         Opcode = 0x46
	OpI32GtU        Opcode = 0x4B
	OpI32Add        Opcode = 0x6A
	OpI32Sub        Opcode = 0x6B
	OpI32Mul        Opcode = 0x6C
	OpI64LtS        Opcode = 0x53
	OpI64Add        Opcode = 0x7C
	OpI64Sub        Opcode = 0x7D
	OpI64Mul        Opcode = 0x7E
	OpI64DivU       Opcode = 0x80
	OpF32Eq         Opcode = 0x5B
	OpF64Eq         Opcode = 0x61
	OpF32Add        Opcode = 0x92
	OpF32Div        Opcode = 0x95
	OpF64Add        Opcode = 0xA0
	OpF64Div        Opcode = 0xA3
	OpI64ExtendI32U Opcode = 0xAD

	OpMemoryInit Opcode = 0xFC08
	OpDataDrop   Opcode = 0xFC09
	OpMemoryCopy Opcode = 0xFC0A
	OpMemoryFill Opcode = 0xFC0B
)

// Instructions of reference types that only the runtime's own passes emit
// (meter.Track's dirty-page table): Encode writes them, Decode keeps
// rejecting them, so a guest can never address a table or a reference.
const (
	OpTableGet  Opcode = 0x25
	OpTableSet  Opcode = 0x26
	OpRefNull   Opcode = 0xD0 // its immediate is always funcref
	OpRefIsNull Opcode = 0xD1
	OpRefFunc   Opcode = 0xD2
	OpTableFill Opcode = 0xFC11
)

// FuncRef is the funcref type of the globals those passes declare; Decode
// rejects it like every reference type.
const FuncRef ValType = 0x70

// immKind says which immediates follow an opcode.
type immKind uint8

const (
	immInvalid   immKind = iota // not an instruction we accept
	immNone                     // no immediate
	immBlockType                // s33 block type in A
	immIndex                    // one u32 index in A (label, function, local, global, data)
	immBrTable                  // vector of labels in Targets, default in A
	immCallInd                  // type index in A, table byte 0x00
	immMemArg                   // align in A, offset in B
	immMemByte                  // one reserved 0x00 memory byte
	immI32                      // s32 in A
	immI64                      // s64 in A
	immF32                      // 4 raw bytes in A
	immF64                      // 8 raw bytes in A
	immDataMem                  // data index in A, then memory byte 0x00 (memory.init)
	immTwoMem                   // two memory bytes 0x00 0x00 (memory.copy)
	immRefType                  // the funcref byte 0x70 (ref.null, encode only)
)

var immKinds [256]immKind
var fcKinds [12]immKind

// unsupported names the proposal an opcode we reject belongs to, so the
// error says which feature a module needs.
var unsupported = map[Opcode]string{}

func init() {
	for _, op := range []Opcode{0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B} {
		immKinds[op] = immNone
	}
	for _, op := range []Opcode{0x02, 0x03, 0x04} {
		immKinds[op] = immBlockType
	}
	for _, op := range []Opcode{0x0C, 0x0D, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24} {
		immKinds[op] = immIndex
	}
	immKinds[0x0E] = immBrTable
	immKinds[0x11] = immCallInd
	for op := 0x28; op <= 0x3E; op++ {
		immKinds[op] = immMemArg
	}
	immKinds[0x3F], immKinds[0x40] = immMemByte, immMemByte
	immKinds[0x41], immKinds[0x42] = immI32, immI64
	immKinds[0x43], immKinds[0x44] = immF32, immF64
	// Numeric instructions of MVP plus sign extension (0xC0-0xC4).
	for op := 0x45; op <= 0xC4; op++ {
		immKinds[op] = immNone
	}
	for sub := 0; sub <= 7; sub++ { // saturating truncation
		fcKinds[sub] = immNone
	}
	fcKinds[8] = immDataMem
	fcKinds[9] = immIndex
	fcKinds[10] = immTwoMem
	fcKinds[11] = immMemByte

	for op := Opcode(0x06); op <= 0x0A; op++ {
		unsupported[op] = "exception handling"
	}
	unsupported[0x18], unsupported[0x19] = "exception handling", "exception handling"
	unsupported[0x12], unsupported[0x13] = "tail calls", "tail calls"
	unsupported[0x14], unsupported[0x15] = "typed function references", "typed function references"
	unsupported[0x1C] = "reference types"
	unsupported[0x25], unsupported[0x26] = "reference types", "reference types"
	for op := Opcode(0xD0); op <= 0xD6; op++ {
		unsupported[op] = "reference types"
	}
	unsupported[0xFB] = "garbage collection"
	unsupported[0xFD] = "SIMD"
	unsupported[0xFE] = "threads (atomics)"
	for sub := Opcode(12); sub <= 17; sub++ {
		unsupported[0xFC00|sub] = "table mutation (reference types / bulk table ops)"
	}
}

// kind returns the immediate kind of op, or immInvalid.
func (op Opcode) kind() immKind {
	if op < 0x100 {
		return immKinds[op]
	}
	if op>>8 == 0xFC && op&0xFF < Opcode(len(fcKinds)) {
		return fcKinds[op&0xFF]
	}
	return immInvalid
}

// encodeOnly are the immediate kinds of the instructions Encode writes and
// Decode rejects.
var encodeOnly = map[Opcode]immKind{
	OpTableGet: immIndex, OpTableSet: immIndex, OpTableFill: immIndex,
	OpRefNull: immRefType, OpRefIsNull: immNone, OpRefFunc: immIndex,
}

// encodeKind is kind, extended with the encode-only instructions.
func (op Opcode) encodeKind() immKind {
	if k := op.kind(); k != immInvalid {
		return k
	}
	return encodeOnly[op]
}

// String gives the opcode in hex, which is what error messages need.
func (op Opcode) String() string {
	if op > 0xFF {
		return fmt.Sprintf("0x%02x 0x%02x", op>>8, op&0xFF)
	}
	return fmt.Sprintf("0x%02x", uint16(op))
}
