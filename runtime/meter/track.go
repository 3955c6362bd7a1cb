package meter

import (
	"errors"
	"fmt"

	"github.com/kairos-network/kairos/runtime/wasm"
)

// Dirty-page tracking: Track rewrites an instrumented module so that every
// write to linear memory marks its 4 KiB page in a funcref table the guest
// cannot address; the host then restores only the marked pages (runtime/vm).
// Track is not part of the consensus format: it adds no gas and changes no
// result, so a node applies it when it compiles code, never at deploy.

// PageShift is log2 of the tracked page size (4 KiB).
const PageShift = 12

// GroupShift is log2 of the pages in a group: a mark of a page also marks
// its group in a second, summary table (or, for the second page of a span
// of at most a page, the walk does: markNext), so that finding the marked
// pages reads the summary and the pages of marked groups only, not one
// entry per page of memory (a Go guest's snapshot has 640 pages).
const GroupShift = 6

// DirtyExport is the function Track exports: dirty(from, limit) finds the
// first marked group in [from, limit) and returns it with a mask of its
// marked pages (bit i: page group·64 + i), clearing the group's marks, and
// the next marked group in the range (-1: none); (-1, 0, -1) when no group
// is marked. limit must not exceed the tracked groups
// (TrackConfig.MemoryPages/4) or it traps.
const DirtyExport = "__kairos_dirty"

// ErrUntracked: Track cannot account for every write the module can make
// (an imported memory, or a host import TrackConfig does not describe);
// the caller restores whole snapshots instead.
var ErrUntracked = errors.New("meter: memory writes cannot be tracked")

// Region is guest memory a host function may write during a call:
// [arg Ptr, arg Ptr + Fixed + Scale·arg Len) (without the Len term when Len
// is negative). Track marks it after the call returns, clamped to memory.
type Region struct {
	Ptr   int
	Len   int
	Scale uint32
	Fixed uint32
}

// TrackConfig says what Track may assume.
type TrackConfig struct {
	// MemoryPages is the most 64 KiB pages memory can ever have (the
	// engine's limit): the table covers them all, so no mark can trap.
	MemoryPages uint32
	// HostWrites returns the regions an imported function writes (nil for
	// none), ok false for a function it does not know.
	HostWrites func(module, name string) (regions []Region, ok bool)
}

// Track returns a copy of m in which every memory write is recorded (see
// the comment at the top of this file): stores mark the page of their
// effective address after they succeed (a store of up to 8 bytes may reach
// 7 bytes into the next page: the host restores those with the page);
// memory.fill, memory.copy and memory.init mark their range after they
// succeed; the host functions that write are called through added wrappers
// that mark what they may have written. Added code neither charges gas nor
// counts call depth. m must be Instrument's output.
func Track(m *wasm.Module, cfg TrackConfig) (*wasm.Module, error) {
	if len(m.Memories) != 1 || cfg.MemoryPages == 0 {
		return nil, fmt.Errorf("%w: %d defined memories, %d pages", ErrUntracked, len(m.Memories), cfg.MemoryPages)
	}
	t := &tracker{m: m, wrappers: map[uint32]uint32{}}
	out := *m
	t.out = &out
	out.Layout = nil
	out.Types = append([]wasm.FuncType(nil), m.Types...)
	out.Funcs = append([]uint32(nil), m.Funcs...)
	out.Code = append([]wasm.Code(nil), m.Code...)
	out.Globals = append([]wasm.Global(nil), m.Globals...)
	out.Tables = append([]wasm.Limits(nil), m.Tables...)
	out.Exports = append([]wasm.Export(nil), m.Exports...)

	nImpFuncs := uint32(m.NumImportedFuncs())
	var nImpTables uint32
	for _, im := range m.Imports {
		if im.Kind == wasm.ExternTable {
			nImpTables++
		}
		if im.Kind == wasm.ExternMemory {
			return nil, fmt.Errorf("%w: imported memory", ErrUntracked)
		}
	}
	pages := uint64(cfg.MemoryPages) << (16 - PageShift)
	if mem := m.Memories[0]; mem.HasMax {
		pages = min(pages, uint64(mem.Max)<<(16-PageShift))
	}
	// A run's marks need memory to end RunSpanMax bytes below 2^32.
	t.runs = pages<<PageShift+RunSpanMax <= 1<<32
	if pages > 1<<(32-PageShift) {
		pages = 1 << (32 - PageShift)
	}
	// Whole groups: a page entry past memory is never marked.
	pages = max((pages+1<<GroupShift-1)>>GroupShift<<GroupShift, 1<<GroupShift)
	t.table = nImpTables + uint32(len(out.Tables))
	t.sum = t.table + 1
	out.Tables = append(out.Tables,
		wasm.Limits{Min: uint32(pages), Max: uint32(pages), HasMax: true},
		wasm.Limits{Min: uint32(pages >> GroupShift), Max: uint32(pages >> GroupShift), HasMax: true})
	t.global = uint32(m.NumImportedGlobals() + len(out.Globals))
	t.mark = t.addFunc(wasm.FuncType{Params: []wasm.ValType{wasm.I32, wasm.I64}}, t.markBody())
	out.Globals = append(out.Globals, wasm.Global{GlobalType: wasm.GlobalType{Type: wasm.FuncRef}, Init: idx(wasm.OpRefFunc, t.mark)})
	dirty := t.addFunc(wasm.FuncType{Params: []wasm.ValType{wasm.I32, wasm.I32}, Results: []wasm.ValType{wasm.I32, wasm.I64, wasm.I32}}, t.dirtyBody())
	out.Exports = append(out.Exports, wasm.Export{Name: DirtyExport, Kind: wasm.ExternFunc, Index: dirty})

	// Writing host functions are reached only through their wrappers:
	// direct calls, table entries (call_indirect), exports and start.
	fi := uint32(0)
	for _, im := range m.Imports {
		if im.Kind != wasm.ExternFunc {
			continue
		}
		regions, ok := cfg.HostWrites(im.Module, im.Name)
		if !ok {
			return nil, fmt.Errorf("%w: host function %s.%s", ErrUntracked, im.Module, im.Name)
		}
		if len(regions) > 0 {
			w, err := t.wrapper(im.TypeIndex, fi, regions)
			if err != nil {
				return nil, err
			}
			t.wrappers[fi] = w
		}
		fi++
	}
	redirect := func(f uint32) uint32 {
		if w, ok := t.wrappers[f]; ok {
			return w
		}
		return f
	}
	for i := range m.Code { // the original functions only: added ones are final
		out.Code[i] = t.body(&m.Code[i], m.Types[m.Funcs[i]], redirect)
	}
	out.Elements = make([]wasm.Element, len(m.Elements))
	for i, e := range m.Elements {
		e.Funcs = append([]uint32(nil), e.Funcs...)
		for j, f := range e.Funcs {
			e.Funcs[j] = redirect(f)
		}
		out.Elements[i] = e
	}
	for i := range out.Exports {
		if out.Exports[i].Kind == wasm.ExternFunc && out.Exports[i].Index < nImpFuncs {
			out.Exports[i].Index = redirect(out.Exports[i].Index)
		}
	}
	if m.Start != nil {
		s := redirect(*m.Start)
		out.Start = &s
	}
	return &out, nil
}

type tracker struct {
	m, out   *wasm.Module
	table    uint32            // the dirty-page table
	sum      uint32            // the group table: a group holds a marked page
	global   uint32            // an immutable non-null funcref: the mark
	mark     uint32            // mark(ptr i32, len i64)
	wrappers map[uint32]uint32 // writing import -> its wrapper
	runs     bool              // mark runs of local-relative writes once (runs.go)
}

// addFunc appends a function and returns its index.
func (t *tracker) addFunc(ft wasm.FuncType, c wasm.Code) uint32 {
	t.out.Types = append(t.out.Types, ft)
	t.out.Funcs = append(t.out.Funcs, uint32(len(t.out.Types)-1))
	t.out.Code = append(t.out.Code, c)
	return uint32(t.m.NumImportedFuncs() + len(t.out.Funcs) - 1)
}

// markBody is mark(p i32, n i64), which the host-function wrappers call:
// mark the pages of [p, p+n) ∩ memory. A host function may write less than
// the capacity it is given, and only checks what it writes, so the range is
// clamped to memory rather than trusted: marking never traps.
func (t *tracker) markBody() wasm.Code {
	const p, n, end, first = 0, 1, 2, 3
	return wasm.Code{
		Locals: []wasm.LocalDecl{{Count: 1, Type: wasm.I64}, {Count: 1, Type: wasm.I32}},
		Body: []wasm.Instr{
			// end = min(p + n, memory bytes), as i64 (no wrap-around).
			idx(wasm.OpLocalGet, p), op(wasm.OpI64ExtendI32U), idx(wasm.OpLocalGet, n), op(wasm.OpI64Add), idx(wasm.OpLocalSet, end),
			op(wasm.OpMemorySize), op(wasm.OpI64ExtendI32U), i64c(16), op(opI64Shl), idx(wasm.OpLocalTee, n),
			idx(wasm.OpLocalGet, end), op(opI64LtU),
			block(wasm.OpIf, wasm.BlockEmpty), idx(wasm.OpLocalGet, n), idx(wasm.OpLocalSet, end), op(wasm.OpEnd),
			// Nothing to mark when end <= p.
			idx(wasm.OpLocalGet, end), idx(wasm.OpLocalGet, p), op(wasm.OpI64ExtendI32U), op(opI64LeU),
			block(wasm.OpIf, wasm.BlockEmpty), op(wasm.OpReturn), op(wasm.OpEnd),
			// table.fill(first, mark, last - first + 1), for the pages
			// and for their groups (last is kept in p).
			idx(wasm.OpLocalGet, p), i32c(PageShift), op(opI32ShrU), idx(wasm.OpLocalTee, first),
			idx(wasm.OpGlobalGet, t.global),
			idx(wasm.OpLocalGet, end), i64c(1), op(wasm.OpI64Sub), i64c(PageShift), op(opI64ShrU), op(opI32WrapI64), idx(wasm.OpLocalTee, p),
			idx(wasm.OpLocalGet, first), op(wasm.OpI32Sub), i32c(1), op(wasm.OpI32Add),
			idx(wasm.OpTableFill, t.table),
			idx(wasm.OpLocalGet, first), i32c(GroupShift), op(opI32ShrU), idx(wasm.OpLocalTee, first),
			idx(wasm.OpGlobalGet, t.global),
			idx(wasm.OpLocalGet, p), i32c(GroupShift), op(opI32ShrU),
			idx(wasm.OpLocalGet, first), op(wasm.OpI32Sub), i32c(1), op(wasm.OpI32Add),
			idx(wasm.OpTableFill, t.sum),
		},
	}
}

// markPage marks the page whose number is on the stack, and its group,
// through the scratch local pg: five instructions more than the page's
// table.set alone, and no branch.
func (t *tracker) markPage(pg uint32) []wasm.Instr {
	return []wasm.Instr{
		idx(wasm.OpLocalTee, pg), idx(wasm.OpGlobalGet, t.global), idx(wasm.OpTableSet, t.table),
		idx(wasm.OpLocalGet, pg), i32c(GroupShift), op(opI32ShrU), idx(wasm.OpGlobalGet, t.global), idx(wasm.OpTableSet, t.sum),
	}
}

// markNext marks the page whose number is on the stack, which is the page
// after one markPage marked in the same straight-line code or that page
// itself, without its group: the walk (dirtyBody) reads the first page
// past every marked group and marks that page's group when the page is
// marked.
func (t *tracker) markNext() []wasm.Instr {
	return []wasm.Instr{idx(wasm.OpGlobalGet, t.global), idx(wasm.OpTableSet, t.table)}
}

// dirtyBody is DirtyExport: skip unmarked groups, collect and clear the
// page marks of the first marked one into a mask, then find the next
// marked group (so the host makes no last call only to hear -1). The pages past the
// memory's current size cannot be marked (a mark follows a write that did
// not trap), so a group is read only up to there: a one-page module reads
// 16 entries, not 64.
func (t *tracker) dirtyBody() wasm.Code {
	const g, limit, p, end, mem, mask = 0, 1, 2, 3, 4, 5
	return wasm.Code{
		Locals: []wasm.LocalDecl{{Count: 3, Type: wasm.I32}, {Count: 1, Type: wasm.I64}},
		// p is the next group once the pages are drained.
		Body: []wasm.Instr{
			block(wasm.OpLoop, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, g), idx(wasm.OpLocalGet, limit), op(opI32GeU),
			block(wasm.OpIf, wasm.BlockEmpty), i32c(-1), i64c(0), i32c(-1), op(wasm.OpReturn), op(wasm.OpEnd),
			idx(wasm.OpLocalGet, g), idx(wasm.OpTableGet, t.sum), op(wasm.OpRefIsNull),
			block(wasm.OpIf, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, g), i32c(1), op(wasm.OpI32Add), idx(wasm.OpLocalSet, g),
			idx(wasm.OpBr, 1),
			op(wasm.OpEnd),
			op(wasm.OpEnd),
			idx(wasm.OpLocalGet, g), op(wasm.OpRefNull), idx(wasm.OpTableSet, t.sum),
			// p = g·64; end = min(p + 64, memory pages).
			idx(wasm.OpLocalGet, g), i32c(GroupShift), op(opI32Shl), idx(wasm.OpLocalTee, p),
			i32c(1 << GroupShift), op(wasm.OpI32Add), idx(wasm.OpLocalSet, end),
			op(wasm.OpMemorySize), i32c(16 - PageShift), op(opI32Shl), idx(wasm.OpLocalTee, mem),
			idx(wasm.OpLocalGet, end), op(opI32LtU),
			block(wasm.OpIf, wasm.BlockEmpty), idx(wasm.OpLocalGet, mem), idx(wasm.OpLocalSet, end), op(wasm.OpEnd),
			block(wasm.OpBlock, wasm.BlockEmpty),
			block(wasm.OpLoop, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, p), idx(wasm.OpLocalGet, end), op(opI32GeU), idx(wasm.OpBrIf, 1),
			idx(wasm.OpLocalGet, p), idx(wasm.OpTableGet, t.table), op(wasm.OpRefIsNull), op(wasm.OpI32Eqz),
			block(wasm.OpIf, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, p), op(wasm.OpRefNull), idx(wasm.OpTableSet, t.table),
			idx(wasm.OpLocalGet, mask), i64c(1),
			idx(wasm.OpLocalGet, p), i32c(1<<GroupShift - 1), op(opI32And), op(wasm.OpI64ExtendI32U),
			op(opI64Shl), op(opI64Or), idx(wasm.OpLocalSet, mask),
			op(wasm.OpEnd),
			idx(wasm.OpLocalGet, p), i32c(1), op(wasm.OpI32Add), idx(wasm.OpLocalSet, p),
			idx(wasm.OpBr, 0),
			op(wasm.OpEnd),
			op(wasm.OpEnd),
			// A marked first page of the next group whose group is not
			// marked (markNext) marks it now, so the search below finds
			// it: end = (g+1)·64, read when below the memory's pages.
			idx(wasm.OpLocalGet, g), i32c(1), op(wasm.OpI32Add), i32c(GroupShift), op(opI32Shl), idx(wasm.OpLocalTee, end),
			idx(wasm.OpLocalGet, mem), op(opI32LtU),
			block(wasm.OpIf, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, end), idx(wasm.OpTableGet, t.table), op(wasm.OpRefIsNull), op(wasm.OpI32Eqz),
			block(wasm.OpIf, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, g), i32c(1), op(wasm.OpI32Add), idx(wasm.OpGlobalGet, t.global), idx(wasm.OpTableSet, t.sum),
			op(wasm.OpEnd),
			op(wasm.OpEnd),
			// p = the first marked group after g, or -1.
			idx(wasm.OpLocalGet, g), idx(wasm.OpLocalSet, p),
			block(wasm.OpBlock, wasm.BlockEmpty),
			block(wasm.OpLoop, wasm.BlockEmpty),
			idx(wasm.OpLocalGet, p), i32c(1), op(wasm.OpI32Add), idx(wasm.OpLocalTee, p),
			idx(wasm.OpLocalGet, limit), op(opI32GeU),
			block(wasm.OpIf, wasm.BlockEmpty), i32c(-1), idx(wasm.OpLocalSet, p), idx(wasm.OpBr, 2), op(wasm.OpEnd),
			idx(wasm.OpLocalGet, p), idx(wasm.OpTableGet, t.sum), op(wasm.OpRefIsNull), idx(wasm.OpBrIf, 0),
			op(wasm.OpEnd),
			op(wasm.OpEnd),
			idx(wasm.OpLocalGet, g), idx(wasm.OpLocalGet, mask), idx(wasm.OpLocalGet, p),
		},
	}
}

// wrapper returns a function with import fi's signature that calls it and
// then marks what it may have written.
func (t *tracker) wrapper(ti, fi uint32, regions []Region) (uint32, error) {
	if uint64(ti) >= uint64(len(t.m.Types)) {
		return 0, fmt.Errorf("%w: import type %d of %d", ErrInvalid, ti, len(t.m.Types))
	}
	ft := t.m.Types[ti]
	var body []wasm.Instr
	for i := range ft.Params {
		body = append(body, idx(wasm.OpLocalGet, uint32(i)))
	}
	body = append(body, idx(wasm.OpCall, fi))
	arg := func(i int) (wasm.ValType, bool) {
		if i < 0 || i >= len(ft.Params) {
			return 0, false
		}
		return ft.Params[i], true
	}
	for _, r := range regions {
		if pt, ok := arg(r.Ptr); !ok || pt != wasm.I32 {
			return 0, fmt.Errorf("%w: %s region pointer %d", ErrUntracked, t.m.Types[ti].Params, r.Ptr)
		}
		body = append(body, idx(wasm.OpLocalGet, uint32(r.Ptr)), i64c(int64(r.Fixed)))
		if r.Len >= 0 {
			lt, ok := arg(r.Len)
			if !ok || (lt != wasm.I32 && lt != wasm.I64) {
				return 0, fmt.Errorf("%w: region length %d", ErrUntracked, r.Len)
			}
			body = append(body, idx(wasm.OpLocalGet, uint32(r.Len)))
			if lt == wasm.I32 {
				body = append(body, op(wasm.OpI64ExtendI32U))
			}
			body = append(body, i64c(int64(max(r.Scale, 1))), op(wasm.OpI64Mul), op(wasm.OpI64Add))
		}
		body = append(body, idx(wasm.OpCall, t.mark))
	}
	return t.addFunc(ft, wasm.Code{Body: body}), nil
}

// Opcodes the tracker emits that the rest of the runtime does not name.
const (
	opI32GeU     wasm.Opcode = 0x4F
	opI64LtU     wasm.Opcode = 0x54
	opI64LeU     wasm.Opcode = 0x58
	opI32LtU     wasm.Opcode = 0x49
	opI32And     wasm.Opcode = 0x71
	opI32Shl     wasm.Opcode = 0x74
	opI32ShrU    wasm.Opcode = 0x76
	opI64And     wasm.Opcode = 0x83
	opI64Or      wasm.Opcode = 0x84
	opI64Shl     wasm.Opcode = 0x86
	opI64ShrU    wasm.Opcode = 0x88
	opI32WrapI64 wasm.Opcode = 0xA7
)

// constLength reports whether the bulk operation body[k] takes the
// constant length just before it, at most a page, and returns it.
func constLength(body []wasm.Instr, k int) (uint32, bool) {
	if k == 0 || body[k-1].Op != wasm.OpI32Const {
		return 0, false
	}
	n := uint32(body[k-1].A)
	return n, n <= 1<<PageShift
}

// storeType is the operand type of a store opcode, 0 for other opcodes.
func storeType(o wasm.Opcode) wasm.ValType {
	switch o {
	case 0x36, 0x3A, 0x3B:
		return wasm.I32
	case 0x37, 0x3C, 0x3D, 0x3E:
		return wasm.I64
	case 0x38:
		return wasm.F32
	case 0x39:
		return wasm.F64
	}
	return 0
}

// body rewrites one original function: stores and bulk operations mark
// their pages, inline through scratch locals or once per run (runs.go),
// and writing host calls go through their wrappers.
func (t *tracker) body(c *wasm.Code, ft wasm.FuncType, redirect func(uint32) uint32) wasm.Code {
	next := uint32(len(ft.Params)) + uint32(c.NumLocals())
	out := wasm.Code{Locals: append([]wasm.LocalDecl(nil), c.Locals...), Body: make([]wasm.Instr, 0, len(c.Body)+len(c.Body)/4)}
	// scratch locals: one per stored value type, the address (or a bulk
	// operation's destination) and the bulk operation's other operands.
	// keyWord+i: inlineBulk's words.
	const keyAddr, keyX, keyN, keyPage, keyWord = 0, 1, 2, 3, 16
	// The words' keys must stay below the value types' (0x7B-0x7F), or a
	// word would take a store's scratch local of another type.
	var _ [0x7B - (keyWord + InlineCopyMax/8)]struct{}
	scratch := map[wasm.ValType]uint32{}
	local := func(key, vt wasm.ValType) uint32 {
		if l, ok := scratch[key]; ok {
			return l
		}
		out.Locals = append(out.Locals, wasm.LocalDecl{Count: 1, Type: vt})
		scratch[key] = next
		next++
		return next - 1
	}
	r := newRuns(t.runs, ft, c)
	flush := func() {
		if r.cur.on {
			out.Body = t.markRun(out.Body, r, local(keyPage, wasm.I32))
		}
	}
	// joinRun adds a write of n bytes at a to the pending run, or to a new
	// one; false when a is not local-relative (the caller marks it).
	joinRun := func(a aval, off uint32, n int64) bool {
		l, base, k, ok := r.addr(a, off)
		if !ok {
			return false
		}
		if !r.join(l, base, k, n) {
			flush()
			r.cur = run{on: true, local: l, base: base, k0: k, hi: n}
		}
		return true
	}
	for k, in := range c.Body {
		switch {
		case ends(in.Op):
			flush()
			r.reset()
			if in.Op == wasm.OpCall {
				in = idx(wasm.OpCall, redirect(uint32(in.A)))
			}
			out.Body = append(out.Body, in)
		case in.Op == wasm.OpLocalSet || in.Op == wasm.OpLocalTee:
			var v aval
			if len(r.stack) > 0 {
				v = r.stack[len(r.stack)-1]
			}
			if r.flushFirst(uint32(in.A), v) {
				flush()
			}
			r.step(in)
			out.Body = append(out.Body, in)
		case storeType(in.Op) != 0:
			r.pop()
			if joinRun(r.pop(), in.B, storeWidth(in.Op)) {
				out.Body = append(out.Body, in)
				continue
			}
			v, a := local(storeType(in.Op), storeType(in.Op)), local(keyAddr, wasm.I32)
			out.Body = append(out.Body,
				idx(wasm.OpLocalSet, v), idx(wasm.OpLocalTee, a), idx(wasm.OpLocalGet, v), in,
				idx(wasm.OpLocalGet, a))
			if in.B != 0 {
				out.Body = append(out.Body, i32c(int32(in.B)), op(wasm.OpI32Add))
			}
			// No branch to skip a page marked already: it made compiling
			// a Go guest twice as slow and its transfers no faster.
			out.Body = append(out.Body, i32c(PageShift), op(opI32ShrU))
			out.Body = append(out.Body, t.markPage(local(keyPage, wasm.I32))...)
		case in.Op == wasm.OpMemoryFill || in.Op == wasm.OpMemoryCopy || in.Op == wasm.OpMemoryInit:
			r.pop()
			r.pop()
			dst := r.pop()
			if n, ok := constLength(c.Body, k); ok {
				if n == 0 {
					out.Body = append(out.Body, in) // nothing written
					continue
				}
				var d, x uint32
				if n%8 == 0 && (in.Op == wasm.OpMemoryCopy && n <= InlineCopyMax || in.Op == wasm.OpMemoryFill && n <= InlineFillMax) {
					// The constant comes off before joinRun, which may
					// emit the marks of an earlier run after it; the
					// operands go to locals for the words.
					out.Body = out.Body[:len(out.Body)-1]
					inRun := joinRun(dst, 0, int64(n))
					d, x = local(keyAddr, wasm.I32), local(keyX, wasm.I32)
					out.Body = append(out.Body, idx(wasm.OpLocalSet, x), idx(wasm.OpLocalSet, d))
					out.Body = inlineBulk(out.Body, in.Op, n, d, x, func(i uint32) uint32 { return local(keyWord+wasm.ValType(i), wasm.I64) })
					if inRun {
						continue // marked with the run
					}
				} else {
					// As it came: an earlier run's marks (joinRun) leave
					// the operands on the stack as they found them.
					if joinRun(dst, 0, int64(n)) {
						out.Body = append(out.Body, in) // marked with the run
						continue
					}
					// The constant, copied as it came, is pushed again
					// after the destination is saved.
					d, x = local(keyAddr, wasm.I32), local(keyX, wasm.I32)
					out.Body = append(out.Body[:len(out.Body)-1], idx(wasm.OpLocalSet, x), idx(wasm.OpLocalTee, d), idx(wasm.OpLocalGet, x), c.Body[k-1], in)
				}
				// A constant length of at most a page spans at most two
				// pages: mark the first and the last, without a branch
				// (the Go compiler copies every multi-word value so).
				pg := local(keyPage, wasm.I32)
				out.Body = append(out.Body, idx(wasm.OpLocalGet, d), i32c(PageShift), op(opI32ShrU))
				out.Body = append(out.Body, t.markPage(pg)...)
				out.Body = append(out.Body, idx(wasm.OpLocalGet, d), i32c(int32(n-1)), op(wasm.OpI32Add), i32c(PageShift), op(opI32ShrU))
				out.Body = append(out.Body, t.markNext()...)
				continue
			}
			// Run it, then mark [d, d+n): in memory, since it did not trap
			// (d+n-1 cannot wrap: d+n <= 2^32). One page is a table.set.
			d, x, n := local(keyAddr, wasm.I32), local(keyX, wasm.I32), local(keyN, wasm.I32)
			out.Body = append(out.Body,
				idx(wasm.OpLocalSet, n), idx(wasm.OpLocalSet, x), idx(wasm.OpLocalTee, d), idx(wasm.OpLocalGet, x), idx(wasm.OpLocalGet, n), in,
				idx(wasm.OpLocalGet, n), block(wasm.OpIf, wasm.BlockEmpty),
				idx(wasm.OpLocalGet, d), i32c(PageShift), op(opI32ShrU), idx(wasm.OpLocalTee, x), // first page
				idx(wasm.OpLocalGet, d), idx(wasm.OpLocalGet, n), op(wasm.OpI32Add), i32c(1), op(wasm.OpI32Sub),
				i32c(PageShift), op(opI32ShrU), idx(wasm.OpLocalTee, n), // last page
				op(wasm.OpI32Eq), block(wasm.OpIf, wasm.BlockEmpty),
				idx(wasm.OpLocalGet, x))
			out.Body = append(out.Body, t.markPage(local(keyPage, wasm.I32))...)
			out.Body = append(out.Body,
				op(wasm.OpElse),
				idx(wasm.OpLocalGet, x), idx(wasm.OpGlobalGet, t.global),
				idx(wasm.OpLocalGet, n), idx(wasm.OpLocalGet, x), op(wasm.OpI32Sub), i32c(1), op(wasm.OpI32Add),
				idx(wasm.OpTableFill, t.table),
				// and their groups: first>>6 .. last>>6
				idx(wasm.OpLocalGet, x), i32c(GroupShift), op(opI32ShrU), idx(wasm.OpLocalTee, x), idx(wasm.OpGlobalGet, t.global),
				idx(wasm.OpLocalGet, n), i32c(GroupShift), op(opI32ShrU), idx(wasm.OpLocalGet, x), op(wasm.OpI32Sub), i32c(1), op(wasm.OpI32Add),
				idx(wasm.OpTableFill, t.sum),
				op(wasm.OpEnd),
				op(wasm.OpEnd))
		default:
			if !r.step(in) {
				flush()
				r.reset()
			}
			out.Body = append(out.Body, in)
		}
	}
	flush()
	return out
}

// InlineCopyMax and InlineFillMax are the longest constant-length
// memory.copy and memory.fill (of a multiple of 8 bytes) that Track
// replaces by loads and stores of words (inlineBulk). A copy holds every
// word in a local before it stores any; a fill needs one.
const (
	InlineCopyMax = 128
	InlineFillMax = 256
)

// inlineBulk appends what memory.copy (x the source) or memory.fill (x
// the byte value) of the constant n bytes at d does, as n/8 word loads and
// stores: the compiler engine calls the Go runtime's memmove for a bulk
// operation, which costs more than the whole copy of the 32 to 96 bytes
// Go's wasm code moves so (addresses, arguments, templates). It is the
// same operation, so gas (charged by Instrument for the original) and
// results are unchanged: every word is loaded before any is stored
// (memmove's overlap rule), and the last word is stored first, so a
// destination out of bounds traps before anything is written, as
// memory.copy and memory.fill do; a source out of bounds traps in the
// loads. word(i) is the i-th i64 scratch local.
func inlineBulk(dst []wasm.Instr, o wasm.Opcode, n, d, x uint32, word func(uint32) uint32) []wasm.Instr {
	words := n / 8
	val := word
	if o == wasm.OpMemoryFill {
		dst = append(dst, idx(wasm.OpLocalGet, x), op(wasm.OpI64ExtendI32U), i64c(0xFF), op(opI64And),
			i64c(0x0101010101010101), op(wasm.OpI64Mul), idx(wasm.OpLocalSet, word(0)))
		val = func(uint32) uint32 { return word(0) }
	} else {
		for i := range words {
			dst = append(dst, idx(wasm.OpLocalGet, x), wasm.Instr{Op: wasm.OpI64Load, B: 8 * i}, idx(wasm.OpLocalSet, word(i)))
		}
	}
	store := func(i uint32) {
		dst = append(dst, idx(wasm.OpLocalGet, d), idx(wasm.OpLocalGet, val(i)), wasm.Instr{Op: wasm.OpI64Store, B: 8 * i})
	}
	store(words - 1)
	for i := range words - 1 {
		store(i)
	}
	return dst
}

// markRun marks the pages of the pending run (see runs.go) and ends it:
// the page of its first byte, and of its last when the span is longer
// than the 7 bytes past a page the host restores with it.
func (t *tracker) markRun(dst []wasm.Instr, r *runs, pg uint32) []wasm.Instr {
	c := r.cur
	r.cur.on = false
	// The local holds local@base + now.off; the run's bytes are at
	// local@base + k0 + [lo, hi).
	now := r.get(c.local).off
	for i, rel := range []int64{c.lo, c.hi - 1} {
		dst = append(dst, idx(wasm.OpLocalGet, c.local))
		if d := c.k0 + uint32(rel) - now; d != 0 {
			dst = append(dst, i32c(int32(d)), op(wasm.OpI32Add))
		}
		dst = append(dst, i32c(PageShift), op(opI32ShrU))
		if i == 0 {
			dst = append(dst, t.markPage(pg)...)
		} else {
			dst = append(dst, t.markNext()...) // the span is at most a page
		}
		if c.hi-c.lo <= 8 {
			break
		}
	}
	return dst
}

// storeWidth is the bytes a store opcode writes.
func storeWidth(o wasm.Opcode) int64 {
	switch o {
	case 0x3A, 0x3C:
		return 1
	case 0x3B, 0x3D:
		return 2
	case 0x36, 0x38, 0x3E:
		return 4
	}
	return 8
}
