package vm_test

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// Benchmarks:
//
//	go test -run '^$' -bench . -count 3 ./runtime/vm/
//
// BenchmarkDeploy: validate + instrument + compile (compiler engine, empty
// cache) of the Go guest, wall and CPU time (cpu-s/op), the runtime.md target is <= 1.5 s, with and
// without meter.Track (which vm.Compile runs unless Config.FullRestore);
// the plain compile of the original bytes is the baseline of the same run.
// BenchmarkCall: one call including the snapshot restore before it, with
// dirty-page tracking and with whole-snapshot restores; the difference is
// the restore saved minus what the marks cost the guest (churn100: 100
// allocations, store-heavy Go code).

func BenchmarkDeploy(b *testing.B) {
	bin := GoGuest(b)
	ctx := context.Background()
	for _, c := range []struct {
		name              string
		prepare, tracking bool
	}{
		{"goguest/compile-original", false, false},
		{"goguest/validate+instrument+compile-fullrestore", true, false},
		{"goguest/validate+instrument+track+compile", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			cpu0 := cpuNs(b)
			for b.Loop() {
				code := bin
				if c.prepare {
					p, err := deploy.Prepare(bin, cfg)
					if err != nil {
						b.Fatal(err)
					}
					code = p.Instrumented
				}
				vc := vm.DefaultConfig()
				vc.FullRestore = !c.tracking
				e, err := vm.NewEngine(ctx, vc)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Compile(ctx, code); err != nil {
					b.Fatal(err)
				}
				e.Close(ctx)
			}
			b.ReportMetric(float64(cpuNs(b)-cpu0)/float64(b.N)/1e9, "cpu-s/op")
		})
	}
}

// cpuNs is the CPU time (user + system) the process has used: steadier
// than wall time on a shared machine.
func cpuNs(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		bin  func(testing.TB) []byte
		fn   string
		args []uint64
	}{
		{"small/bump", func(testing.TB) []byte { return counter() }, "bump", nil},
		{"goguest/add", GoGuest, "add", []uint64{2, 40}},
		{"goguest/churn100", GoGuest, "churn", []uint64{100}},
	} {
		code := prepare(b, c.bin(b))
		for _, full := range []bool{false, true} {
			name := c.name + "/tracked-restore+call"
			if full {
				name = c.name + "/full-restore+call"
			}
			vc := vm.DefaultConfig()
			vc.FullRestore = full
			in, err := compile(b, vc, code).Instantiate(ctx, vm.Env{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					if o, err := in.Call(ctx, c.fn, 1<<30, c.args...); err != nil || o.Status != vm.StatusOK {
						b.Fatal(o, err)
					}
				}
				b.ReportMetric(float64(in.SnapshotBytes()), "snapshot-bytes")
				b.ReportMetric(float64(in.RestoredBytes()), "restored-bytes")
			})
		}
		// Baseline: copying a buffer of the snapshot's size, nothing else.
		b.Run(c.name+"/memcpy-baseline", func(b *testing.B) {
			in, err := compile(b, vm.DefaultConfig(), code).Instantiate(ctx, vm.Env{})
			if err != nil {
				b.Fatal(err)
			}
			src, dst := make([]byte, in.SnapshotBytes()), make([]byte, in.SnapshotBytes())
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// BenchmarkRestore: the fixed cost of restoring a tracked instance when no
// page is dirty (the meter's globals and the dirty-page walk), for a
// one-page module and the Go guest (a 3 MiB snapshot, 752 pages); the
// Go guest's whole-snapshot copy of BenchmarkCall is the alternative.
func BenchmarkRestore(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		bin  func(testing.TB) []byte
	}{{"small", func(testing.TB) []byte { return counter() }}, {"goguest", GoGuest}} {
		in, err := compile(b, vm.DefaultConfig(), prepare(b, c.bin(b))).Instantiate(ctx, vm.Env{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			cpu0 := cpuNs(b)
			for b.Loop() {
				in.Restore()
			}
			b.ReportMetric(float64(cpuNs(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// oneInstance serves every frame of host.Run from one instance, restored
// at each Acquire as the pools restore an idle instance, without their
// bookkeeping (runtime/exec's share of a transaction is not measured here).
type oneInstance struct{ in *vm.Instance }

func (o oneInstance) Acquire(_ context.Context, _ types.Address, method string) (api.Module, api.Function, bool, error) {
	o.in.Restore()
	return o.in.Module(), o.in.Export(method), true, nil
}

func (oneInstance) Release(api.Module, bool) {}

// BenchmarkHostPath: the fixed cost every guest pays per transaction, on
// the compiler engine: host.Run on a restored instance (Restore, gas_left,
// the frame, the export call, the result; the Result's Writes go back to
// the Arena after each transaction, as an executor worker gives them). empty is a method that does
// nothing (one kairos function, input_read, so the frame enters the host
// once); caller_x16 calls kairos.caller 16 times (its difference to empty
// over 15 is the cost of one cheap kairos function: wazero's exit and
// re-entry, gas_left, the function); wat_transfer is contracts/token_wat's
// transfer, seven kairos functions (input_read, caller, 2 × state_get,
// 2 × state_set, emit_event) and almost no guest code, against a
// host.MemState (its map lookups and their 4 allocations are in the
// figure, as in the native floor of runtime/enginetest's
// BenchmarkTokenTransfer). The Tx, with an Arena, is built once, as a
// worker has it. cpu-ns/op is the process's CPU time per transaction.
// A 64 MiB pointer-free ballast gives the heap a node's size: with this
// test's ~2 MiB the collector ran back to back (70 cycles in 0.85 s), so
// every pointer write of the host path paid a write barrier, which
// runtime/enginetest's 54 MiB heap and a node's do not.
//
//	go test -run '^$' -bench HostPath -count 3 ./runtime/vm/
func BenchmarkHostPath(b *testing.B) {
	ballast := make([]byte, 64<<20)
	defer runtime.KeepAlive(ballast)
	ctx := context.Background()
	tokenBin, err := os.ReadFile("../../contracts/token_wat/token.wasm")
	if err != nil {
		b.Fatal(err)
	}
	eb := New()
	eb.Memory(1, 1)
	read := eb.Import("kairos", "input_read", []wasm.ValType{wasm.I32, wasm.I32}, I32s)
	callerFn := eb.Import("kairos", "caller", []wasm.ValType{wasm.I32}, nil)
	eb.Func("empty", nil, nil, nil, I32(0), I32(0), Idx(wasm.OpCall, read), Op(wasm.OpDrop))
	var body []wasm.Instr
	for range 16 {
		body = append(body, I32(64), Idx(wasm.OpCall, callerFn))
	}
	eb.Func("callers", nil, nil, nil, body...)
	self, alice, bob := types.Address{1}, types.Address{2}, types.Address{3}
	balKey := func(a types.Address) []byte { return append([]byte("\x03bal"), a[:]...) }
	for _, c := range []struct {
		name, method string
		bin          []byte
		input        []byte
	}{
		{"empty", "empty", eb.Bytes(), nil},
		{"caller_x16", "callers", eb.Bytes(), nil},
		{"wat_transfer", "transfer", tokenBin, binary.BigEndian.AppendUint64(bob[:], 1)},
	} {
		b.Run(c.name, func(b *testing.B) {
			in, err := compile(b, vm.DefaultConfig(), prepare(b, c.bin)).Instantiate(ctx, vm.Env{})
			if err != nil {
				b.Fatal(err)
			}
			st := host.MemState{}
			st.Set(self, balKey(alice), binary.BigEndian.AppendUint64(nil, 1<<40))
			tx := &host.Tx{ID: types.Hash{9}, Sender: alice, Time: 1e9, Height: 1, Gas: 1_000_000, State: st,
				Instances: oneInstance{in}, Arena: new(host.Arena), Access: []types.Access{
					{Module: self, Key: balKey(alice), Mode: types.Write},
					{Module: self, Key: balKey(bob), Mode: types.Write}}}
			var gas int64
			cpu0 := cpuNs(b)
			for b.Loop() {
				r, err := host.Run(ctx, tx, self, c.method, c.input)
				if err != nil || r.Status != types.StatusOK {
					b.Fatal(err, r.Status, r.Reason())
				}
				gas = r.GasUsed
				tx.Arena.Release(r.Writes) // as runtime/exec's WasmRunner, once it copied them
			}
			b.ReportMetric(float64(cpuNs(b)-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(gas), "gas/op")
		})
	}
}
