package meter

import "github.com/kairos-network/kairos/runtime/wasm"

// Runs of writes relative to one local. The Go compiler's wasm code keeps
// its stack in linear memory and addresses it through one i32 local (the
// stack pointer): between two calls a function stores several arguments
// and spilled values at constant offsets from it, each as `local.get SP`
// or `local.get SP; i64.extend_i32_u; i64.const C; i64.add; i32.wrap_i64`
// followed by the value and the store. Marking every one of those stores
// costs two table.set and a dozen instructions each; Track instead marks
// a whole run of them once, where the run ends (before the next control
// instruction, call, or write that moves the local to an unknown value).
//
// What a run needs to be sound:
//   - Every write of the run is at L₀ + Kᵢ (mod 2³²) for one value L₀ of
//     the local and constants Kᵢ (store offsets included) within a span
//     of at most RunSpanMax bytes; the marks at the end of the run are
//     the pages of its first and its last byte (the first only when the
//     span is at most 8 bytes, which the host's 7-byte reach covers).
//     The first and last bytes were written, so they are in memory; with
//     memory smaller than 2³² − RunSpanMax bytes no address in between
//     wraps, so every byte written lies in those two pages.
//   - The marks run after the writes, in the same straight-line code: no
//     branch, call or block boundary lies between a write and its mark.
//     A write that traps ends the call before the marks of the earlier
//     writes of its run: Track then leaves changed bytes unmarked, which
//     is sound only because an instance whose call did not end normally
//     is never reused (runtime/vm discards it; runtime/exec's pool closes
//     a failed instance) — FuzzTrack checks marks on completed calls only.
//   - The analysis is an abstract interpretation of the operand stack over
//     straight-line code: a value is known only as "local L at its version
//     B, plus a constant" or as a constant, and anything it does not model
//     (a control instruction, a call, an opcode without a stack effect
//     below) forgets the whole stack, so a write whose address is not
//     provably such a value is marked on its own, as before.
//
// The local is read back when the run ends: writes to it that keep its
// value relative to B (`local.tee SP` of `SP - 8`, Go's call sequence)
// carry the offset along; any other write to it ends the run first.

// RunSpanMax is the widest run of writes Track marks as one (see above):
// at most two pages.
const RunSpanMax = 1 << PageShift

// aval is the abstract value of one operand-stack slot.
type aval struct {
	kind  uint8
	local uint32 // avBase32, avBase64: the local
	base  uint32 // the version of the local the offset is relative to
	off   uint32 // avBase32: the value is local@base + off (mod 2^32)
	c     int64  // avConst: the value; avBase64: zext(local@base + off) + c
}

const (
	avUnknown uint8 = iota
	avConst
	avBase32
	avBase64
)

// lval is what a local holds: its value at version base, plus off.
type lval struct{ base, off uint32 }

// run is a pending run of writes at local@base + [lo, hi) (offsets
// relative to k0, mod 2^32).
type run struct {
	on     bool
	local  uint32
	base   uint32
	k0     uint32
	lo, hi int64
}

// runs is the state of the run analysis over one function body.
type runs struct {
	enabled bool
	types   []wasm.ValType // of the params and locals
	stack   []aval
	locals  map[uint32]lval // locals written or read since the body began
	nextVer uint32
	cur     run
}

// runsLocalsMax bounds the locals whose types newRuns lists: validate
// allows far fewer; a function with more (never Instrument's output of a
// valid module) is tracked store by store.
const runsLocalsMax = 1 << 16

func newRuns(enabled bool, ft wasm.FuncType, c *wasm.Code) *runs {
	enabled = enabled && uint64(len(ft.Params))+c.NumLocals() <= runsLocalsMax
	r := &runs{enabled: enabled, locals: map[uint32]lval{}}
	if !enabled {
		return r
	}
	r.types = append(r.types, ft.Params...)
	for _, d := range c.Locals {
		for range d.Count {
			r.types = append(r.types, d.Type)
		}
	}
	return r
}

func (r *runs) push(v aval) { r.stack = append(r.stack, v) }

func (r *runs) pop() aval {
	if len(r.stack) == 0 {
		return aval{}
	}
	v := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	return v
}

// get is what local l holds now.
func (r *runs) get(l uint32) lval {
	v, ok := r.locals[l]
	if !ok {
		r.nextVer++
		v = lval{base: r.nextVer}
		r.locals[l] = v
	}
	return v
}

// reset forgets the stack and what the locals hold: after a control
// instruction, paths join or leave (a local may hold different values on
// them), and after anything not modelled.
func (r *runs) reset() {
	r.stack = r.stack[:0]
	clear(r.locals)
}

// set records a write of v to local l; the run on l must be flushed first
// when it changes l's version (flushFirst).
func (r *runs) set(l uint32, v aval) {
	if v.kind == avBase32 && v.local == l {
		r.locals[l] = lval{base: v.base, off: v.off}
		return
	}
	r.nextVer++
	r.locals[l] = lval{base: r.nextVer}
}

// flushFirst reports whether writing v to local l ends the pending run.
func (r *runs) flushFirst(l uint32, v aval) bool {
	return r.cur.on && r.cur.local == l && !(v.kind == avBase32 && v.local == l && v.base == r.cur.base)
}

// addr returns the write at address a + off of n bytes as a place in a
// run, ok false when a is not a usable local-relative value.
func (r *runs) addr(a aval, off uint32) (local, base, k uint32, ok bool) {
	if !r.enabled || a.kind != avBase32 || r.get(a.local).base != a.base {
		return 0, 0, 0, false
	}
	return a.local, a.base, a.off + off, true
}

// join reports whether the write [k, k+n) at local@base joins the pending
// run (false: the caller flushes it and starts another).
func (r *runs) join(local, base, k uint32, n int64) bool {
	if !r.cur.on || r.cur.local != local || r.cur.base != base {
		return false
	}
	rel := int64(int32(k - r.cur.k0))
	lo, hi := min(r.cur.lo, rel), max(r.cur.hi, rel+n)
	if hi-lo > RunSpanMax {
		return false
	}
	r.cur.lo, r.cur.hi = lo, hi
	return true
}

// step updates the abstract stack for in, which is not a store, bulk
// operation, control instruction or call; false when it does not model in
// (the caller then ends the run and forgets the stack).
func (r *runs) step(in wasm.Instr) bool {
	switch o := in.Op; {
	case o == wasm.OpLocalGet:
		l := uint32(in.A)
		if int(l) < len(r.types) && r.types[l] == wasm.I32 {
			v := r.get(l)
			r.push(aval{kind: avBase32, local: l, base: v.base, off: v.off})
		} else {
			r.push(aval{})
		}
	case o == wasm.OpLocalSet || o == wasm.OpLocalTee:
		v := r.pop()
		r.set(uint32(in.A), v)
		if o == wasm.OpLocalTee {
			r.push(v)
		}
	case o == wasm.OpI32Const:
		r.push(aval{kind: avConst, c: int64(int32(in.A))})
	case o == wasm.OpI64Const:
		r.push(aval{kind: avConst, c: int64(in.A)})
	case o == wasm.OpI32Add || o == wasm.OpI32Sub:
		b, a := r.pop(), r.pop()
		switch {
		case a.kind == avBase32 && b.kind == avConst:
			if o == wasm.OpI32Sub {
				b.c = -b.c
			}
			a.off += uint32(b.c)
			r.push(a)
		case o == wasm.OpI32Add && b.kind == avBase32 && a.kind == avConst:
			b.off += uint32(a.c)
			r.push(b)
		default:
			r.push(aval{})
		}
	case o == wasm.OpI64ExtendI32U:
		if a := r.pop(); a.kind == avBase32 {
			r.push(aval{kind: avBase64, local: a.local, base: a.base, off: a.off})
		} else {
			r.push(aval{})
		}
	case o == wasm.OpI64Add || o == wasm.OpI64Sub:
		b, a := r.pop(), r.pop()
		if o == wasm.OpI64Add && b.kind == avBase64 && a.kind == avConst {
			a, b = b, a
		}
		if a.kind == avBase64 && b.kind == avConst && b.c > -1<<40 && b.c < 1<<40 && a.c > -1<<40 && a.c < 1<<40 {
			if o == wasm.OpI64Sub {
				b.c = -b.c
			}
			a.c += b.c
			r.push(a)
		} else {
			r.push(aval{})
		}
	case o == opI32WrapI64:
		switch a := r.pop(); a.kind {
		case avBase64:
			r.push(aval{kind: avBase32, local: a.local, base: a.base, off: a.off + uint32(a.c)})
		case avConst:
			r.push(aval{kind: avConst, c: int64(int32(a.c))})
		default:
			r.push(aval{})
		}
	default:
		pops, pushes, ok := stackEffect(o)
		if !ok {
			return false
		}
		for range pops {
			r.pop()
		}
		for range pushes {
			r.push(aval{})
		}
	}
	return true
}

// stackEffect is the operand count an instruction pops and pushes, for
// the instructions step models without looking at values; ok false for
// the rest.
func stackEffect(o wasm.Opcode) (pops, pushes int, ok bool) {
	switch {
	case o == wasm.OpNop:
		return 0, 0, true
	case o == wasm.OpDrop:
		return 1, 0, true
	case o == wasm.OpSelect:
		return 3, 1, true
	case o == wasm.OpGlobalGet, o == wasm.OpMemorySize, o == wasm.OpF32Const, o == wasm.OpF64Const:
		return 0, 1, true
	case o == wasm.OpGlobalSet:
		return 1, 0, true
	case o >= wasm.OpI32Load && o <= 0x35, o == wasm.OpMemoryGrow: // loads
		return 1, 1, true
	case o == wasm.OpI32Eqz, o == 0x50, // i32.eqz, i64.eqz
		o >= 0x67 && o <= 0x69, o >= 0x79 && o <= 0x7B, // clz ctz popcnt
		o >= 0x8B && o <= 0x91, o >= 0x99 && o <= 0x9F, // float unary
		o >= 0xA7 && o <= 0xC4,     // conversions, sign extension
		o >= 0xFC00 && o <= 0xFC07: // saturating truncations
		return 1, 1, true
	case o >= 0x46 && o <= 0x4F, o >= 0x51 && o <= 0x66, // comparisons
		o >= 0x6A && o <= 0x78, o >= 0x7C && o <= 0x8A, // integer binary
		o >= 0x92 && o <= 0x98, o >= 0xA0 && o <= 0xA6: // float binary
		return 2, 1, true
	case o == wasm.OpDataDrop:
		return 0, 0, true
	}
	return 0, 0, false
}

// ends reports whether in ends every run: control may leave or enter the
// straight-line code at it, or it calls out.
func ends(o wasm.Opcode) bool {
	switch o {
	case wasm.OpBlock, wasm.OpLoop, wasm.OpIf, wasm.OpElse, wasm.OpEnd, wasm.OpBr, wasm.OpBrIf, wasm.OpBrTable,
		wasm.OpReturn, wasm.OpUnreachable, wasm.OpCall, wasm.OpCallIndirect:
		return true
	}
	return false
}
