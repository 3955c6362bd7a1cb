package host_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// hostileModule calls one imported function with arguments taken from the
// transaction input (8 bytes per argument, little-endian, at address 0)
// and returns the function's result, if any.
func hostileModule(f validate.HostFunc) []byte {
	b := wasmtest.New()
	readInput := b.Import("kairos", "input_read", i32x2, wasmtest.I32s)
	returnData := b.Import("kairos", "return_data", i32x2, nil)
	target := readInput
	if f.Name != "input_read" {
		target = b.Import(f.Module, f.Name, f.Type.Params, f.Type.Results)
	}
	if f.Name == "return_data" {
		target = returnData
	}
	b.Memory(1, 1)
	body := []wasm.Instr{wasmtest.I32(0), wasmtest.I32(64), wasmtest.Idx(wasm.OpCall, readInput), wasmtest.Op(wasm.OpDrop)}
	if len(f.Type.Results) > 0 {
		body = append(body, wasmtest.I32(64)) // address for the result store
	}
	for i, p := range f.Type.Params {
		op := wasm.OpI32Load
		if p == wasm.I64 {
			op = wasm.OpI64Load
		}
		body = append(body, wasmtest.I32(int32(8*i)), wasmtest.Mem(op, 2, 0))
	}
	body = append(body, wasmtest.Idx(wasm.OpCall, target))
	if len(f.Type.Results) > 0 {
		n := int32(4)
		op := wasm.OpI32Store
		if f.Type.Results[0] == wasm.I64 {
			op, n = wasm.OpI64Store, 8
		}
		body = append(body, wasmtest.Mem(op, 2, 0), wasmtest.I32(64), wasmtest.I32(n), wasmtest.Idx(wasm.OpCall, returnData))
	}
	b.Func("run", nil, nil, nil, body...)
	return b.Bytes()
}

var i32x2 = []wasm.ValType{wasm.I32, wasm.I32}

// wild are argument values aimed at the bounds rule: zero, inside, at and
// past the end of the 1-page memory, sign bit, all ones, overflow of
// ptr+len.
var wild = []uint64{0, 1, 16, 32, 65504, 65535, 65536, 65537, 0x7fffffff, 0x80000000, 0xfffffff0, 0xffffffff, 1 << 40, ^uint64(0)}

func argsInput(args []uint64) []byte {
	in := make([]byte, 8*len(args))
	for i, a := range args {
		for j := range 8 {
			in[8*i+j] = byte(a >> (8 * j))
		}
	}
	return in
}

// TestHostileArguments calls every host function with wild pointers,
// lengths, handles and gas: no panic escapes, no node error, and both
// engines agree on status, reason, gas and result. With every argument
// all ones, every function that takes a pointer, length or handle traps.
func TestHostileArguments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range host.Funcs() {
		t.Run(f.Name, func(t *testing.T) {
			bin := hostileModule(f)
			self := addr("hostile")
			var argSets [][]uint64
			base := make([]uint64, len(f.Type.Params))
			for i := range base {
				base[i] = 16
			}
			argSets = append(argSets, base)
			for p := range base {
				for _, v := range wild {
					a := append([]uint64{}, base...)
					a[p] = v
					argSets = append(argSets, a)
				}
			}
			for range 20 {
				a := make([]uint64, len(base))
				for i := range a {
					a[i] = wild[rng.IntN(len(wild))]
				}
				argSets = append(argSets, a)
			}
			allOnes := make([]uint64, len(base))
			for i := range allOnes {
				allOnes[i] = ^uint64(0)
			}
			argSets = append(argSets, allOnes)

			var got [2][]string
			for ei := range engines {
				c := newChain(t, ei)
				c.gas = 1_000_000
				c.deploy(self, bin, alice, nil, 1e9)
				c.state.Set(self, []byte("k"), []byte("v"))
				for _, args := range argSets {
					r := c.run(call{from: alice, to: self, method: "run", input: argsInput(args)}, false)
					got[ei] = append(got[ei], fmt.Sprintf("%v %q gas=%d ret=%x", r.Status, r.Reason(), r.GasUsed, r.Return))
				}
				r := c.run(call{from: alice, to: self, method: "run", input: argsInput(allOnes)}, false)
				if len(allOnes) > 0 && r.Status != types.StatusTrapped {
					t.Errorf("%s all ones: %v %q", engines[ei].name, r.Status, r.Reason())
				}
			}
			for i := range argSets {
				if got[0][i] != got[1][i] {
					t.Errorf("args %x: engines differ:\n%s\n%s", argSets[i], got[0][i], got[1][i])
				}
			}
		})
	}
}

// FuzzHostArguments is TestHostileArguments with fuzzed arguments: any
// host function, any six argument values; both engines must agree and no
// node error or panic may escape. Seeds are the all-16 baseline and the
// all-ones call of every function.
//
//	go test -run '^$' -fuzz FuzzHostArguments -fuzztime 60s ./runtime/host
func FuzzHostArguments(f *testing.F) {
	funcs := host.Funcs()
	for i := range funcs {
		f.Add(uint8(i), uint64(16), uint64(16), uint64(16), uint64(16), uint64(16), uint64(16))
		f.Add(uint8(i), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0))
	}
	self := addr("hostile")
	var chains [2][]*chain
	f.Fuzz(func(t *testing.T, fi uint8, a0, a1, a2, a3, a4, a5 uint64) {
		i := int(fi) % len(funcs)
		var got [2]string
		for ei := range engines {
			if chains[ei] == nil {
				for _, hf := range funcs {
					c := newChain(t, ei)
					c.gas = 1_000_000
					c.deploy(self, hostileModule(hf), alice, nil, 1e9)
					chains[ei] = append(chains[ei], c)
				}
			}
			c := chains[ei][i]
			c.eng.t = t
			c.state = host.MemState{}
			c.state.Set(self, []byte("k"), []byte("v"))
			args := []uint64{a0, a1, a2, a3, a4, a5}[:len(funcs[i].Type.Params)]
			r := c.run(call{from: alice, to: self, method: "run", input: argsInput(args)}, false)
			got[ei] = fmt.Sprintf("%v %q gas=%d ret=%x", r.Status, r.Reason(), r.GasUsed, r.Return)
		}
		if got[0] != got[1] {
			t.Fatalf("%s: engines differ:\n%s\n%s", funcs[i].Name, got[0], got[1])
		}
	})
}
