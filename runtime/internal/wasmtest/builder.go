package wasmtest

import "github.com/kairos-network/kairos/runtime/wasm"

// Builder accumulates a module. Add imports before functions: function
// indices are assigned in call order and imports come first.
type Builder struct {
	M wasm.Module
}

// New returns an empty builder.
func New() *Builder { return &Builder{} }

// Type returns the index of the signature, adding it if new.
func (b *Builder) Type(params, results []wasm.ValType) uint32 {
	t := wasm.FuncType{Params: params, Results: results}
	for i, u := range b.M.Types {
		if u.Equal(t) {
			return uint32(i)
		}
	}
	b.M.Types = append(b.M.Types, t)
	return uint32(len(b.M.Types) - 1)
}

// Import adds a function import and returns its function index.
func (b *Builder) Import(module, name string, params, results []wasm.ValType) uint32 {
	if len(b.M.Funcs) > 0 {
		panic("wasmtest: import after a function")
	}
	b.M.Imports = append(b.M.Imports, wasm.Import{Module: module, Name: name, Kind: wasm.ExternFunc, TypeIndex: b.Type(params, results)})
	return uint32(b.M.NumImportedFuncs() - 1)
}

// Func adds a function, exported under export unless it is empty, and
// returns its function index.
func (b *Builder) Func(export string, params, results, locals []wasm.ValType, body ...wasm.Instr) uint32 {
	b.M.Funcs = append(b.M.Funcs, b.Type(params, results))
	c := wasm.Code{Body: body}
	for _, t := range locals {
		if n := len(c.Locals); n > 0 && c.Locals[n-1].Type == t {
			c.Locals[n-1].Count++
		} else {
			c.Locals = append(c.Locals, wasm.LocalDecl{Count: 1, Type: t})
		}
	}
	b.M.Code = append(b.M.Code, c)
	idx := uint32(b.M.NumImportedFuncs() + len(b.M.Funcs) - 1)
	if export != "" {
		b.M.Exports = append(b.M.Exports, wasm.Export{Name: export, Kind: wasm.ExternFunc, Index: idx})
	}
	return idx
}

// Memory declares memory 0 (max < 0 means no maximum) and exports it as
// "memory".
func (b *Builder) Memory(min uint32, max int64) {
	l := wasm.Limits{Min: min}
	if max >= 0 {
		l.Max, l.HasMax = uint32(max), true
	}
	b.M.Memories = append(b.M.Memories, l)
	b.M.Exports = append(b.M.Exports, wasm.Export{Name: "memory", Kind: wasm.ExternMemory})
}

// Global adds a global initialized with init and returns its index.
func (b *Builder) Global(t wasm.ValType, mutable bool, init wasm.Instr) uint32 {
	b.M.Globals = append(b.M.Globals, wasm.Global{GlobalType: wasm.GlobalType{Type: t, Mutable: mutable}, Init: init})
	return uint32(len(b.M.Globals) - 1)
}

// Data adds an active data segment at offset in memory 0.
func (b *Builder) Data(offset int32, init []byte) {
	b.M.Data = append(b.M.Data, wasm.Data{Flags: wasm.DataActive, Offset: I32(offset), Init: init})
}

// PassiveData adds a passive data segment (for memory.init) and a data
// count section, and returns the segment index.
func (b *Builder) PassiveData(init []byte) uint32 {
	b.M.Data = append(b.M.Data, wasm.Data{Flags: wasm.DataPassive, Init: init})
	n := uint32(len(b.M.Data))
	b.M.DataCount = &n
	return n - 1
}

// Bytes encodes the module.
func (b *Builder) Bytes() []byte { return wasm.Encode(&b.M) }

// Instruction helpers.

// Op is an instruction without immediates.
func Op(op wasm.Opcode) wasm.Instr { return wasm.Instr{Op: op} }

// Idx is an instruction with one index immediate (br, call, local.get...).
func Idx(op wasm.Opcode, i uint32) wasm.Instr { return wasm.Instr{Op: op, A: uint64(i)} }

// I32 is i32.const v.
func I32(v int32) wasm.Instr { return wasm.Instr{Op: wasm.OpI32Const, A: uint64(int64(v))} }

// I64 is i64.const v.
func I64(v int64) wasm.Instr { return wasm.Instr{Op: wasm.OpI64Const, A: uint64(v)} }

// F32Bits is f32.const with raw bits.
func F32Bits(bits uint32) wasm.Instr { return wasm.Instr{Op: wasm.OpF32Const, A: uint64(bits)} }

// F64Bits is f64.const with raw bits.
func F64Bits(bits uint64) wasm.Instr { return wasm.Instr{Op: wasm.OpF64Const, A: bits} }

// Block starts a block, loop or if with a block type (wasm.BlockEmpty,
// wasm.BlockOf(t) or a type index).
func Block(op wasm.Opcode, bt int64) wasm.Instr { return wasm.Instr{Op: op, A: uint64(bt)} }

// Mem is a load or store with alignment and offset.
func Mem(op wasm.Opcode, align, offset uint32) wasm.Instr {
	return wasm.Instr{Op: op, A: uint64(align), B: offset}
}

// BrTable is br_table with labels and a default.
func BrTable(def uint32, labels ...uint32) wasm.Instr {
	return wasm.Instr{Op: wasm.OpBrTable, A: uint64(def), Targets: &labels}
}

// Shorthand value-type lists.
var (
	None = []wasm.ValType(nil)
	I32s = []wasm.ValType{wasm.I32}
	I64s = []wasm.ValType{wasm.I64}
)
