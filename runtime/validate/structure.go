package validate

import (
	"fmt"

	"github.com/kairos-network/kairos/runtime/wasm"
)

// naturalAlign is log2 of the access size of each load and store
// (0x28..0x3E); a memarg may not claim more alignment than that.
var naturalAlign = [...]uint64{2, 3, 2, 3, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 3, 2, 3, 0, 1, 0, 1, 2}

// Structure checks the rules that do not depend on policy: at most one
// table and one memory, every index in range, limits ordered, constant
// initializers typed, export names unique, blocks balanced and labels in
// range. The instrumenter's output must pass it (FuzzValidate checks that).
func Structure(m *wasm.Module) error {
	nTypes := uint64(len(m.Types))
	var nFuncs, nTables, nMems, nImpGlobals uint64
	var globals []wasm.GlobalType
	for _, im := range m.Imports {
		switch im.Kind {
		case wasm.ExternFunc:
			if uint64(im.TypeIndex) >= nTypes {
				return fmt.Errorf("%w: import %s.%s has type %d of %d", ErrIndex, im.Module, im.Name, im.TypeIndex, nTypes)
			}
			nFuncs++
		case wasm.ExternTable:
			nTables++
		case wasm.ExternMemory:
			nMems++
		case wasm.ExternGlobal:
			nImpGlobals++
			globals = append(globals, im.Global)
		}
	}
	for i, ti := range m.Funcs {
		if uint64(ti) >= nTypes {
			return fmt.Errorf("%w: function %d has type %d of %d", ErrIndex, i, ti, nTypes)
		}
	}
	nFuncs += uint64(len(m.Funcs))
	nTables += uint64(len(m.Tables))
	nMems += uint64(len(m.Memories))
	if nTables > 1 {
		return fmt.Errorf("%w: %d tables (multiple tables need reference types)", ErrFeature, nTables)
	}
	if nMems > 1 {
		return fmt.Errorf("%w: %d memories (multi-memory)", ErrFeature, nMems)
	}
	for _, t := range m.Tables {
		if t.HasMax && t.Max < t.Min {
			return fmt.Errorf("%w: table maximum %d below minimum %d", ErrStructure, t.Max, t.Min)
		}
	}
	for _, l := range m.Memories {
		if l.Min > 65536 || l.HasMax && (l.Max > 65536 || l.Max < l.Min) {
			return fmt.Errorf("%w: memory limits %d..%d pages", ErrStructure, l.Min, l.Max)
		}
	}
	for i, g := range m.Globals {
		if err := constInit(g.Init, g.Type, globals[:nImpGlobals]); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
		globals = append(globals, g.GlobalType)
	}
	seen := make(map[string]bool, len(m.Exports))
	for _, e := range m.Exports {
		if seen[e.Name] {
			return fmt.Errorf("%w: export %q defined twice", ErrStructure, e.Name)
		}
		seen[e.Name] = true
		var n uint64
		switch e.Kind {
		case wasm.ExternFunc:
			n = nFuncs
		case wasm.ExternTable:
			n = nTables
		case wasm.ExternMemory:
			n = nMems
		case wasm.ExternGlobal:
			n = uint64(len(globals))
		}
		if uint64(e.Index) >= n {
			return fmt.Errorf("%w: export %q refers to index %d of %d", ErrIndex, e.Name, e.Index, n)
		}
	}
	if m.Start != nil {
		t, ok := m.FuncType(*m.Start)
		if !ok {
			return fmt.Errorf("%w: start function %d", ErrIndex, *m.Start)
		}
		if len(t.Params)+len(t.Results) != 0 {
			return fmt.Errorf("%w: start function must take and return nothing", ErrStructure)
		}
	}
	for i, e := range m.Elements {
		if nTables == 0 {
			return fmt.Errorf("%w: element segment without a table", ErrStructure)
		}
		if err := constInit(e.Offset, wasm.I32, globals[:nImpGlobals]); err != nil {
			return fmt.Errorf("element segment %d: %w", i, err)
		}
		for _, f := range e.Funcs {
			if uint64(f) >= nFuncs {
				return fmt.Errorf("%w: element segment %d refers to function %d of %d", ErrIndex, i, f, nFuncs)
			}
		}
	}
	for i, d := range m.Data {
		if d.Flags == wasm.DataPassive {
			continue
		}
		if nMems == 0 {
			return fmt.Errorf("%w: active data segment without a memory", ErrStructure)
		}
		if err := constInit(d.Offset, wasm.I32, globals[:nImpGlobals]); err != nil {
			return fmt.Errorf("data segment %d: %w", i, err)
		}
	}
	if len(m.Code) != len(m.Funcs) {
		return fmt.Errorf("%w: %d functions but %d bodies", ErrStructure, len(m.Funcs), len(m.Code))
	}
	env := funcEnv{m: m, nFuncs: nFuncs, nTables: nTables, nMems: nMems, globals: globals}
	for i := range m.Code {
		if err := env.body(&m.Code[i], m.Types[m.Funcs[i]]); err != nil {
			return fmt.Errorf("function %d: %w", uint64(i)+nFuncs-uint64(len(m.Funcs)), err)
		}
	}
	return nil
}

// constInit checks a constant initializer of type t; global.get may only
// read an imported immutable global.
func constInit(in wasm.Instr, t wasm.ValType, imported []wasm.GlobalType) error {
	var got wasm.ValType
	switch in.Op {
	case wasm.OpI32Const:
		got = wasm.I32
	case wasm.OpI64Const:
		got = wasm.I64
	case wasm.OpF32Const:
		got = wasm.F32
	case wasm.OpF64Const:
		got = wasm.F64
	case wasm.OpGlobalGet:
		if in.A >= uint64(len(imported)) || imported[in.A].Mutable {
			return fmt.Errorf("%w: initializer reads global %d, not an imported immutable global", ErrIndex, in.A)
		}
		got = imported[in.A].Type
	default:
		return fmt.Errorf("%w: initializer %v is not a constant", ErrStructure, in.Op)
	}
	if got != t {
		return fmt.Errorf("%w: initializer of type 0x%x for 0x%x", ErrStructure, byte(got), byte(t))
	}
	return nil
}

type funcEnv struct {
	m                      *wasm.Module
	nFuncs, nTables, nMems uint64
	globals                []wasm.GlobalType
}

// body checks one function: block types, balanced blocks, else only inside
// if, labels in range and every index in range.
func (env *funcEnv) body(c *wasm.Code, t wasm.FuncType) error {
	nLocals := uint64(len(t.Params)) + c.NumLocals()
	nTypes := uint64(len(env.m.Types))
	// open[i] is the opcode of the i-th enclosing block; else turns an if
	// into an else so a second else is caught.
	open := make([]wasm.Opcode, 0, 16)
	for pc, in := range c.Body {
		bad := func(rule error, format string, args ...any) error {
			return fmt.Errorf("%w: instruction %d (%v): %s", rule, pc, in.Op, fmt.Sprintf(format, args...))
		}
		switch in.Op {
		case wasm.OpBlock, wasm.OpLoop, wasm.OpIf:
			if bt := int64(in.A); bt >= 0 && uint64(bt) >= nTypes {
				return bad(ErrIndex, "block type %d of %d types", bt, nTypes)
			}
			open = append(open, in.Op)
		case wasm.OpElse:
			if len(open) == 0 || open[len(open)-1] != wasm.OpIf {
				return bad(ErrStructure, "else without if")
			}
			open[len(open)-1] = wasm.OpElse
		case wasm.OpEnd:
			if len(open) == 0 {
				return bad(ErrStructure, "end without block")
			}
			open = open[:len(open)-1]
		case wasm.OpBr, wasm.OpBrIf:
			if in.A > uint64(len(open)) {
				return bad(ErrIndex, "label %d at depth %d", in.A, len(open))
			}
		case wasm.OpBrTable:
			if in.A > uint64(len(open)) {
				return bad(ErrIndex, "default label %d at depth %d", in.A, len(open))
			}
			for _, l := range in.Targets {
				if uint64(l) > uint64(len(open)) {
					return bad(ErrIndex, "label %d at depth %d", l, len(open))
				}
			}
		case wasm.OpCall:
			if in.A >= env.nFuncs {
				return bad(ErrIndex, "function %d of %d", in.A, env.nFuncs)
			}
		case wasm.OpCallIndirect:
			if env.nTables == 0 {
				return bad(ErrStructure, "call_indirect without a table")
			}
			if in.A >= nTypes {
				return bad(ErrIndex, "type %d of %d", in.A, nTypes)
			}
		case wasm.OpLocalGet, wasm.OpLocalSet, wasm.OpLocalTee:
			if in.A >= nLocals {
				return bad(ErrIndex, "local %d of %d", in.A, nLocals)
			}
		case wasm.OpGlobalGet, wasm.OpGlobalSet:
			if in.A >= uint64(len(env.globals)) {
				return bad(ErrIndex, "global %d of %d", in.A, len(env.globals))
			}
			if in.Op == wasm.OpGlobalSet && !env.globals[in.A].Mutable {
				return bad(ErrStructure, "global.set of immutable global %d", in.A)
			}
		case wasm.OpMemorySize, wasm.OpMemoryGrow, wasm.OpMemoryCopy, wasm.OpMemoryFill:
			if env.nMems == 0 {
				return bad(ErrStructure, "memory instruction without a memory")
			}
		case wasm.OpMemoryInit, wasm.OpDataDrop:
			if env.m.DataCount == nil {
				return bad(ErrStructure, "data instruction without a data count section")
			}
			if in.A >= uint64(*env.m.DataCount) {
				return bad(ErrIndex, "data segment %d of %d", in.A, *env.m.DataCount)
			}
			if in.Op == wasm.OpMemoryInit && env.nMems == 0 {
				return bad(ErrStructure, "memory instruction without a memory")
			}
		default:
			if in.Op >= wasm.OpI32Load && in.Op <= 0x3E {
				if env.nMems == 0 {
					return bad(ErrStructure, "memory instruction without a memory")
				}
				if in.A > naturalAlign[in.Op-wasm.OpI32Load] {
					return bad(ErrStructure, "alignment 2^%d larger than natural", in.A)
				}
			}
		}
	}
	if len(open) != 0 {
		return fmt.Errorf("%w: %d blocks not closed", ErrStructure, len(open))
	}
	return nil
}
