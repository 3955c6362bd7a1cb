package validate_test

import (
	"errors"
	"strings"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

var cfg = validate.Config{Limits: validate.DefaultLimits(), Imports: append([]validate.HostFunc{
	{Module: "kairos", Name: "input_len", Type: wasm.FuncType{Results: I32s}},
}, validate.WASISubset()...)}

func base() *Builder {
	b := New()
	b.Memory(1, 16)
	b.Func("run", nil, I32s, nil, I32(1))
	return b
}

// raw builds a module from section bytes, for encodings the Builder
// cannot express.
func raw(sections ...[]byte) []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, s := range sections {
		out = append(out, s...)
	}
	return out
}

// hostileCases: each module breaks exactly one rule, named by its sentinel.
func hostileCases() []struct {
	name string
	bin  []byte
	want error
	msg  string
} {
	type tc = struct {
		name string
		bin  []byte
		want error
		msg  string
	}
	var cases []tc
	add := func(name string, want error, msg string, mk func(b *Builder)) {
		b := base()
		mk(b)
		cases = append(cases, tc{name, b.Bytes(), want, msg})
	}
	l := validate.DefaultLimits()
	add("many functions", validate.ErrTooManyFunctions, "(20001 > 20000)", func(b *Builder) {
		for len(b.M.Funcs) < int(l.Functions)+1 {
			b.Func("", nil, nil, nil)
		}
	})
	add("many locals", validate.ErrTooManyLocals, "(100000 > 4096)", func(b *Builder) {
		b.Func("", nil, nil, nil)
		b.M.Code[len(b.M.Code)-1].Locals = []wasm.LocalDecl{{Count: 100_000, Type: wasm.I64}}
	})
	add("many params", validate.ErrTooManyParams, "(101 > 100)", func(b *Builder) {
		b.Type(make([]wasm.ValType, 101), nil)
		for i := range b.M.Types[len(b.M.Types)-1].Params {
			b.M.Types[len(b.M.Types)-1].Params[i] = wasm.I32
		}
	})
	add("huge declared memory", validate.ErrMemoryTooLarge, "(65536 > 512)", func(b *Builder) {
		b.M.Memories[0] = wasm.Limits{Min: 65536}
	})
	add("huge memory maximum", validate.ErrMemoryTooLarge, "(1000 > 512)", func(b *Builder) {
		b.M.Memories[0] = wasm.Limits{Min: 1, Max: 1000, HasMax: true}
	})
	add("huge br_table", validate.ErrBrTableTooLarge, "(100000 > 10000)", func(b *Builder) {
		b.Func("", nil, nil, nil, Block(wasm.OpBlock, wasm.BlockEmpty), I32(0), BrTable(0, make([]uint32, 100_000)...), Op(wasm.OpEnd))
	})
	add("deep blocks", validate.ErrBlocksTooDeep, "(1001 > 1000)", func(b *Builder) {
		var body []wasm.Instr
		for range 1001 {
			body = append(body, Block(wasm.OpBlock, wasm.BlockEmpty))
		}
		for range 1001 {
			body = append(body, Op(wasm.OpEnd))
		}
		b.Func("", nil, nil, nil, body...)
	})
	add("huge table", validate.ErrTableTooLarge, "(1000000 > 20000)", func(b *Builder) {
		b.M.Tables = []wasm.Limits{{Min: 1_000_000}}
	})
	add("many data segments", validate.ErrTooManyDataSegments, "(50001 > 50000)", func(b *Builder) {
		for range l.DataSegments + 1 {
			b.Data(0, nil)
		}
	})
	add("many exports", validate.ErrTooManyExports, "(101 > 100)", func(b *Builder) {
		for i := len(b.M.Exports); i <= int(l.Exports); i++ {
			b.M.Exports = append(b.M.Exports, wasm.Export{Name: "f" + strings.Repeat("x", i), Kind: wasm.ExternFunc})
		}
	})
	add("many globals", validate.ErrTooManyGlobals, "(1001 > 1000)", func(b *Builder) {
		for range l.Globals + 1 {
			b.Global(wasm.I32, false, I32(0))
		}
	})
	add("unknown import", validate.ErrImportNotAllowed, "env.abort is not on the allow-list", func(b *Builder) {
		b.M.Imports = append(b.M.Imports, wasm.Import{Module: "env", Name: "abort", TypeIndex: b.Type(nil, nil)})
	})
	add("WASI call outside the subset", validate.ErrImportNotAllowed, "path_open", func(b *Builder) {
		b.M.Imports = append(b.M.Imports, wasm.Import{Module: validate.WASIModule, Name: "path_open", TypeIndex: b.Type(nil, nil)})
	})
	add("allowed import with the wrong signature", validate.ErrImportNotAllowed, "signature", func(b *Builder) {
		b.M.Imports = append(b.M.Imports, wasm.Import{Module: "kairos", Name: "input_len", TypeIndex: b.Type(nil, I64s)})
	})
	add("imported memory", validate.ErrImportNotAllowed, "only function imports", func(b *Builder) {
		b.M.Memories = nil
		b.M.Exports = b.M.Exports[1:]
		b.M.Imports = append(b.M.Imports, wasm.Import{Module: "kairos", Name: "memory", Kind: wasm.ExternMemory, Limits: wasm.Limits{Min: 1}})
	})
	add("guest-defined gas_left", validate.ErrReservedName, `"gas_left"`, func(b *Builder) {
		g := b.Global(wasm.I64, true, I64(1<<62))
		b.M.Exports = append(b.M.Exports, wasm.Export{Name: "gas_left", Kind: wasm.ExternGlobal, Index: g})
	})
	add("reserved prefix", validate.ErrReservedName, "__kairos_depth", func(b *Builder) {
		b.M.Exports = append(b.M.Exports, wasm.Export{Name: "__kairos_depth", Kind: wasm.ExternFunc})
	})
	add("start function", validate.ErrStartFunction, "function 0", func(b *Builder) {
		var zero uint32
		b.M.Start = &zero
		b.M.Types[0] = wasm.FuncType{} // () -> () so only the start rule is broken
		b.M.Code[0].Body = nil
	})
	add("two memories", validate.ErrFeature, "multi-memory", func(b *Builder) {
		b.M.Memories = append(b.M.Memories, wasm.Limits{Min: 1})
	})
	add("call out of range", validate.ErrIndex, "function 9 of 2", func(b *Builder) {
		b.Func("", nil, nil, nil, Idx(wasm.OpCall, 9))
	})
	add("label out of range", validate.ErrIndex, "label 3 at depth 1", func(b *Builder) {
		b.Func("", nil, nil, nil, Block(wasm.OpBlock, wasm.BlockEmpty), Idx(wasm.OpBr, 3), Op(wasm.OpEnd))
	})
	add("local out of range", validate.ErrIndex, "local 1 of 1", func(b *Builder) {
		b.Func("", I32s, nil, nil, Idx(wasm.OpLocalGet, 1), Op(wasm.OpDrop))
	})
	add("set immutable global", validate.ErrStructure, "immutable", func(b *Builder) {
		g := b.Global(wasm.I32, false, I32(0))
		b.Func("", nil, nil, nil, I32(1), Idx(wasm.OpGlobalSet, g))
	})
	add("duplicate export", validate.ErrStructure, "defined twice", func(b *Builder) {
		b.M.Exports = append(b.M.Exports, b.M.Exports[len(b.M.Exports)-1])
	})
	add("over-aligned load", validate.ErrStructure, "alignment", func(b *Builder) {
		b.Func("", nil, nil, nil, I32(0), Mem(wasm.OpI32Load, 3, 0), Op(wasm.OpDrop))
	})
	add("memory.init without data count", validate.ErrStructure, "data count", func(b *Builder) {
		b.M.Data = append(b.M.Data, wasm.Data{Flags: wasm.DataPassive})
		b.Func("", nil, nil, nil, I32(0), I32(0), I32(0), Idx(wasm.OpMemoryInit, 0))
	})

	funcBody := func(body ...byte) []byte {
		// type ()->(), one function, code section with one body.
		code := append([]byte{0x00}, body...)
		code = append([]byte{byte(len(code))}, code...)
		code = append([]byte{0x01}, code...)
		return raw([]byte{1, 4, 1, 0x60, 0, 0}, []byte{3, 2, 1, 0}, append([]byte{10, byte(len(code))}, code...))
	}
	cases = append(cases,
		tc{"invalid binary", []byte("definitely not wasm"), validate.ErrMalformed, "bad magic"},
		tc{"truncated section", raw([]byte{1, 50, 1}), validate.ErrMalformed, "past the end"},
		tc{"section count larger than its bytes", raw([]byte{1, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}), validate.ErrMalformed, "cannot fit"},
		tc{"SIMD opcode", funcBody(0xFD, 0x0C, 0x0B), validate.ErrFeature, "SIMD"},
		tc{"atomics", funcBody(0xFE, 0x03, 0x00, 0x0B), validate.ErrFeature, "threads"},
		tc{"table.grow", funcBody(0xFC, 15, 0, 0x0B), validate.ErrFeature, "table mutation"},
		tc{"table.set", funcBody(0x26, 0, 0x0B), validate.ErrFeature, "reference types"},
		tc{"ref.null", funcBody(0xD0, 0x70, 0x1A, 0x0B), validate.ErrFeature, "reference types"},
		tc{"try", funcBody(0x06, 0x40, 0x0B, 0x0B), validate.ErrFeature, "exception"},
		tc{"return_call", funcBody(0x12, 0x00, 0x0B), validate.ErrFeature, "tail calls"},
		tc{"v128 local", raw([]byte{1, 4, 1, 0x60, 0, 0}, []byte{3, 2, 1, 0}, []byte{10, 6, 1, 4, 1, 1, 0x7B, 0x0B}), validate.ErrFeature, "SIMD"},
		tc{"shared memory", raw([]byte{5, 4, 1, 3, 1, 1}), validate.ErrFeature, "threads"},
		tc{"passive element segment", raw([]byte{4, 4, 1, 0x70, 0, 1}, []byte{9, 4, 1, 1, 0, 0}), validate.ErrFeature, "element segment flag 1"},
		tc{"unknown opcode", funcBody(0xC5, 0x0B), validate.ErrMalformed, "unknown opcode"},
		tc{"body without end", funcBody(0x01), validate.ErrMalformed, "without end"},
		tc{"oversized LEB", raw([]byte{1, 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), validate.ErrMalformed, "too large"},
		tc{"sections out of order", raw([]byte{3, 1, 0}, []byte{1, 1, 0}), validate.ErrMalformed, "out of order"},
		tc{"oversized code", append(raw(), make([]byte, l.ModuleBytes)...), validate.ErrModuleSize, "(4194312 > 4194304)"},
	)
	return cases
}

// TestHostileModules: each hostile module is rejected with its rule, and
// only that rule.
func TestHostileModules(t *testing.T) {
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := validate.Check(c.bin, cfg)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "validate: ") && !strings.Contains(err.Error(), ": validate: ") {
				t.Errorf("error %q does not start with the package prefix", err)
			}
		})
	}
}

// TestAcceptsBase: the base module every hostile case starts from is valid,
// so each case fails for its own rule.
func TestAcceptsBase(t *testing.T) {
	m, uses, err := validate.Check(base().Bytes(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Funcs) != 1 || len(uses) == 0 {
		t.Fatalf("funcs %d, uses %v", len(m.Funcs), uses)
	}
}

// TestLimitsAreInclusive: a module exactly at a limit passes.
func TestLimitsAreInclusive(t *testing.T) {
	b := base()
	b.M.Memories[0] = wasm.Limits{Min: uint32(validate.DefaultLimits().MemoryPages)}
	for len(b.M.Funcs) < int(validate.DefaultLimits().Functions) {
		b.Func("", nil, nil, nil)
	}
	if _, _, err := validate.Check(b.Bytes(), cfg); err != nil {
		t.Fatal(err)
	}
}
