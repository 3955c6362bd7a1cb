package vm

import (
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// RestoreExport is the function Compile adds to tracked code:
// restore(g_0, …, g_{n-1}, from, limit) sets the module's mutable
// exported globals (meter.GlobalExport order, skipping immutable ones) to
// its arguments and the meter's depth globals to 0, then returns what
// meter.DirtyExport(from, limit) returns.
//
// Why: a restore set every global through wazero's api.MutableGlobal (an
// interface call into the engine and the offset of the global per value:
// ten for a Go guest, ~4 ns each) and then called the dirty-page walk, a
// wasm call anyway. The arguments of that call carry the globals for
// nearly nothing. Like meter.Track's additions it is node-local: no gas,
// no result changes, nothing stored; the name has validate's reserved
// prefix, so no transaction can call it (Instance.Export refuses it).
const RestoreExport = "__kairos_restore"

// errNoRestore: the module lacks what the restore function needs (not
// tracked, or not instrumented) or has more than restoreGlobalsMax mutable
// globals; Compile then leaves the code as it is and restores globals one
// by one.
var errNoRestore = errors.New("vm: no restore function")

// restoreGlobalsMax bounds the restore function's parameters. validate
// admits up to 1 000 globals, and a function of a thousand parameters is a
// shape no guest may declare (validate's parameter limit) and no engine
// test covers: whether a module compiles must not depend on it. A Go guest
// has ten.
const restoreGlobalsMax = 64

// withRestore returns m (meter.Track's output) with RestoreExport added,
// and the number of globals it sets.
func withRestore(m *wasm.Module) (*wasm.Module, int, error) {
	exports := map[string]wasm.Export{}
	for _, e := range m.Exports {
		exports[e.Name] = e
	}
	find := func(name string, kind wasm.ExternKind) (uint32, bool) {
		e, ok := exports[name]
		return e.Index, ok && e.Kind == kind
	}
	dirty, ok1 := find(meter.DirtyExport, wasm.ExternFunc)
	depth, ok2 := find(meter.DepthExport, wasm.ExternGlobal)
	exceeded, ok3 := find(meter.DepthExceededExport, wasm.ExternGlobal)
	if !ok1 || !ok2 || !ok3 {
		return nil, 0, errNoRestore
	}
	if _, dup := exports[RestoreExport]; dup {
		return nil, 0, fmt.Errorf("%w: %s already exported", errNoRestore, RestoreExport)
	}
	var imported []wasm.GlobalType
	for _, im := range m.Imports {
		if im.Kind == wasm.ExternGlobal {
			imported = append(imported, im.Global)
		}
	}
	globalType := func(i uint32) (wasm.GlobalType, bool) {
		if int(i) < len(imported) {
			return imported[i], true
		}
		if i -= uint32(len(imported)); int(i) < len(m.Globals) {
			return m.Globals[i].GlobalType, true
		}
		return wasm.GlobalType{}, false
	}
	// The globals in the order Instantiate collects them: exported
	// __kairos_g0, g1, … until the first missing, mutable ones only.
	var params []wasm.ValType
	var body []wasm.Instr
	for i := 0; ; i++ {
		gi, ok := find(meter.GlobalExport(i), wasm.ExternGlobal)
		if !ok {
			break
		}
		t, ok := globalType(gi)
		if !ok {
			return nil, 0, fmt.Errorf("%w: global %d out of range", errNoRestore, gi)
		}
		if !t.Mutable {
			continue
		}
		if len(params) == restoreGlobalsMax {
			return nil, 0, fmt.Errorf("%w: more than %d mutable globals", errNoRestore, restoreGlobalsMax)
		}
		body = append(body, wasm.Instr{Op: wasm.OpLocalGet, A: uint64(len(params))}, wasm.Instr{Op: wasm.OpGlobalSet, A: uint64(gi)})
		params = append(params, t.Type)
	}
	n := len(params)
	body = append(body,
		wasm.Instr{Op: wasm.OpI32Const}, wasm.Instr{Op: wasm.OpGlobalSet, A: uint64(depth)},
		wasm.Instr{Op: wasm.OpI32Const}, wasm.Instr{Op: wasm.OpGlobalSet, A: uint64(exceeded)},
		wasm.Instr{Op: wasm.OpLocalGet, A: uint64(n)}, wasm.Instr{Op: wasm.OpLocalGet, A: uint64(n + 1)},
		wasm.Instr{Op: wasm.OpCall, A: uint64(dirty)}) // the encoder ends the body
	dt, ok := m.FuncType(dirty)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s is not a function", errNoRestore, meter.DirtyExport)
	}
	out := *m
	out.Layout = nil
	out.Types = append(append([]wasm.FuncType(nil), m.Types...), wasm.FuncType{Params: append(params, dt.Params...), Results: dt.Results})
	out.Funcs = append(append([]uint32(nil), m.Funcs...), uint32(len(out.Types)-1))
	out.Code = append(append([]wasm.Code(nil), m.Code...), wasm.Code{Body: body})
	fi := uint32(m.NumImportedFuncs() + len(out.Funcs) - 1)
	out.Exports = append(append([]wasm.Export(nil), m.Exports...), wasm.Export{Name: RestoreExport, Kind: wasm.ExternFunc, Index: fi})
	return &out, n, nil
}
