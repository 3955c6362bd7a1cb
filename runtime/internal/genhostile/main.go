// Command genhostile writes the hostile-module corpus,
// runtime/testdata/hostile/*.wasm, from the builders below:
//
//	go run ./runtime/internal/genhostile
//
// Each module attacks one resource or rule; runtime/enginetest deploys
// every one and checks it is rejected with the rule's sentinel or runs to
// a deterministic status with the same gas on every engine. The files are
// committed so the corpus is stable input even if a builder changes; a
// test in this package fails when they differ from what it would write.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kairos-network/kairos/runtime/deploy"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

func main() {
	dir := flag.String("dir", "runtime/testdata/hostile", "output directory")
	flag.Parse()
	if err := write(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "genhostile:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := corpus()
	for _, name := range names(c) {
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), c[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

func names(c map[string][]byte) []string {
	var out []string
	for n := range c {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// corpus is every hostile module by file name (without .wasm). Runnable
// modules export their attacks as methods () -> ().
func corpus() map[string][]byte {
	lim := validate.DefaultLimits()
	c := map[string][]byte{}
	mod := func(build func(b *Builder)) []byte {
		b := New()
		build(b)
		return b.Bytes()
	}
	withMemory := func(build func(b *Builder)) []byte {
		return mod(func(b *Builder) { b.Memory(1, -1); build(b) })
	}
	loop := func(body ...wasm.Instr) []wasm.Instr {
		return append(append([]wasm.Instr{Block(wasm.OpLoop, wasm.BlockEmpty)}, body...), Idx(wasm.OpBr, 0), Op(wasm.OpEnd))
	}

	c["infinite_loop"] = withMemory(func(b *Builder) { b.Func("run", nil, nil, nil, loop()...) })
	c["recursion_bomb"] = withMemory(func(b *Builder) { b.Func("run", nil, nil, nil, Idx(wasm.OpCall, 0)) })
	// Grows one page at a time until the engine's limit answers -1.
	c["memory_grow_loop"] = withMemory(func(b *Builder) {
		b.Func("run", nil, nil, nil, Block(wasm.OpLoop, wasm.BlockEmpty),
			I32(1), Op(wasm.OpMemoryGrow), I32(-1), Op(opI32Ne), Idx(wasm.OpBrIf, 0), Op(wasm.OpEnd))
	})
	c["huge_memory"] = mod(func(b *Builder) { b.Memory(65536, -1) })
	c["huge_br_table"] = withMemory(func(b *Builder) {
		labels := make([]uint32, lim.BrTableTargets+1)
		b.Func("run", nil, nil, nil, Block(wasm.OpBlock, wasm.BlockEmpty), I32(0), BrTable(0, labels...), Op(wasm.OpEnd))
	})
	c["many_functions"] = withMemory(func(b *Builder) {
		for range lim.Functions + 1 {
			b.Func("", nil, nil, nil)
		}
	})
	c["many_locals"] = withMemory(func(b *Builder) {
		locals := make([]wasm.ValType, lim.LocalsPerFunc+1)
		for i := range locals {
			locals[i] = wasm.I64
		}
		b.Func("run", nil, nil, locals)
	})
	c["invalid_binary"] = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0xff}, 64)...)
	c["unknown_import"] = mod(func(b *Builder) {
		b.Import("env", "now", nil, []wasm.ValType{wasm.I64})
		b.Memory(1, -1)
		b.Func("run", nil, nil, nil, Idx(wasm.OpCall, 0), Op(wasm.OpDrop))
	})
	c["disallowed_wasi"] = mod(func(b *Builder) {
		b.Import(validate.WASIModule, "path_unlink_file", []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}, I32s)
		b.Memory(1, -1)
		b.Func("run", nil, nil, nil, I32(3), I32(0), I32(4), Idx(wasm.OpCall, 0), Op(wasm.OpDrop))
	})
	c["own_gas_left"] = withMemory(func(b *Builder) {
		g := b.Global(wasm.I64, true, I64(1<<62))
		b.M.Exports = append(b.M.Exports, wasm.Export{Name: validate.ReservedGas, Kind: wasm.ExternGlobal, Index: g})
		b.Func("run", nil, nil, nil)
	})
	c["float_nan"] = floatNaN()
	c["wild_pointers"] = wildPointers()
	return c
}

// Opcodes runtime/wasm has no name for.
const (
	opI32Ne             wasm.Opcode = 0x47
	opF32Sqrt           wasm.Opcode = 0x91
	opF32Sub            wasm.Opcode = 0x93
	opF64Sqrt           wasm.Opcode = 0x9F
	opF64Mul            wasm.Opcode = 0xA2
	opF32DemoteF64      wasm.Opcode = 0xB6
	opF64PromoteF32     wasm.Opcode = 0xBB
	opI32ReinterpretF32 wasm.Opcode = 0xBC
	opI64ReinterpretF64 wasm.Opcode = 0xBD
)

// floatNaN computes NaNs with several payloads (0/0, sqrt(-1), arithmetic
// on a signalling NaN with a payload, demote/promote) in f32 and f64 and
// returns their bits: engines disagree on NaN payloads unless the meter
// canonicalizes them.
func floatNaN() []byte {
	b := New()
	ret := b.Import("kairos", "return_data", []wasm.ValType{wasm.I32, wasm.I32}, nil)
	b.Memory(1, -1)
	var body []wasm.Instr
	at := int32(0)
	store64 := func(v ...wasm.Instr) {
		body = append(append(append(body, I32(at)), v...), Op(opI64ReinterpretF64), Mem(wasm.OpI64Store, 3, 0))
		at += 8
	}
	store32 := func(v ...wasm.Instr) {
		body = append(append(append(body, I32(at)), v...), Op(opI32ReinterpretF32), Mem(wasm.OpI32Store, 2, 0))
		at += 4
	}
	const snan64, snan32 = 0x7ff0_0000_dead_beef, 0x7f80_beef
	store64(F64Bits(0), F64Bits(0), Op(wasm.OpF64Div))
	store64(F64Bits(0xbff0_0000_0000_0000), Op(opF64Sqrt))
	store64(F64Bits(snan64), F64Bits(0x3ff0_0000_0000_0000), Op(wasm.OpF64Add))
	store64(F64Bits(0xfff8_0000_0000_1234), F64Bits(snan64), Op(opF64Mul))
	store64(F32Bits(snan32), Op(opF64PromoteF32))
	store32(F32Bits(0), F32Bits(0), Op(wasm.OpF32Div))
	store32(F32Bits(snan32), F32Bits(0x3f80_0000), Op(opF32Sub))
	store32(F64Bits(snan64), Op(opF32DemoteF64))
	store32(F32Bits(0xffc0_1234), Op(opF32Sqrt))
	body = append(body, I32(0), I32(at), Idx(wasm.OpCall, ret))
	b.Func("run", nil, nil, nil, body...)
	return b.Bytes()
}

// wildPointers exports w_<name> for every ABI function (host and virtual
// WASI), calling it with every i32 argument 0xfffffff0 (16 bytes before
// the end of the address space) and every i64 argument -1.
func wildPointers() []byte {
	b := New()
	fs := deploy.Imports()
	for _, f := range fs {
		b.Import(f.Module, f.Name, f.Type.Params, f.Type.Results)
	}
	b.Memory(1, -1)
	for i, f := range fs {
		var body []wasm.Instr
		for _, p := range f.Type.Params {
			if p == wasm.I64 {
				body = append(body, I64(-1))
			} else {
				body = append(body, I32(-16))
			}
		}
		body = append(body, Idx(wasm.OpCall, uint32(i)))
		for range f.Type.Results {
			body = append(body, Op(wasm.OpDrop))
		}
		b.Func("w_"+f.Name, nil, nil, nil, body...)
	}
	return b.Bytes()
}
