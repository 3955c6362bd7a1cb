package vm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// writerPages is the memory of writer(): 2 pages of 64 KiB, 32 tracked
// pages.
const writerPages = 2

// storeOps are the nine stores with the type of their operand.
var storeOps = []struct {
	op    wasm.Opcode
	t     wasm.ValType
	align uint32
}{
	{0x36, wasm.I32, 2}, {0x37, wasm.I64, 3}, {0x38, wasm.F32, 2}, {0x39, wasm.F64, 3},
	{0x3A, wasm.I32, 0}, {0x3B, wasm.I32, 1}, {0x3C, wasm.I64, 0}, {0x3D, wasm.I64, 1}, {0x3E, wasm.I64, 2},
}

// storeOffsets are the memarg offsets each store is exported with: a
// nonzero one moves the effective address past the page of the base.
var storeOffsets = []uint32{0, 4099}

// writer is a guest that writes linear memory every way a guest can: each
// store (export "s<i>_<offset>"(addr, value i64)), memory.fill, .copy and
// .init, and the WASI functions that write into guest memory; "sum" reads
// all of memory back into one hash. Its snapshot has data in it.
func writer() []byte {
	b := New()
	i32, i64 := wasm.I32, wasm.I64
	random := b.Import(wasi.ModuleName, "random_get", []wasm.ValType{i32, i32}, I32s)
	clock := b.Import(wasi.ModuleName, "clock_time_get", []wasm.ValType{i32, i64, i32}, I32s)
	fdstat := b.Import(wasi.ModuleName, "fd_fdstat_get", []wasm.ValType{i32, i32}, I32s)
	sizes := b.Import(wasi.ModuleName, "args_sizes_get", []wasm.ValType{i32, i32}, I32s)
	poll := b.Import(wasi.ModuleName, "poll_oneoff", []wasm.ValType{i32, i32, i32, i32}, I32s)
	b.Memory(writerPages, writerPages)
	b.Data(100, bytes.Repeat([]byte("snapshot"), 1000))
	seg := b.PassiveData(bytes.Repeat([]byte{0xA5}, 9000))
	for i, s := range storeOps {
		for _, off := range storeOffsets {
			val := []wasm.Instr{Idx(wasm.OpLocalGet, 1)}
			switch s.t {
			case wasm.I32:
				val = append(val, Op(0xA7)) // i32.wrap_i64
			case wasm.F32:
				val = append(val, Op(0xA7), Op(0xBE)) // f32.reinterpret_i32
			case wasm.F64:
				val = append(val, Op(0xBF)) // f64.reinterpret_i64
			}
			body := append([]wasm.Instr{Idx(wasm.OpLocalGet, 0)}, val...)
			body = append(body, Mem(s.op, s.align, off))
			b.Func(fmt.Sprintf("s%d_%d", i, off), []wasm.ValType{i32, i64}, nil, nil, body...)
		}
	}
	three := []wasm.ValType{i32, i32, i32}
	args := []wasm.Instr{Idx(wasm.OpLocalGet, 0), Idx(wasm.OpLocalGet, 1), Idx(wasm.OpLocalGet, 2)}
	b.Func("fill", three, nil, nil, append(args, Op(wasm.OpMemoryFill))...)
	b.Func("copy", three, nil, nil, append(args, Op(wasm.OpMemoryCopy))...)
	b.Func("init", three, nil, nil, append(args, Idx(wasm.OpMemoryInit, seg))...)
	b.Func("random", []wasm.ValType{i32, i32}, nil, nil, Idx(wasm.OpLocalGet, 0), Idx(wasm.OpLocalGet, 1), Idx(wasm.OpCall, random), Op(wasm.OpDrop))
	b.Func("clock", I32s, nil, nil, I32(0), I64(0), Idx(wasm.OpLocalGet, 0), Idx(wasm.OpCall, clock), Op(wasm.OpDrop))
	b.Func("fdstat", I32s, nil, nil, I32(1), Idx(wasm.OpLocalGet, 0), Idx(wasm.OpCall, fdstat), Op(wasm.OpDrop))
	b.Func("sizes", []wasm.ValType{i32, i32}, nil, nil, Idx(wasm.OpLocalGet, 0), Idx(wasm.OpLocalGet, 1), Idx(wasm.OpCall, sizes), Op(wasm.OpDrop))
	// poll(in, out, nevents): one clock subscription at in.
	b.Func("poll", three, nil, nil, Idx(wasm.OpLocalGet, 0), I32(1), Idx(wasm.OpLocalGet, 2), Idx(wasm.OpLocalGet, 1),
		Idx(wasm.OpCall, poll), Op(wasm.OpDrop))
	// sum: h = h*31 + word over every i64 of memory.
	b.Func("sum", nil, []wasm.ValType{i64}, []wasm.ValType{i32, i64},
		Block(wasm.OpLoop, wasm.BlockEmpty),
		Idx(wasm.OpLocalGet, 1), I64(31), Op(wasm.OpI64Mul), Idx(wasm.OpLocalGet, 0), Mem(wasm.OpI64Load, 3, 0), Op(wasm.OpI64Add), Idx(wasm.OpLocalSet, 1),
		Idx(wasm.OpLocalGet, 0), I32(8), Op(wasm.OpI32Add), Idx(wasm.OpLocalTee, 0),
		I32(writerPages<<16), Op(0x49 /* i32.lt_u */), Idx(wasm.OpBrIf, 0),
		Op(wasm.OpEnd),
		Idx(wasm.OpLocalGet, 1))
	return b.Bytes()
}

// write is one call of writer that writes memory.
type write struct {
	fn   string
	args []uint64
}

// randomWrite picks a write of any kind, at addresses that favour page
// edges and the end of memory.
func randomWrite(rng *rand.Rand) write {
	size := writerPages << 16
	addr := func() uint64 {
		switch rng.IntN(3) {
		case 0: // just below or at a page boundary
			return uint64(max(0, (1+rng.IntN(size>>12-1))<<12-rng.IntN(9)))
		case 1: // the last bytes of memory
			return uint64(size - 1 - rng.IntN(16))
		default:
			return uint64(rng.IntN(size))
		}
	}
	n := func() uint64 { return uint64(rng.IntN(9000)) }
	switch k := rng.IntN(len(storeOps) + 8); {
	case k < len(storeOps):
		off := storeOffsets[rng.IntN(len(storeOffsets))]
		a := addr() // the effective address
		return write{fmt.Sprintf("s%d_%d", k, off), []uint64{a - min(a, uint64(off)), rng.Uint64() | 1}}
	case k == len(storeOps):
		return write{"fill", []uint64{addr(), uint64(1 + rng.IntN(255)), n()}}
	case k == len(storeOps)+1:
		return write{"copy", []uint64{addr(), 100, n()}}
	case k == len(storeOps)+2:
		return write{"init", []uint64{addr(), uint64(rng.IntN(100)), n()}}
	case k == len(storeOps)+3:
		return write{"random", []uint64{addr(), n()}}
	case k == len(storeOps)+4:
		return write{"clock", []uint64{addr()}}
	case k == len(storeOps)+5:
		return write{"fdstat", []uint64{addr()}}
	case k == len(storeOps)+6:
		return write{"sizes", []uint64{addr(), addr()}}
	default:
		return write{"poll", []uint64{addr(), addr(), uint64(rng.IntN(4))}}
	}
}

// memory is a copy of in's linear memory.
func memory(in *vm.Instance) []byte {
	m := in.Module().Memory()
	b, _ := m.Read(0, m.Size())
	return bytes.Clone(b)
}

// TestDirtyRestoreSeesSnapshot is the property test of dirty-page
// restores against the reference, a fresh instance: on one instance per
// engine, random writes of every kind (most of them trap at the end of
// memory, which discards the instance: it is replaced), each followed by
// a restore, always leave exactly the snapshot's bytes, and "sum", a call
// that reads all of memory, sees what a fresh instance sees. Status, gas
// and results are the same on both engines.
func TestDirtyRestoreSeesSnapshot(t *testing.T) {
	ctx := context.Background()
	code := prepare(t, writer())
	steps := 300
	if testing.Short() {
		steps = 100
	}
	var codes []*vm.Code
	for _, interp := range []bool{false, true} {
		c := vm.DefaultConfig()
		c.Interpreter = interp
		cd := compile(t, c, code)
		if !cd.Tracked() {
			t.Fatalf("interpreter=%v: writer is not tracked", interp)
		}
		codes = append(codes, cd)
	}
	fresh, err := codes[0].Instantiate(ctx, vm.Env{ClockNs: 77})
	if err != nil {
		t.Fatal(err)
	}
	want, wantSum := memory(fresh), call(t, fresh, "sum", 1<<40)
	if fresh.Export(meter.DirtyExport) != nil {
		t.Fatalf("%s is callable as a method", meter.DirtyExport)
	}
	ins := make([]*vm.Instance, len(codes))
	kinds := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range steps {
		w := randomWrite(rng)
		var outs []vm.Outcome
		for i, cd := range codes {
			if ins[i] == nil || ins[i].Discarded() {
				if ins[i], err = cd.Instantiate(ctx, vm.Env{ClockNs: 77}); err != nil {
					t.Fatal(err)
				}
			}
			in := ins[i]
			o := call(t, in, w.fn, 1<<40, w.args...)
			outs = append(outs, o)
			if in.Discarded() {
				continue
			}
			in.Restore()
			// A store dirties one page: the restore copies it (and the 7
			// bytes after it), not the snapshot.
			if n := in.RestoredBytes(); w.fn[0] == 's' && w.fn[1] <= '9' && (n == 0 || n > 1<<meter.PageShift+7) {
				t.Fatalf("step %d %s%v (engine %d): the restore after a store copied %d bytes", step, w.fn, w.args, i, n)
			}
			if got := memory(in); !bytes.Equal(got, want) {
				t.Fatalf("step %d %s%v (engine %d): restored memory differs from the snapshot at byte %d", step, w.fn, w.args, i, firstDiff(got, want))
			}
			if got := call(t, in, "sum", 1<<40); fmt.Sprint(got) != fmt.Sprint(wantSum) {
				t.Fatalf("step %d %s%v (engine %d): sum after restore %+v, fresh %+v", step, w.fn, w.args, i, got, wantSum)
			}
		}
		if fmt.Sprint(outs[0]) != fmt.Sprint(outs[1]) {
			t.Fatalf("step %d %s%v: compiler %+v, interpreter %+v", step, w.fn, w.args, outs[0], outs[1])
		}
		kinds[fmt.Sprintf("%s %v", w.fn[:1], outs[0].Status)]++
	}
	// Every kind of write succeeded at least once (and some trapped).
	for _, k := range []string{"s ok", "f ok", "c ok", "i ok", "r ok", "p ok", "s trapped"} {
		if kinds[k] == 0 {
			t.Errorf("no %q step: %v", k, kinds)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDirtyRestoreMatchesFullRestore is the metamorphic check: the same
// calls on tracked and untracked code (vm.Config.FullRestore) give the
// same outcomes, gas included: the tracking charges nothing.
func TestDirtyRestoreMatchesFullRestore(t *testing.T) {
	ctx := context.Background()
	code := prepare(t, writer())
	var codes []*vm.Code
	for _, full := range []bool{false, true} {
		c := vm.DefaultConfig()
		c.FullRestore = full
		cd := compile(t, c, code)
		if cd.Tracked() == full {
			t.Fatalf("FullRestore=%v but Tracked()=%v", full, cd.Tracked())
		}
		codes = append(codes, cd)
	}
	ins := make([]*vm.Instance, len(codes))
	instance := func(i int) *vm.Instance {
		if ins[i] == nil || ins[i].Discarded() {
			var err error
			if ins[i], err = codes[i].Instantiate(ctx, vm.Env{}); err != nil {
				t.Fatal(err)
			}
		}
		return ins[i]
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for step := range 100 {
		w := randomWrite(rng)
		var outs []string
		for i := range codes {
			o := call(t, instance(i), w.fn, 1<<40, w.args...)
			outs = append(outs, fmt.Sprint(o, call(t, instance(i), "sum", 1<<40)))
		}
		if outs[0] != outs[1] {
			t.Fatalf("step %d %s%v: tracked %s, full restore %s", step, w.fn, w.args, outs[0], outs[1])
		}
	}
}

// TestWriteEverywhereInOneCall: one call that dirties every page (a fill
// of all memory) and then a store at each page's last byte; the restore
// after it brings back every byte.
func TestWriteEverywhereInOneCall(t *testing.T) {
	const pages = 10 // 160 tracked pages
	b := New()
	b.Memory(pages, -1)
	b.Data(0, bytes.Repeat([]byte{7}, pages<<16))
	b.Func("all", nil, nil, []wasm.ValType{wasm.I32},
		I32(0), I32(9), I32(pages<<16), Op(wasm.OpMemoryFill),
		Block(wasm.OpLoop, wasm.BlockEmpty),
		Idx(wasm.OpLocalGet, 0), I32(4095), Op(wasm.OpI32Add), I32(1), Mem(0x3A, 0, 0),
		Idx(wasm.OpLocalGet, 0), I32(4096), Op(wasm.OpI32Add), Idx(wasm.OpLocalTee, 0),
		I32(pages<<16), Op(0x49 /* i32.lt_u */), Idx(wasm.OpBrIf, 0),
		Op(wasm.OpEnd))
	for _, in := range engines(t, prepare(t, b.Bytes()), vm.Env{}) {
		want := memory(in)
		if o := call(t, in, "all", 1<<40); o.Status != vm.StatusOK {
			t.Fatal(o)
		}
		if bytes.Equal(memory(in), want) {
			t.Fatal("the call changed nothing: the test proves nothing")
		}
		in.Restore()
		if got := memory(in); !bytes.Equal(got, want) {
			t.Fatalf("restored memory differs at byte %d", firstDiff(got, want))
		}
	}
}

// TestTrackingIsUnreachableForGuests: everything a guest could use to
// read, clear or forge the dirty-page marks is refused at deploy:
// reference and table instructions and call_indirect through another
// table than 0 (wasm.Decode), a second table, and exports under the
// reserved prefix (DirtyExport and RestoreExport are two), which no
// call can name either.
func TestTrackingIsUnreachableForGuests(t *testing.T) {
	for name, body := range map[string][]wasm.Instr{
		"table.set":   {I32(0), Op(wasm.OpRefNull), Idx(wasm.OpTableSet, 1)},
		"table.get":   {I32(0), Idx(wasm.OpTableGet, 1), Op(wasm.OpDrop)},
		"table.fill":  {I32(0), Op(wasm.OpRefNull), I32(8), Idx(wasm.OpTableFill, 1)},
		"ref.is_null": {Op(wasm.OpRefNull), Op(wasm.OpRefIsNull), Op(wasm.OpDrop)},
		"ref.func":    {Idx(wasm.OpRefFunc, 0), Op(wasm.OpDrop)},
	} {
		b := New()
		b.Memory(1, 1)
		b.M.Tables = []wasm.Limits{{Min: 1}}
		b.Func("clear", nil, nil, nil, body...)
		if _, err := deploy.Prepare(b.Bytes(), cfg); !errors.Is(err, wasm.ErrUnsupported) {
			t.Errorf("%s: deploy %v, want %v", name, err, wasm.ErrUnsupported)
		}
	}
	// call_indirect through table 1 (where Track puts its table).
	b := New()
	b.Memory(1, 1)
	b.M.Tables = []wasm.Limits{{Min: 1}}
	b.Func("f", nil, nil, nil, I32(0), wasm.Instr{Op: wasm.OpCallIndirect, A: 0})
	bin := b.Bytes()
	at := bytes.Index(bin, []byte{byte(wasm.OpI32Const), 0, byte(wasm.OpCallIndirect), 0, 0})
	if at < 0 {
		t.Fatal("call_indirect not found in the encoding")
	}
	bin[at+4] = 1 // the table index
	if _, err := deploy.Prepare(bin, cfg); !errors.Is(err, wasm.ErrUnsupported) {
		t.Errorf("call_indirect through table 1: deploy %v, want %v", err, wasm.ErrUnsupported)
	}
	b = New()
	b.Memory(1, 1)
	b.M.Tables = []wasm.Limits{{Min: 1}, {Min: 8192}}
	b.Func("f", nil, nil, nil)
	if _, err := deploy.Prepare(b.Bytes(), cfg); !errors.Is(err, validate.ErrFeature) {
		t.Errorf("two tables: deploy %v, want %v", err, validate.ErrFeature)
	}
	for _, name := range []string{meter.DirtyExport, vm.RestoreExport} {
		b = New()
		b.Memory(1, 1)
		b.Func(name, []wasm.ValType{wasm.I32, wasm.I32}, I32s, nil, I32(-1))
		if _, err := deploy.Prepare(b.Bytes(), cfg); err == nil {
			t.Errorf("a guest exporting %s deployed", name)
		}
		// And no call can name the instance's own.
		in, err := compile(t, vm.DefaultConfig(), prepare(t, counter())).Instantiate(t.Context(), vm.Env{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Call(t.Context(), name, 1000, 0, 1); !errors.Is(err, vm.ErrNoExport) {
			t.Errorf("calling %s: %v, want %v", name, err, vm.ErrNoExport)
		}
	}
}

// TestUntrackedFallsBack: code Track refuses (here: a host import it does
// not know) compiles untracked, to restore whole snapshots.
func TestUntrackedFallsBack(t *testing.T) {
	b := New()
	b.Import("elsewhere", "f", nil, nil)
	b.Memory(1, 1)
	b.Func("poke", nil, nil, nil, I32(8), I32(5), Mem(wasm.OpI32Store, 2, 0))
	m, err := wasm.Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	im, err := meter.Instrument(m)
	if err != nil {
		t.Fatal(err)
	}
	if cd := compile(t, vm.DefaultConfig(), wasm.Encode(im)); cd.Tracked() {
		t.Fatal("code importing an unknown host function is tracked")
	}
}

// TestHostWritesCoverEveryHostFunction: a module importing (and calling)
// every host function of both host modules is tracked, so every function
// has an entry whose regions fit its signature; and the table names no
// function that does not exist.
func TestHostWritesCoverEveryHostFunction(t *testing.T) {
	b := New()
	known := map[string]bool{}
	var calls []wasm.Instr
	for _, f := range append(host.Funcs(), wasi.Funcs()...) {
		known[f.Module+"."+f.Name] = true
		fi := b.Import(f.Module, f.Name, f.Type.Params, f.Type.Results)
		for _, p := range f.Type.Params {
			calls = append(calls, map[wasm.ValType]wasm.Instr{wasm.I32: I32(0), wasm.I64: I64(0)}[p])
		}
		calls = append(calls, Idx(wasm.OpCall, fi))
		for range f.Type.Results {
			calls = append(calls, Op(wasm.OpDrop))
		}
	}
	b.Memory(1, 1)
	b.Func("all", nil, nil, nil, calls...)
	if cd := compile(t, vm.DefaultConfig(), prepare(t, b.Bytes())); !cd.Tracked() {
		t.Fatal("a module importing every host function is not tracked")
	}
	for _, name := range vm.HostWriteNames() {
		if !known[name] {
			t.Errorf("hostWrites describes %s, which no host module has", name)
		}
	}
}
