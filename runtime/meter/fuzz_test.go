package meter_test

import (
	"reflect"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// gen turns fuzz bytes into a valid function f(i32, i32) -> i32 over i32
// arithmetic, locals, memory, bulk memory, calls, nested blocks, ifs,
// br_if and loops bounded by their own counter locals, so every generated
// module terminates. It tracks the operand stack height to stay valid.
type gen struct {
	src    []byte
	body   []wasm.Instr
	labels []bool // enclosing labels, innermost last: true for a loop (arity 0), false for block/if (arity 1)
}

func (g *gen) next() byte {
	if len(g.src) == 0 {
		return 0
	}
	c := g.src[0]
	g.src = g.src[1:]
	return c
}

const (
	genLocals   = 2 // params 0 and 1 are data; locals 2..4 are loop counters
	genMaxDepth = 3
	genHelper   = 0 // function index of the helper g(x) = x*3 + 1
)

// block emits instructions until the input runs out or a closing choice;
// it returns with exactly one i32 on the stack. Every generated program
// terminates: the only backward branch is each loop's own counted br_if.
func (g *gen) block(depth int, budget *int) {
	height := 0
	for *budget > 0 && len(g.src) > 0 {
		*budget--
		c := g.next()
		if c%16 == 15 && depth > 0 { // close this block
			break
		}
		switch c % 16 {
		case 0:
			g.body = append(g.body, I32(int32(int8(g.next()))))
			height++
		case 1:
			g.body = append(g.body, Idx(wasm.OpLocalGet, uint32(g.next()%genLocals)))
			height++
		case 2, 3:
			if height >= 2 {
				ops := []wasm.Opcode{0x6A, 0x6B, 0x6C, 0x71, 0x72, 0x73, 0x74, 0x76, 0x77, 0x6E, 0x70} // add sub mul and or xor shl shr_u rotl div_u rem_u
				g.body = append(g.body, Op(ops[int(g.next())%len(ops)]))
				height--
			}
		case 4:
			if height >= 1 {
				g.body = append(g.body, Idx(wasm.OpLocalSet, uint32(g.next()%genLocals)))
				height--
			}
		case 5:
			if height >= 1 {
				g.body = append(g.body, Idx(wasm.OpCall, genHelper))
			}
		case 6:
			if height >= 1 { // store then load back through memory
				g.body = append(g.body, Idx(wasm.OpLocalSet, 0), I32(int32(g.next())*4), Idx(wasm.OpLocalGet, 0), Mem(wasm.OpI32Store, 2, 0),
					I32(int32(g.next())*4), Mem(wasm.OpI32Load, 2, 0))
			}
		case 7:
			g.body = append(g.body, I32(int32(g.next())), I32(int32(g.next())), I32(int32(g.next())), Op(wasm.OpMemoryFill))
		case 8:
			g.body = append(g.body, I32(int32(g.next()%2)), Op(wasm.OpMemoryGrow))
			height++
		case 9, 10: // nested block or if with an i32 result
			if depth < genMaxDepth {
				g.labels = append(g.labels, false)
				if c%16 == 10 && height >= 1 {
					g.body = append(g.body, Block(wasm.OpIf, wasm.BlockOf(wasm.I32)))
					height--
					g.block(depth+1, budget)
					g.body = append(g.body, Op(wasm.OpElse))
					g.block(depth+1, budget)
				} else {
					g.body = append(g.body, Block(wasm.OpBlock, wasm.BlockOf(wasm.I32)))
					g.block(depth+1, budget)
				}
				g.body = append(g.body, Op(wasm.OpEnd))
				g.labels = g.labels[:len(g.labels)-1]
				height++
			}
		case 11:
			// br_if out of the current block with a value; never back to a
			// loop header, which would skip the loop's counter.
			if depth > 0 && height >= 2 && !g.labels[len(g.labels)-1] {
				g.body = append(g.body, Idx(wasm.OpBrIf, 0))
				height--
			}
		case 12:
			if depth < genMaxDepth { // loop run 1..8 times, counter local 2+depth
				ctr := uint32(genLocals + depth)
				g.body = append(g.body, I32(int32(g.next()%8)+1), Idx(wasm.OpLocalSet, ctr), Block(wasm.OpLoop, wasm.BlockOf(wasm.I32)))
				g.labels = append(g.labels, true)
				g.block(depth+1, budget)
				g.labels = g.labels[:len(g.labels)-1]
				g.body = append(g.body, Op(wasm.OpDrop),
					Idx(wasm.OpLocalGet, ctr), I32(1), Op(wasm.OpI32Sub), Idx(wasm.OpLocalTee, ctr), Idx(wasm.OpBrIf, 0),
					Idx(wasm.OpLocalGet, ctr), Op(wasm.OpEnd))
				height++
			}
		case 13:
			if height >= 1 {
				g.body = append(g.body, Op(wasm.OpDrop))
				height--
			}
		case 14:
			if len(g.src) > 0 && g.src[0]%8 >= 4 { // writes relative to local 0 (meter.Track's runs)
				g.localWrites(g.next() % 8)
				break
			}
			if height < 1 {
				break
			}
			switch g.next() % 4 {
			case 0: // float round trip; trunc_sat makes NaN 0 on every engine
				g.body = append(g.body, Op(0xB7 /* f64.convert_i32_s */), F64Bits(0x3FF8000000000000), Op(0xA2 /* f64.mul */), Op(0xFC02 /* i32.trunc_sat_f64_s */))
			case 1: // x/0 * 0 is a NaN; only a comparison of it escapes, not its bits
				g.body = append(g.body, Op(0xB2 /* f32.convert_i32_s */), F32Bits(0), Op(wasm.OpF32Div), F32Bits(0), Op(0x94 /* f32.mul */),
					F32Bits(0x3F800000 /* 1 */), Op(0x5D /* f32.lt */))
			case 2: // return from anywhere with the value on top
				g.body = append(g.body, Op(wasm.OpReturn))
			case 3: // br_table over the enclosing block/if labels (arity 1)
				var targets []uint32
				for i := len(g.labels) - 1; i >= 0 && len(targets) < 4; i-- {
					if !g.labels[i] {
						targets = append(targets, uint32(len(g.labels)-1-i))
					}
				}
				if len(targets) > 0 && height >= 1 {
					// value, then the index from param 1
					g.body = append(g.body, Idx(wasm.OpLocalGet, 1), BrTable(targets[0], targets...))
				}
			}
		}
	}
	for ; height > 1; height-- {
		g.body = append(g.body, Op(wasm.OpDrop))
	}
	if height == 0 {
		g.body = append(g.body, I32(7))
	}
}

// localWrites emits stack-neutral writes at local 0 plus constants, as the
// Go compiler writes its stack through the stack pointer's local: k 4 makes
// local 0 an 8-aligned address below 64 KiB, 5 stores through local.get 0,
// 6 through Go's i64 address form, 7 moves local 0 by a constant (local.tee
// as before a Go call) and writes there, or copies a constant length to it.
func (g *gen) localWrites(k byte) {
	stores := []wasm.Opcode{0x36, 0x37, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E}
	st := stores[int(g.next())%len(stores)]
	val := I32(int32(g.next()) - 128)
	if st >= 0x37 && st != 0x3A && st != 0x3B {
		val = I64(int64(g.next()) << 52)
	}
	switch k {
	case 4:
		g.body = append(g.body, Idx(wasm.OpLocalGet, 0), I32(0xFFF8), Op(0x71 /* i32.and */), Idx(wasm.OpLocalSet, 0))
	case 5:
		g.body = append(g.body, Idx(wasm.OpLocalGet, 0), val, Mem(st, 0, uint32(g.next())*8))
	case 6:
		g.body = append(g.body, Idx(wasm.OpLocalGet, 0), Op(wasm.OpI64ExtendI32U), I64(int64(int8(g.next()))*8), Op(wasm.OpI64Add), Op(0xA7 /* i32.wrap_i64 */),
			val, Mem(st, 0, uint32(g.next())))
	default:
		if g.next()%2 == 0 {
			g.body = append(g.body, Idx(wasm.OpLocalGet, 0), I32(int32(g.next())*8), Op(wasm.OpI32Sub), Idx(wasm.OpLocalTee, 0),
				val, Mem(st, 0, 0))
		} else {
			g.body = append(g.body, Idx(wasm.OpLocalGet, 0), I32(int32(g.next())), I32(int32(g.next())*32), Op(wasm.OpMemoryCopy))
		}
	}
}

func genModule(src []byte) []byte {
	b := New()
	b.Memory(1, 4)
	b.Func("", I32s, I32s, nil, Idx(wasm.OpLocalGet, 0), I32(3), Op(wasm.OpI32Mul), I32(1), Op(wasm.OpI32Add))
	g := &gen{src: src}
	budget := 400
	g.block(0, &budget)
	b.Func("f", []wasm.ValType{wasm.I32, wasm.I32}, I32s, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}, g.body...)
	return b.Bytes()
}

// FuzzInstrumentSemantics: for generated valid modules, the instrumented
// module returns what the original returns (or traps when it traps) when
// gas is plentiful, with equal gas on both engines, and — when it does not
// trap — exactly the gas of the per-instruction reference metering.
func FuzzInstrumentSemantics(f *testing.F) {
	f.Add([]byte{0, 5, 1, 1, 2, 0, 12, 3, 1, 0, 0, 2, 0}, uint32(5), uint32(3))
	f.Add([]byte{9, 0, 1, 11, 0, 2, 15, 10, 1, 0, 4, 15, 0, 9, 15, 2, 1}, uint32(5), uint32(3))
	f.Add([]byte{1, 0, 1, 1, 2, 9, 6, 3, 4, 7, 1, 2, 3, 8, 1, 14, 5}, uint32(5), uint32(3))
	f.Add([]byte{12, 7, 12, 7, 12, 7, 1, 0, 5, 15, 15, 15}, uint32(5), uint32(3))
	f.Add([]byte{9, 9, 0, 1, 14, 3, 15, 0, 2, 14, 1, 15, 1, 0, 14, 2}, uint32(0), uint32(1)) // br_table, NaN test, return
	f.Add([]byte{10, 1, 0, 14, 3, 15, 0, 4, 15, 0, 9}, uint32(7), uint32(0))                 // br_table out of an if
	f.Fuzz(func(t *testing.T, src []byte, a, b uint32) {
		orig := genModule(src)
		inst := instrument(t, orig)
		interp, comp := Engines[1], Engines[0]
		want := Instantiate(t, interp, orig).Call("f", 0, uint64(a), uint64(b))
		got := Instantiate(t, interp, inst).Call("f", plenty, uint64(a), uint64(b))
		if !reflect.DeepEqual(want.Values, got.Values) || (want.Trap == "") != (got.Trap == "") {
			t.Fatalf("original %+v, instrumented %+v", want, got)
		}
		if got.OutOfGas || got.DepthExceeded {
			t.Fatalf("instrumented %+v with plenty of gas", got)
		}
		if c := Instantiate(t, comp, inst).Call("f", plenty, uint64(a), uint64(b)); c.GasLeft != got.GasLeft || !reflect.DeepEqual(c.Values, got.Values) {
			t.Fatalf("compiler %+v, interpreter %+v", c, got)
		}
		if got.Trap == "" {
			ref := Instantiate(t, interp, reference(t, orig)).Call("f", plenty, uint64(a), uint64(b))
			if ref.GasLeft != got.GasLeft || !reflect.DeepEqual(ref.Values, got.Values) {
				t.Fatalf("reference metering %+v, segment metering %+v", ref, got)
			}
		}
	})
}
