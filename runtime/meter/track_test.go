package meter_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// noHost is a TrackConfig for modules without imports.
var noHost = meter.TrackConfig{MemoryPages: 512, HostWrites: func(string, string) ([]meter.Region, bool) { return nil, false }}

// track instruments and tracks bin (validated first).
func track(t testing.TB, bin []byte, cfg meter.TrackConfig) []byte {
	t.Helper()
	m, err := wasm.Decode(instrument(t, bin))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := meter.Track(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return wasm.Encode(tm)
}

// tracked is an instance of tracked code on the runtime's configuration
// plus reference types (runtime/vm turns them on for the dirty table).
type tracked struct {
	t   testing.TB
	mod api.Module
}

func instantiateTracked(t testing.TB, interp bool, bin []byte) *tracked {
	t.Helper()
	ctx := context.Background()
	rc := wazero.NewRuntimeConfigCompiler()
	if interp {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc.WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false)).
		WithMemoryLimitPages(512).WithCloseOnContextDone(false))
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil { // for Go guests in benchmarks
		t.Fatal(err)
	}
	// The clocks and randomness of wasmtest.Instantiate: the Go runtime's
	// GC paces itself by the clock, so benchmarks compare like with like.
	var clock int64
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithWalltime(func() (int64, int32) { clock += 1000; return clock, 0 }, 1).
		WithNanotime(func() int64 { clock += 1000; return clock }, 1).
		WithRandSource(bytes.NewReader(make([]byte, 1<<16)))
	mod, err := rt.InstantiateWithConfig(ctx, bin, mc)
	if err != nil {
		t.Fatalf("interpreter=%v: %v", interp, err)
	}
	return &tracked{t: t, mod: mod}
}

// call is wasmtest.Instance.Call for tracked code.
func (in *tracked) call(name string, gas int64, args ...uint64) Result {
	in.t.Helper()
	g := in.mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal)
	g.Set(uint64(gas))
	in.mod.ExportedGlobal(meter.DepthExport).(api.MutableGlobal).Set(0)
	vals, err := in.mod.ExportedFunction(name).Call(context.Background(), args...)
	r := Result{Values: vals, GasLeft: int64(g.Get())}
	r.OutOfGas = r.GasLeft < 0
	if err != nil {
		r.Trap = "trap"
		r.DepthExceeded = in.mod.ExportedGlobal(meter.DepthExceededExport).Get() == 1
	}
	if len(r.Values) == 0 {
		r.Values = nil
	}
	return r
}

func (in *tracked) memory() []byte {
	b, _ := in.mod.Memory().Read(0, in.mod.Memory().Size())
	return bytes.Clone(b)
}

// dirty drains the marks: the set of marked pages.
func (in *tracked) dirty() map[int]bool {
	in.t.Helper()
	out := map[int]bool{}
	pages := uint64(in.mod.Memory().Size() >> meter.PageShift)
	groups := (pages + 1<<meter.GroupShift - 1) >> meter.GroupShift
	for from := uint64(0); ; {
		r, err := in.mod.ExportedFunction(meter.DirtyExport).Call(context.Background(), from, groups)
		if err != nil {
			in.t.Fatal(err)
		}
		g := int32(r[0])
		if g < 0 {
			return out
		}
		for i := range 1 << meter.GroupShift {
			if r[1]>>i&1 == 1 {
				out[int(g)<<meter.GroupShift+i] = true
			}
		}
		// The next marked group, which the next call must return (the
		// call after it ends the walk).
		if next := int32(r[2]); next >= 0 {
			from = uint64(next)
		} else {
			from = uint64(g) + 1
		}
	}
}

// uncovered returns the first byte that differs between before (zero
// extended) and after and is not covered by a marked page (the page and
// the 7 bytes after it), or -1.
func uncovered(before, after []byte, marked map[int]bool) int {
	for i, b := range after {
		var was byte
		if i < len(before) {
			was = before[i]
		}
		if b == was {
			continue
		}
		p := i >> meter.PageShift
		if marked[p] || (i&(1<<meter.PageShift-1) < 7 && marked[p-1]) {
			continue
		}
		return i
	}
	return -1
}

// FuzzTrack: tracking changes nothing a call computes (values, traps,
// gas, on both engines), and every byte a call that did not trap changed
// lies in a page it marked. A trapped call may leave writes of a run
// unmarked (runs.go): its instance is never reused.
func FuzzTrack(f *testing.F) {
	f.Add([]byte{0, 5, 1, 1, 2, 0, 12, 3, 1, 0, 0, 2, 0}, uint32(5), uint32(3))
	f.Add([]byte{6, 200, 9, 6, 255, 255, 7, 1, 250, 200, 8, 1, 6, 10, 20}, uint32(0xfffffff0), uint32(3))
	f.Add([]byte{7, 255, 7, 255, 7, 255, 6, 255, 1, 8, 1, 7, 0, 255, 255}, uint32(65535), uint32(4097))
	f.Add([]byte{1, 0, 1, 1, 2, 9, 6, 3, 4, 7, 1, 2, 3, 8, 1, 14, 5}, uint32(5), uint32(3))
	// Writes at local 0 (runs) across a page edge, which one mark would
	// not cover: mask it to 0x0ff8, store at +0 and +16; then store in Go's
	// address form at +16, move it by local.tee to -8, store there and at +8.
	f.Add([]byte{14, 12, 0, 0, 14, 13, 1, 0, 255, 0, 14, 13, 1, 0, 255, 2}, uint32(0x0ff8), uint32(3))
	f.Add([]byte{14, 12, 0, 0, 14, 14, 1, 0, 255, 2, 0, 14, 15, 0, 0, 0, 1, 14, 13, 1, 0, 255, 1}, uint32(0x0ff8), uint32(3))
	f.Fuzz(func(t *testing.T, src []byte, a, b uint32) {
		orig := genModule(src)
		inst, tr := instrument(t, orig), track(t, orig, noHost)
		for i, e := range Engines {
			want := Instantiate(t, e, inst).Call("f", plenty, uint64(a), uint64(b))
			in := instantiateTracked(t, i == 1, tr)
			before := in.memory()
			got := in.call("f", plenty, uint64(a), uint64(b))
			if want.Trap != "" {
				want.Trap = "trap"
			}
			if len(want.Values) == 0 {
				want.Values = nil
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("%s: untracked %+v, tracked %+v", e.Name, want, got)
			}
			if got.Trap != "" {
				continue
			}
			if at := uncovered(before, in.memory(), in.dirty()); at >= 0 {
				t.Fatalf("%s: byte %d changed in an unmarked page", e.Name, at)
			}
		}
	})
}

// TestTrackMarksWhatChanged is FuzzTrack's check on hand-written writes:
// every store width, at page edges, with offsets, and the bulk operations;
// the marks are exactly the written pages (plus the page a store spilling
// 7 bytes over starts in).
func TestTrackMarksWhatChanged(t *testing.T) {
	b := New()
	b.Memory(2, 2)
	seg := b.PassiveData(bytes.Repeat([]byte{1}, 5000))
	b.Func("w", nil, nil, nil,
		I32(4093), I64(-1), Mem(wasm.OpI64Store, 3, 0), // page 0, spilling 5 bytes into page 1
		I32(0), I32(-1), Mem(0x3A, 0, 3*4096+5), // page 3
		I32(10*4096), I32(7), I32(4097), Op(wasm.OpMemoryFill), // pages 10, 11
		I32(20*4096), I32(0), I32(1), Op(wasm.OpMemoryCopy), // page 20 (a zero byte: marked, unchanged)
		I32(25*4096-1), I32(0), I32(2), Idx(wasm.OpMemoryInit, seg), // pages 24, 25
		I32(0), I32(0), I32(0), Op(wasm.OpMemoryFill), // nothing
		I32(30*4096+8), I32(1), I32(4096), Op(wasm.OpMemoryFill), // pages 30, 31: a constant page
	)
	tr := track(t, b.Bytes(), noHost)
	for _, interp := range []bool{false, true} {
		in := instantiateTracked(t, interp, tr)
		before := in.memory()
		if r := in.call("w", plenty); r.Trap != "" {
			t.Fatal(r)
		}
		after := in.memory()
		marked := in.dirty()
		if want := map[int]bool{0: true, 3: true, 10: true, 11: true, 20: true, 24: true, 25: true, 30: true, 31: true}; !reflect.DeepEqual(marked, want) {
			t.Errorf("interpreter=%v: marked %v, want %v", interp, marked, want)
		}
		if at := uncovered(before, after, marked); at >= 0 {
			t.Errorf("interpreter=%v: byte %d changed unmarked", interp, at)
		}
		if again := in.dirty(); len(again) != 0 {
			t.Errorf("interpreter=%v: marks left after draining: %v", interp, again)
		}
	}
}

// TestTrackRefuses: Track only takes what it can account for.
func TestTrackRefuses(t *testing.T) {
	b := New()
	b.Import("kairos", "mystery", nil, nil)
	b.Memory(1, 1)
	b.Func("f", nil, nil, nil, Idx(wasm.OpCall, 0))
	m, err := wasm.Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meter.Track(m, noHost); !errors.Is(err, meter.ErrUntracked) {
		t.Errorf("unknown import: %v, want %v", err, meter.ErrUntracked)
	}
	// A region that does not fit the signature.
	bad := meter.TrackConfig{MemoryPages: 512, HostWrites: func(string, string) ([]meter.Region, bool) {
		return []meter.Region{{Ptr: 3, Len: -1, Fixed: 4}}, true
	}}
	if _, err := meter.Track(m, bad); !errors.Is(err, meter.ErrUntracked) {
		t.Errorf("region outside the signature: %v, want %v", err, meter.ErrUntracked)
	}
	nomem := New()
	nomem.Func("f", nil, nil, nil)
	if m, err = wasm.Decode(nomem.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := meter.Track(m, noHost); !errors.Is(err, meter.ErrUntracked) {
		t.Errorf("no memory: %v, want %v", err, meter.ErrUntracked)
	}
}

// TestTrackRuns: writes at one local plus constants in straight-line code
// are marked once per run (runs.go) — the first and last page of the run,
// after its last write and before any branch — and the marks still cover
// every byte written, including Go's address forms, a local moved by
// local.tee, an address that wraps, runs wider than RunSpanMax, a local
// given an unknown value, a branch in the middle, and constant copies,
// fills and inits, inlined or not, in a run or just after a break; the
// call's result, gas and memory are the untracked module's, on both engines.
func TestTrackRuns(t *testing.T) {
	st64 := func(off uint32) wasm.Instr { return Mem(wasm.OpI64Store, 3, off) }
	// goAddr is the Go compiler's address form: local 0 + c, wrapped.
	goAddr := func(c int64) []wasm.Instr {
		return []wasm.Instr{Idx(wasm.OpLocalGet, 0), Op(wasm.OpI64ExtendI32U), I64(c), Op(wasm.OpI64Add), Op(0xA7)}
	}
	cat := func(parts ...[]wasm.Instr) (out []wasm.Instr) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	sp := []wasm.Instr{Idx(wasm.OpLocalGet, 0)}
	val := []wasm.Instr{I64(-1)}
	// src holds a pattern (active segment 0) that copies move; passive
	// segment 1 holds another for memory.init.
	const src = 7 * 4096
	pattern := func(seed byte) []byte {
		p := make([]byte, 512)
		for i := range p {
			p[i] = byte(i)*13 + seed
		}
		return p
	}
	cases := []struct {
		name     string
		body     []wasm.Instr
		sp, arg  uint32
		marked   []int
		tableSet int // table.set instructions in the tracked body (2 for a run's first page, 1 for its last)
	}{
		{"args", cat(sp, val, []wasm.Instr{st64(0)}, sp, val, []wasm.Instr{st64(8)}, goAddr(16), val, []wasm.Instr{st64(0)},
			goAddr(16), val, []wasm.Instr{st64(8)},
			// as before a Go call: sp -= 8, then the return address at sp
			sp, []wasm.Instr{I32(8), Op(wasm.OpI32Sub), Idx(wasm.OpLocalTee, 0), Op(wasm.OpDrop)}, sp, val, []wasm.Instr{st64(0)}),
			2*4096 - 16, 0, []int{1, 2}, 3},
		{"one store", cat(sp, val, []wasm.Instr{st64(4090)}), 0, 0, []int{0}, 2},
		{"wrap", cat(goAddr(16), val, []wasm.Instr{st64(0)}, goAddr(16), val, []wasm.Instr{st64(8)}), 0xFFFF_FFF8, 0, []int{0}, 3},
		{"wide", cat(sp, val, []wasm.Instr{st64(0)}, sp, val, []wasm.Instr{st64(3 * 4096)}), 0, 0, []int{0, 3}, 4},
		{"copy", cat(sp, val, []wasm.Instr{st64(4000)}, goAddr(4090), []wasm.Instr{I32(0), I32(100), Op(wasm.OpMemoryCopy)}), 0, 0, []int{0, 1}, 3},
		// The second page of a run or a constant copy is the next group's
		// first: its group is marked by the walk.
		{"next group", cat(sp, val, []wasm.Instr{st64(0)}, sp, val, []wasm.Instr{st64(16)}), 64*4096 - 8, 0, []int{63, 64}, 3},
		{"copy to next group", []wasm.Instr{I32(64*4096 - 10), I32(0), I32(100), Op(wasm.OpMemoryCopy)}, 0, 0, []int{63, 64}, 3},
		{"rebased", cat(sp, val, []wasm.Instr{st64(0), I32(5 * 4096), Idx(wasm.OpLocalSet, 0)}, sp, val, []wasm.Instr{st64(0)}), 0, 0, []int{0, 5}, 4},
		{"branch taken", cat([]wasm.Instr{Block(wasm.OpBlock, wasm.BlockEmpty)}, sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), Idx(wasm.OpBrIf, 0)},
			sp, val, []wasm.Instr{st64(4096), Op(wasm.OpEnd)}), 0, 1, []int{0}, 4},
		{"branch not taken", cat([]wasm.Instr{Block(wasm.OpBlock, wasm.BlockEmpty)}, sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), Idx(wasm.OpBrIf, 0)},
			sp, val, []wasm.Instr{st64(4096), Op(wasm.OpEnd)}), 0, 0, []int{0, 1}, 4},
		{"after if", cat([]wasm.Instr{Idx(wasm.OpLocalGet, 1), Block(wasm.OpIf, wasm.BlockEmpty), Idx(wasm.OpLocalGet, 0), I32(4096), Op(wasm.OpI32Add), Idx(wasm.OpLocalSet, 0), Op(wasm.OpEnd)},
			sp, val, []wasm.Instr{st64(0)}, sp, val, []wasm.Instr{st64(8)}), 0, 1, []int{1}, 3},
		// Constant copies and fills that Track inlines (inlineBulk) join
		// the run of the stores before them, across a page edge.
		{"inlined copy in run", cat(sp, val, []wasm.Instr{st64(0)}, goAddr(8), []wasm.Instr{I32(src), I32(32), Op(wasm.OpMemoryCopy)}), 4096 - 16, 0, []int{0, 1}, 3},
		{"inlined fill in run", cat(sp, val, []wasm.Instr{st64(0)}, sp, []wasm.Instr{I32(8), Op(wasm.OpI32Add), I32(0xAB), I32(64), Op(wasm.OpMemoryFill)}), 4096 - 32, 0, []int{0, 1}, 3},
		// A copy at another local breaks the run: joinRun emits the
		// earlier run's marks while the copy's operands are on the stack.
		{"inlined copy after a break", cat(sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), I32(src), I32(32), Op(wasm.OpMemoryCopy)}), 0, 5*4096 - 8, []int{0, 4, 5}, 5},
		{"inlined fill after a break", cat(sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), I32(0x5C), I32(128), Op(wasm.OpMemoryFill)}), 0, 5*4096 - 8, []int{0, 4, 5}, 5},
		// Not inlined (not a multiple of 8, longer, memory.init): the
		// bulk operation itself, in a run or after a break.
		{"copy of 36 in run", cat(sp, val, []wasm.Instr{st64(0)}, goAddr(8), []wasm.Instr{I32(src), I32(36), Op(wasm.OpMemoryCopy)}), 4096 - 16, 0, []int{0, 1}, 3},
		{"copy of 36 after a break", cat(sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), I32(src), I32(36), Op(wasm.OpMemoryCopy)}), 0, 5*4096 - 8, []int{0, 4, 5}, 5},
		{"long copy after a break", cat(sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), I32(src), I32(meter.InlineCopyMax + 8), Op(wasm.OpMemoryCopy)}), 0, 5*4096 - 8, []int{0, 4, 5}, 5},
		{"fill of 100 in run", cat(sp, val, []wasm.Instr{st64(0)}, goAddr(8), []wasm.Instr{I32(0x5C), I32(100), Op(wasm.OpMemoryFill)}), 4096 - 16, 0, []int{0, 1}, 3},
		{"init in run", cat(sp, val, []wasm.Instr{st64(0)}, goAddr(8), []wasm.Instr{I32(3), I32(16), Idx(wasm.OpMemoryInit, 1)}), 4096 - 16, 0, []int{0, 1}, 3},
		{"init after a break", cat(sp, val, []wasm.Instr{st64(0), Idx(wasm.OpLocalGet, 1), I32(3), I32(16), Idx(wasm.OpMemoryInit, 1)}), 0, 5*4096 - 8, []int{0, 4, 5}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New()
			b.Memory(8, 8)
			b.Data(src, pattern(1))
			b.PassiveData(pattern(2))
			b.Func("w", []wasm.ValType{wasm.I32, wasm.I32}, nil, nil, c.body...)
			inst := instrument(t, b.Bytes())
			im, err := wasm.Decode(inst)
			if err != nil {
				t.Fatal(err)
			}
			m, err := meter.Track(im, noHost)
			if err != nil {
				t.Fatal(err)
			}
			tr := wasm.Encode(m)
			sets := 0
			for _, in := range m.Code[0].Body {
				if in.Op == wasm.OpTableSet {
					sets++
				}
			}
			if sets != c.tableSet {
				t.Errorf("%d table.set in the tracked body, want %d", sets, c.tableSet)
			}
			for i, e := range Engines {
				interp := i == 1
				// The untracked module's call: the same result, gas and memory.
				untracked := Instantiate(t, e, inst)
				ref := untracked.Call("w", plenty, uint64(c.sp), uint64(c.arg))
				in := instantiateTracked(t, interp, tr)
				before := in.memory()
				r := in.call("w", plenty, uint64(c.sp), uint64(c.arg))
				if r.Trap != "" {
					t.Fatal(r)
				}
				if ref.Values = nil; !reflect.DeepEqual(ref, r) {
					t.Errorf("%s: untracked %+v, tracked %+v", e.Name, ref, r)
				}
				after := in.memory()
				if wm, _ := untracked.Module().Memory().Read(0, untracked.Module().Memory().Size()); !bytes.Equal(wm, after) {
					t.Errorf("%s: memory differs from the untracked module's", e.Name)
				}
				marked := in.dirty()
				want := map[int]bool{}
				for _, p := range c.marked {
					want[p] = true
				}
				if !reflect.DeepEqual(marked, want) {
					t.Errorf("interpreter=%v: marked %v, want %v", interp, marked, want)
				}
				if at := uncovered(before, after, marked); at >= 0 {
					t.Errorf("interpreter=%v: byte %d changed unmarked", interp, at)
				}
				// The same writes after a walk mark the same pages: the
				// walk leaves nothing behind that suppresses a mark.
				if r := in.call("w", plenty, uint64(c.sp), uint64(c.arg)); r.Trap != "" {
					t.Fatal(r)
				}
				if again := in.dirty(); !reflect.DeepEqual(again, want) {
					t.Errorf("interpreter=%v: marked %v after a walk, want %v", interp, again, want)
				}
			}
		})
	}
}

// TestInlineBulkMatchesBulk: a constant-length memory.copy or memory.fill
// that Track replaces by word loads and stores (meter.InlineCopyMax,
// meter.InlineFillMax) leaves
// memory exactly as the bulk operation does, overlapping or not, and traps
// where it traps with nothing written, on both engines; lengths past the
// limit or not a multiple of 8 keep the bulk operation.
func TestInlineBulkMatchesBulk(t *testing.T) {
	const memBytes = 65536
	pattern := make([]byte, memBytes)
	for i := range pattern {
		pattern[i] = byte(i*7 + i>>8)
	}
	lengths := []int32{8, 32, 40, 96, meter.InlineCopyMax, meter.InlineCopyMax + 8, meter.InlineFillMax, meter.InlineFillMax + 8, 36}
	for _, n := range lengths {
		b := New()
		b.Memory(1, 1)
		b.Data(0, pattern)
		args := []wasm.ValType{wasm.I32, wasm.I32}
		b.Func("copy", args, nil, nil, Idx(wasm.OpLocalGet, 0), Idx(wasm.OpLocalGet, 1), I32(n), Op(wasm.OpMemoryCopy))
		b.Func("fill", args, nil, nil, Idx(wasm.OpLocalGet, 0), Idx(wasm.OpLocalGet, 1), I32(n), Op(wasm.OpMemoryFill))
		inst, tr := instrument(t, b.Bytes()), track(t, b.Bytes(), noHost)
		end := uint32(memBytes - n)
		pairs := [][2]uint32{
			{100, 100}, {100, 108}, {108, 100}, {100, 101}, {101, 100}, {4090, 0}, // in bounds, overlapping or not
			{end, 0}, {0, end}, {end + 8, 0}, {end + 1, 0}, {0, end + 8}, {end + 8, end + 8}, // at the end and past it
			{0xFFFF_FFF8, 0}, {0, 0xFFFF_FFF8}, {memBytes, 0}, // far past it
		}
		for _, f := range []string{"copy", "fill"} {
			for _, p := range pairs {
				for i, e := range Engines {
					want := Instantiate(t, e, inst)
					wr := want.Call(f, plenty, uint64(p[0]), uint64(p[1]))
					got := instantiateTracked(t, i == 1, tr)
					gr := got.call(f, plenty, uint64(p[0]), uint64(p[1]))
					if wr.Trap != "" {
						wr.Trap = "trap"
					}
					wr.Values = nil
					if !reflect.DeepEqual(wr, gr) {
						t.Errorf("%s %d at %v, %s: bulk %+v, tracked %+v", f, n, p, e.Name, wr, gr)
					}
					wm, _ := want.Module().Memory().Read(0, memBytes)
					if gm := got.memory(); !bytes.Equal(wm, gm) {
						t.Errorf("%s %d at %v, %s: memory differs from the bulk operation's", f, n, p, e.Name)
					}
				}
			}
		}
	}
}
