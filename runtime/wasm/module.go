package wasm

import (
	"fmt"
	"strings"
)

// ValType is a value type byte.
type ValType byte

// The number types; vector and reference types are not supported.
const (
	I32 ValType = 0x7F
	I64 ValType = 0x7E
	F32 ValType = 0x7D
	F64 ValType = 0x7C
)

// Block types that are not type indices, as the s33 values stored in
// Instr.A of block, loop and if.
const (
	BlockEmpty int64 = -64 // 0x40
	BlockI32   int64 = -1  // 0x7F
	BlockI64   int64 = -2
	BlockF32   int64 = -3
	BlockF64   int64 = -4
)

// BlockOf returns the s33 block type for a single result type.
func BlockOf(t ValType) int64 { return int64(t) - 0x80 }

// ExternKind is the kind of an import or export.
type ExternKind byte

// Extern kinds.
const (
	ExternFunc   ExternKind = 0
	ExternTable  ExternKind = 1
	ExternMemory ExternKind = 2
	ExternGlobal ExternKind = 3
)

// Section ids.
const (
	SecCustom    byte = 0
	SecType      byte = 1
	SecImport    byte = 2
	SecFunction  byte = 3
	SecTable     byte = 4
	SecMemory    byte = 5
	SecGlobal    byte = 6
	SecExport    byte = 7
	SecStart     byte = 8
	SecElement   byte = 9
	SecCode      byte = 10
	SecData      byte = 11
	SecDataCount byte = 12
)

// Module is a decoded module. Slices are owned by the Module.
type Module struct {
	Types     []FuncType
	Imports   []Import
	Funcs     []uint32 // type index of each defined function
	Tables    []Limits // funcref tables
	Memories  []Limits
	Globals   []Global
	Exports   []Export
	Start     *uint32
	Elements  []Element
	DataCount *uint32
	Code      []Code
	Data      []Data
	Customs   []Custom

	// Layout, when set, holds the LEB128 widths of the decoded bytes that
	// were longer than necessary, so that Encode reproduces the input byte
	// for byte. A pass that changes the module must set it to nil (Encode
	// never writes an invalid integer from a stale Layout, but the padding
	// would land on the wrong integers).
	Layout *Layout
}

// Layout records non-minimal LEB128 widths by the ordinal of the integer in
// the byte stream (the order Decode reads and Encode writes them).
type Layout struct {
	n   int
	pad map[int]uint8
}

func (l *Layout) record(width, minimal int) {
	if width != minimal {
		if l.pad == nil {
			l.pad = map[int]uint8{}
		}
		l.pad[l.n] = uint8(width)
	}
	l.n++
}

// FuncType is a function signature.
type FuncType struct {
	Params, Results []ValType
}

// Equal reports whether two signatures are identical.
func (t FuncType) Equal(u FuncType) bool {
	return string(valBytes(t.Params)) == string(valBytes(u.Params)) &&
		string(valBytes(t.Results)) == string(valBytes(u.Results))
}

func valBytes(v []ValType) []byte {
	b := make([]byte, len(v))
	for i, t := range v {
		b[i] = byte(t)
	}
	return b
}

// Limits are table or memory limits, in entries or 64 KiB pages.
type Limits struct {
	Min    uint32
	Max    uint32
	HasMax bool
}

// Import is one import. Only the field of its Kind is meaningful.
type Import struct {
	Module, Name string
	Kind         ExternKind
	TypeIndex    uint32 // ExternFunc
	Limits       Limits // ExternTable, ExternMemory
	Global       GlobalType
}

// GlobalType is a global's value type and mutability.
type GlobalType struct {
	Type    ValType
	Mutable bool
}

// Global is a defined global with its constant initializer.
type Global struct {
	GlobalType
	Init Instr // one of i32/i64/f32/f64.const or global.get
}

// Export is one export.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32
}

// Element is an active element segment for table 0 (the MVP form, flag 0):
// the only form that needs no reference-types or table-mutation support.
type Element struct {
	Offset Instr // i32.const or global.get
	Funcs  []uint32
}

// Code is a defined function's locals and body. Body excludes the final end.
type Code struct {
	Locals []LocalDecl
	Body   []Instr
}

// NumLocals returns the number of declared locals (not counting params).
func (c *Code) NumLocals() uint64 {
	var n uint64
	for _, l := range c.Locals {
		n += uint64(l.Count)
	}
	return n
}

// LocalDecl declares Count locals of one type.
type LocalDecl struct {
	Count uint32
	Type  ValType
}

// Data segment modes, as their binary flags.
const (
	DataActive         uint32 = 0 // active, memory 0 implied
	DataPassive        uint32 = 1
	DataActiveExplicit uint32 = 2 // active with an explicit memory index (must be 0)
)

// Data is a data segment.
type Data struct {
	Flags  uint32
	Offset Instr // active segments only
	Init   []byte
}

// Custom is a custom section and the id of the non-custom section it
// followed (0 when it came first), so it can be written back in place.
type Custom struct {
	After byte
	Name  string
	Data  []byte
}

// Instr is one instruction. Which immediates are set depends on Op:
// block types (s33 as int64 bits), indices, i32/i64 constants (sign-extended
// bits), f32/f64 constants (raw bits) and memarg alignment live in A; the
// memarg offset lives in B; br_table keeps its labels in Targets and its
// default label in A.
type Instr struct {
	Op      Opcode
	A, B    uint64
	Targets []uint32
}

// NumImportedFuncs counts function imports; defined functions follow them in
// the function index space.
func (m *Module) NumImportedFuncs() int {
	n := 0
	for _, im := range m.Imports {
		if im.Kind == ExternFunc {
			n++
		}
	}
	return n
}

// NumImportedGlobals counts global imports.
func (m *Module) NumImportedGlobals() int {
	n := 0
	for _, im := range m.Imports {
		if im.Kind == ExternGlobal {
			n++
		}
	}
	return n
}

// FuncType returns the signature of function index fi and whether it exists.
func (m *Module) FuncType(fi uint32) (FuncType, bool) {
	var ti uint32
	n := uint32(0)
	found := false
	for _, im := range m.Imports {
		if im.Kind != ExternFunc {
			continue
		}
		if n == fi {
			ti, found = im.TypeIndex, true
			break
		}
		n++
	}
	if !found {
		d := uint64(fi) - uint64(n)
		if uint64(fi) < uint64(n) || d >= uint64(len(m.Funcs)) {
			return FuncType{}, false
		}
		ti = m.Funcs[d]
	}
	if uint64(ti) >= uint64(len(m.Types)) {
		return FuncType{}, false
	}
	return m.Types[ti], true
}

// String gives the text-format name of a value type.
func (t ValType) String() string {
	switch t {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	}
	return fmt.Sprintf("0x%02x", byte(t))
}

// String formats a signature as "(i32, i64) -> (i32)".
func (t FuncType) String() string {
	list := func(v []ValType) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = x.String()
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return list(t.Params) + " -> " + list(t.Results)
}

// String names an extern kind.
func (k ExternKind) String() string {
	switch k {
	case ExternFunc:
		return "func"
	case ExternTable:
		return "table"
	case ExternMemory:
		return "memory"
	case ExternGlobal:
		return "global"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}
