package meter

import (
	"math/bits"

	"github.com/kairos-network/kairos/runtime/wasm"
)

// globals are the indices of the injected globals.
type globals struct{ gas, depth, exceeded uint32 }

func op(o wasm.Opcode) wasm.Instr              { return wasm.Instr{Op: o} }
func idx(o wasm.Opcode, i uint32) wasm.Instr   { return wasm.Instr{Op: o, A: uint64(i)} }
func i32c(v int32) wasm.Instr                  { return wasm.Instr{Op: wasm.OpI32Const, A: uint64(int64(v))} }
func i64c(v int64) wasm.Instr                  { return wasm.Instr{Op: wasm.OpI64Const, A: uint64(v)} }
func block(o wasm.Opcode, bt int64) wasm.Instr { return wasm.Instr{Op: o, A: uint64(bt)} }

// fn is the state of instrumenting one function.
type fn struct {
	g   globals
	out []wasm.Instr
	// Scratch locals, allocated on first use after the function's own
	// locals: an i32 for dynamic charges and one float of each type for
	// NaN canonicalization.
	nLocals                uint32
	scratch                []wasm.LocalDecl
	i32, f32, f64          uint32
	hasI32, hasF32, hasF64 bool
	nImported              uint64 // imported functions: calls to them are host calls
}

func (f *fn) local(t wasm.ValType) uint32 {
	var have *bool
	var slot *uint32
	switch t {
	case wasm.I32:
		have, slot = &f.hasI32, &f.i32
	case wasm.F32:
		have, slot = &f.hasF32, &f.f32
	default:
		have, slot = &f.hasF64, &f.f64
	}
	if !*have {
		*have, *slot = true, f.nLocals
		f.nLocals++
		f.scratch = append(f.scratch, wasm.LocalDecl{Count: 1, Type: t})
	}
	return *slot
}

// charge appends gas_left -= cost, then, if check, the trap
// if gas_left < 0 { unreachable }.
func (f *fn) charge(dst []wasm.Instr, cost uint64, check bool) []wasm.Instr {
	if cost > 0 {
		dst = append(dst,
			idx(wasm.OpGlobalGet, f.g.gas), i64c(int64(cost)), op(wasm.OpI64Sub), idx(wasm.OpGlobalSet, f.g.gas))
	}
	if check {
		dst = f.trapIfNegative(dst)
	}
	return dst
}

func (f *fn) trapIfNegative(dst []wasm.Instr) []wasm.Instr {
	return append(dst,
		idx(wasm.OpGlobalGet, f.g.gas), i64c(0), op(wasm.OpI64LtS),
		block(wasm.OpIf, wasm.BlockEmpty), op(wasm.OpUnreachable), op(wasm.OpEnd))
}

// dynamic charges gas for the i32 operand on top of the stack (kept there):
// gas_left -= extend_u(n) * mul / div.
func (f *fn) dynamic(mul, div int64) {
	t := f.local(wasm.I32)
	f.out = append(f.out,
		idx(wasm.OpLocalSet, t),
		idx(wasm.OpGlobalGet, f.g.gas), idx(wasm.OpLocalGet, t), op(wasm.OpI64ExtendI32U))
	if mul != 1 {
		f.out = append(f.out, i64c(mul), op(wasm.OpI64Mul))
	}
	if div != 1 {
		// div is a power of two (BulkBytesPerGas): a shift, not a
		// division, which the compiler engine does not strength-reduce.
		f.out = append(f.out, i64c(int64(bits.TrailingZeros64(uint64(div)))), op(opI64ShrU))
	}
	f.out = append(f.out, op(wasm.OpI64Sub), idx(wasm.OpGlobalSet, f.g.gas))
	f.out = f.trapIfNegative(f.out)
	f.out = append(f.out, idx(wasm.OpLocalGet, t))
}

// canonicalize replaces a NaN of type t on top of the stack by the
// canonical NaN: select(x, NaN, x == x).
func (f *fn) canonicalize(t wasm.ValType) {
	if t == wasm.F32 {
		l := f.local(wasm.F32)
		f.out = append(f.out, idx(wasm.OpLocalTee, l), wasm.Instr{Op: wasm.OpF32Const, A: uint64(CanonicalNaN32)},
			idx(wasm.OpLocalGet, l), idx(wasm.OpLocalGet, l), op(wasm.OpF32Eq), op(wasm.OpSelect))
		return
	}
	l := f.local(wasm.F64)
	f.out = append(f.out, idx(wasm.OpLocalTee, l), wasm.Instr{Op: wasm.OpF64Const, A: CanonicalNaN64},
		idx(wasm.OpLocalGet, l), idx(wasm.OpLocalGet, l), op(wasm.OpF64Eq), op(wasm.OpSelect))
}

func (f *fn) depthDown(dst []wasm.Instr) []wasm.Instr {
	return append(dst, idx(wasm.OpGlobalGet, f.g.depth), i32c(1), op(wasm.OpI32Sub), idx(wasm.OpGlobalSet, f.g.depth))
}

// foldedBulk reports whether body[j] is a memory.copy, memory.fill or
// memory.init whose length is the constant just before it, at most
// FoldBulkMax, and returns the length. Its length charge is then known at
// instrumentation time and added to the segment's cost instead of being
// computed and tested at run time: the same gas on success, while a
// segment that runs out still ends out of gas (the host treats gas_left < 0
// after a call as out of gas, and a host call's segment tests first); the
// bound keeps the untested work small. The Go compiler emits such copies
// for every multi-word value.
func foldedBulk(body []wasm.Instr, j int) (uint64, bool) {
	switch body[j].Op {
	case wasm.OpMemoryCopy, wasm.OpMemoryFill, wasm.OpMemoryInit:
	default:
		return 0, false
	}
	if j == 0 || body[j-1].Op != wasm.OpI32Const {
		return 0, false
	}
	n := uint64(uint32(body[j-1].A))
	return n, n <= FoldBulkMax
}

// splits reports whether op ends a metered segment: after it, control may
// go elsewhere than the next instruction (a branch, return or trap), the
// next instruction may be reached from elsewhere (loop, if, else and end
// start or close blocks), or it is a call, which may not come back.
func splits(op wasm.Opcode) bool {
	switch op {
	case wasm.OpLoop, wasm.OpIf, wasm.OpElse, wasm.OpEnd, wasm.OpBr, wasm.OpBrIf, wasm.OpBrTable,
		wasm.OpReturn, wasm.OpUnreachable, wasm.OpCall, wasm.OpCallIndirect:
		return true
	}
	return false
}

// instrumentFunc rewrites one body. m is the output module: a type may be
// added to it for the wrapper block of a multi-result function.
//
// The body is cut into segments, each ending at an instruction for which
// splits is true. Every segment subtracts the sum of its costs before it
// runs; only some also test for a negative balance: the segment at function
// entry and after each loop header (every unbounded repetition passes one of
// them, so even a zero-cost one tests), and a segment that ends in a host
// call (an import, or call_indirect, which may reach one) so no host
// function runs without gas. Between tests a guest runs a bounded stretch
// of forward code, which may take gas_left below zero; the host treats
// gas_left < 0 after a call as out of gas whether the call trapped or
// returned. Testing less often keeps the instrumented code small and cheap
// to compile (each test is a branch).
func instrumentFunc(m *wasm.Module, c *wasm.Code, t wasm.FuncType, g globals, perInstr bool) wasm.Code {
	f := &fn{g: g, nLocals: uint32(uint64(len(t.Params)) + c.NumLocals()), nImported: uint64(m.NumImportedFuncs())}
	f.out = make([]wasm.Instr, 0, len(c.Body)+len(c.Body)/2+32)

	// Prologue: depth++; if depth > MaxCallDepth { exceeded = 1; unreachable }.
	f.out = append(f.out,
		idx(wasm.OpGlobalGet, g.depth), i32c(1), op(wasm.OpI32Add), idx(wasm.OpGlobalSet, g.depth),
		idx(wasm.OpGlobalGet, g.depth), i32c(MaxCallDepth), op(wasm.OpI32GtU),
		block(wasm.OpIf, wasm.BlockEmpty), i32c(1), idx(wasm.OpGlobalSet, g.exceeded), op(wasm.OpUnreachable), op(wasm.OpEnd),
		block(wasm.OpBlock, resultBlockType(m, t.Results)))

	body := c.Body
	check := true // function entry
	for i := 0; i < len(body); {
		// Look ahead to the end of the segment for its cost. The sum
		// cannot overflow: validate caps a body at BodyInstrs
		// instructions of cost <= 16.
		var cost uint64
		j := i
		for ; j < len(body); j++ {
			in := &body[j]
			cost += Cost(in.Op)
			if n, ok := foldedBulk(body, j); ok {
				cost += n / BulkBytesPerGas
			}
			if in.Op == wasm.OpCall && in.A < f.nImported || in.Op == wasm.OpCallIndirect {
				check = true
			}
			if splits(in.Op) || perInstr {
				break
			}
		}
		j = min(j, len(body)-1)
		f.out = f.charge(f.out, cost, check)
		for k, in := range body[i : j+1] {
			switch in.Op {
			case wasm.OpMemoryGrow:
				f.dynamic(GrowPageGas, 1)
			case wasm.OpMemoryCopy, wasm.OpMemoryFill, wasm.OpMemoryInit:
				if _, ok := foldedBulk(body, i+k); !ok {
					f.dynamic(1, BulkBytesPerGas)
				}
			case wasm.OpReturn:
				f.out = f.depthDown(f.out)
			}
			f.out = append(f.out, in)
			if nt := nanResult(in.Op); nt != 0 {
				f.canonicalize(nt)
			}
		}
		check = body[j].Op == wasm.OpLoop // the loop header tests
		i = j + 1
	}
	// Epilogue: the wrapper block ends here, so fallthrough and branches to
	// the function's label both pass the decrement.
	f.out = append(f.out, op(wasm.OpEnd))
	f.out = f.depthDown(f.out)

	locals := append(append([]wasm.LocalDecl(nil), c.Locals...), f.scratch...)
	return wasm.Code{Locals: locals, Body: f.out}
}

// resultBlockType is a block type producing results, adding a [] -> results
// type to m when there is more than one.
func resultBlockType(m *wasm.Module, results []wasm.ValType) int64 {
	switch len(results) {
	case 0:
		return wasm.BlockEmpty
	case 1:
		return wasm.BlockOf(results[0])
	}
	want := wasm.FuncType{Results: results}
	for i, t := range m.Types {
		if t.Equal(want) {
			return int64(i)
		}
	}
	m.Types = append(m.Types, want)
	return int64(len(m.Types) - 1)
}
