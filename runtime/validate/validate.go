package validate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kairos-network/kairos/runtime/wasm"
)

// Rules. Each rejection wraps exactly one of these.
var (
	ErrModuleSize          = errors.New("validate: module too large")
	ErrMalformed           = errors.New("validate: malformed module")
	ErrFeature             = errors.New("validate: feature not allowed")
	ErrImportNotAllowed    = errors.New("validate: import not allowed")
	ErrReservedName        = errors.New("validate: reserved export name")
	ErrStartFunction       = errors.New("validate: start function not allowed")
	ErrTooManyTypes        = errors.New("validate: too many types")
	ErrTooManyImports      = errors.New("validate: too many imports")
	ErrTooManyFunctions    = errors.New("validate: too many functions")
	ErrTooManyParams       = errors.New("validate: too many params")
	ErrTooManyResults      = errors.New("validate: too many results")
	ErrTooManyLocals       = errors.New("validate: too many locals")
	ErrBodyTooLarge        = errors.New("validate: function body too large")
	ErrTooManyGlobals      = errors.New("validate: too many globals")
	ErrTooManyExports      = errors.New("validate: too many exports")
	ErrTableTooLarge       = errors.New("validate: table too large")
	ErrTooManyElements     = errors.New("validate: too many element entries")
	ErrMemoryTooLarge      = errors.New("validate: memory too large")
	ErrTooManyDataSegments = errors.New("validate: too many data segments")
	ErrBrTableTooLarge     = errors.New("validate: br_table too large")
	ErrBlocksTooDeep       = errors.New("validate: blocks nested too deep")
	ErrIndex               = errors.New("validate: index out of range")
	ErrStructure           = errors.New("validate: invalid module structure")
)

// Use is one limited quantity of a module: its measured value next to the
// limit, for reports such as `kairos module check`.
type Use struct {
	Rule  string
	Used  uint64
	Limit uint64
	err   error
}

// Check decodes and validates a binary module against cfg. On success it
// returns the decoded module and the limits it uses; on failure the uses
// measured so far (possibly none) and an error naming the rule.
func Check(b []byte, cfg Config) (*wasm.Module, []Use, error) {
	l := cfg.Limits
	if uint64(len(b)) > l.ModuleBytes {
		u := Use{"module bytes", uint64(len(b)), l.ModuleBytes, ErrModuleSize}
		return nil, []Use{u}, over(u)
	}
	m, err := wasm.Decode(b)
	if errors.Is(err, wasm.ErrUnsupported) {
		return nil, nil, fmt.Errorf("%w: %w", ErrFeature, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	uses := measure(m, uint64(len(b)), l)
	for _, u := range uses {
		if u.Used > u.Limit {
			return m, uses, over(u)
		}
	}
	if err := checkImports(m, cfg.Imports); err != nil {
		return m, uses, err
	}
	for _, e := range m.Exports {
		if e.Name == ReservedGas || strings.HasPrefix(e.Name, ReservedPrefix) {
			return m, uses, fmt.Errorf("%w: %q (the instrumenter defines %q and names starting with %q)", ErrReservedName, e.Name, ReservedGas, ReservedPrefix)
		}
	}
	// A start function runs inside instantiation, before the host can set
	// gas_left: it would be unmetered or always out of gas. Modules
	// initialize in an exported function instead (Go's _initialize).
	if m.Start != nil {
		return m, uses, fmt.Errorf("%w: function %d (export an initializer instead)", ErrStartFunction, *m.Start)
	}
	if err := Structure(m); err != nil {
		return m, uses, err
	}
	return m, uses, nil
}

func over(u Use) error { return fmt.Errorf("%w (%d > %d)", u.err, u.Used, u.Limit) }

// measure computes every limited quantity; per-function quantities are the
// maximum over functions.
func measure(m *wasm.Module, size uint64, l Limits) []Use {
	var params, results, locals, body, brTable, depth, elems uint64
	for _, t := range m.Types {
		params = max(params, uint64(len(t.Params)))
		results = max(results, uint64(len(t.Results)))
	}
	for i := range m.Code {
		c := &m.Code[i]
		n := c.NumLocals()
		if i < len(m.Funcs) && uint64(m.Funcs[i]) < uint64(len(m.Types)) {
			n += uint64(len(m.Types[m.Funcs[i]].Params))
		}
		locals = max(locals, n)
		body = max(body, uint64(len(c.Body)))
		var d uint64
		for _, in := range c.Body {
			switch in.Op {
			case wasm.OpBlock, wasm.OpLoop, wasm.OpIf:
				d++
				depth = max(depth, d)
			case wasm.OpEnd:
				d--
			case wasm.OpBrTable:
				brTable = max(brTable, uint64(len(in.Targets)))
			}
		}
	}
	var table, mem uint64
	for _, t := range m.Tables {
		table = max(table, uint64(t.Min))
		if t.HasMax {
			table = max(table, uint64(t.Max))
		}
	}
	for _, mm := range m.Memories {
		mem = max(mem, uint64(mm.Min))
		if mm.HasMax {
			mem = max(mem, uint64(mm.Max))
		}
	}
	for _, e := range m.Elements {
		elems += uint64(len(e.Funcs))
	}
	return []Use{
		{"module bytes", size, l.ModuleBytes, ErrModuleSize},
		{"types", uint64(len(m.Types)), l.Types, ErrTooManyTypes},
		{"imports", uint64(len(m.Imports)), l.Imports, ErrTooManyImports},
		{"functions", uint64(len(m.Funcs)), l.Functions, ErrTooManyFunctions},
		{"params per type (max)", params, l.Params, ErrTooManyParams},
		{"results per type (max)", results, l.Results, ErrTooManyResults},
		{"locals per function (max, incl. params)", locals, l.LocalsPerFunc, ErrTooManyLocals},
		{"instructions per function (max)", body, l.BodyInstrs, ErrBodyTooLarge},
		{"block nesting (max)", depth, l.BlockDepth, ErrBlocksTooDeep},
		{"br_table labels (max)", brTable, l.BrTableTargets, ErrBrTableTooLarge},
		{"globals", uint64(len(m.Globals)), l.Globals, ErrTooManyGlobals},
		{"exports", uint64(len(m.Exports)), l.Exports, ErrTooManyExports},
		{"table entries", table, l.TableEntries, ErrTableTooLarge},
		{"element entries", elems, l.ElementEntries, ErrTooManyElements},
		{"memory pages", mem, l.MemoryPages, ErrMemoryTooLarge},
		{"data segments", uint64(len(m.Data)), l.DataSegments, ErrTooManyDataSegments},
	}
}

func checkImports(m *wasm.Module, allowed []HostFunc) error {
	for _, im := range m.Imports {
		if im.Kind != wasm.ExternFunc {
			return fmt.Errorf("%w: %s.%s: only function imports are allowed", ErrImportNotAllowed, im.Module, im.Name)
		}
		if uint64(im.TypeIndex) >= uint64(len(m.Types)) {
			return fmt.Errorf("%w: import %s.%s has type %d of %d", ErrIndex, im.Module, im.Name, im.TypeIndex, len(m.Types))
		}
		ok := false
		for _, h := range allowed {
			if h.Module == im.Module && h.Name == im.Name {
				if !h.Type.Equal(m.Types[im.TypeIndex]) {
					return fmt.Errorf("%w: %s.%s has signature %v, the host defines %v", ErrImportNotAllowed, im.Module, im.Name, m.Types[im.TypeIndex], h.Type)
				}
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: %s.%s is not on the allow-list", ErrImportNotAllowed, im.Module, im.Name)
		}
	}
	return nil
}
