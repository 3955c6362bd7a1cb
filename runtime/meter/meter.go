package meter

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/kairos-network/kairos/runtime/wasm"
)

// Names of the exports Instrument adds. validate reserves them.
const (
	GasExport           = "gas_left"
	DepthExport         = "__kairos_depth"
	DepthExceededExport = "__kairos_depth_exceeded"
	GlobalExportPrefix  = "__kairos_g"
)

// ErrInvalid: the module breaks a rule validate enforces; Instrument only
// takes validated modules.
var ErrInvalid = errors.New("meter: module not valid for instrumentation")

// GlobalExport is the export name of original global i.
func GlobalExport(i int) string { return GlobalExportPrefix + strconv.Itoa(i) }

// Instrument returns an instrumented copy of m (see the package doc); m is
// not modified. m must have passed validate.Check.
func Instrument(m *wasm.Module) (*wasm.Module, error) { return instrument(m, false) }

func instrument(m *wasm.Module, perInstr bool) (*wasm.Module, error) {
	if len(m.Code) != len(m.Funcs) {
		return nil, fmt.Errorf("%w: %d functions but %d bodies", ErrInvalid, len(m.Funcs), len(m.Code))
	}
	out := *m
	out.Layout = nil // integer widths of the input do not apply to the output
	out.Types = append([]wasm.FuncType(nil), m.Types...)
	out.Globals = append([]wasm.Global(nil), m.Globals...)
	out.Exports = append([]wasm.Export(nil), m.Exports...)
	out.Code = make([]wasm.Code, len(m.Code))

	nGlobals := m.NumImportedGlobals() + len(m.Globals)
	for i := range nGlobals {
		out.Exports = append(out.Exports, wasm.Export{Name: GlobalExport(i), Kind: wasm.ExternGlobal, Index: uint32(i)})
	}
	g := globals{gas: uint32(nGlobals), depth: uint32(nGlobals + 1), exceeded: uint32(nGlobals + 2)}
	for _, n := range []struct {
		name string
		idx  uint32
		init wasm.Instr
	}{{GasExport, g.gas, i64c(0)}, {DepthExport, g.depth, i32c(0)}, {DepthExceededExport, g.exceeded, i32c(0)}} {
		t := wasm.I32
		if n.init.Op == wasm.OpI64Const {
			t = wasm.I64
		}
		out.Globals = append(out.Globals, wasm.Global{GlobalType: wasm.GlobalType{Type: t, Mutable: true}, Init: n.init})
		out.Exports = append(out.Exports, wasm.Export{Name: n.name, Kind: wasm.ExternGlobal, Index: n.idx})
	}
	for i := range m.Code {
		ti := m.Funcs[i]
		if uint64(ti) >= uint64(len(m.Types)) {
			return nil, fmt.Errorf("%w: function %d has type %d of %d", ErrInvalid, i, ti, len(m.Types))
		}
		out.Code[i] = instrumentFunc(&out, &m.Code[i], m.Types[ti], g, perInstr)
	}
	return &out, nil
}
