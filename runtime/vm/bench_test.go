package vm_test

import (
	"context"
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/vm"
)

// Benchmarks:
//
//	go test -run '^$' -bench . -count 3 ./runtime/vm/
//
// BenchmarkDeploy: validate + instrument + compile (compiler engine, empty
// cache) of the Go guest, the runtime.md target is <= 1.5 s; the plain
// compile of the original bytes is the baseline of the same run.
// BenchmarkCall: one call including the snapshot restore before it.

func BenchmarkDeploy(b *testing.B) {
	bin := GoGuest(b)
	ctx := context.Background()
	for _, full := range []bool{false, true} {
		name := "goguest/compile-original"
		if full {
			name = "goguest/validate+instrument+compile"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				code := bin
				if full {
					p, err := deploy.Prepare(bin, cfg)
					if err != nil {
						b.Fatal(err)
					}
					code = p.Instrumented
				}
				e, err := vm.NewEngine(ctx, vm.DefaultConfig())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Compile(ctx, code); err != nil {
					b.Fatal(err)
				}
				e.Close(ctx)
			}
		})
	}
}

func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		bin  func(testing.TB) []byte
		fn   string
	}{{"small/bump", func(testing.TB) []byte { return counter() }, "bump"}, {"goguest/add", GoGuest, "add"}} {
		in := engines(b, prepare(b, c.bin(b)), vm.Env{})[0]
		args := []uint64{}
		if c.fn == "add" {
			args = []uint64{2, 40}
		}
		b.Run(c.name+"/restore+call", func(b *testing.B) {
			for b.Loop() {
				if o, err := in.Call(ctx, c.fn, 1<<30, args...); err != nil || o.Status != vm.StatusOK {
					b.Fatal(o, err)
				}
			}
			b.ReportMetric(float64(in.SnapshotBytes()), "snapshot-bytes")
		})
		// Baseline: copying a buffer of the snapshot's size, nothing else.
		b.Run(c.name+"/memcpy-baseline", func(b *testing.B) {
			src, dst := make([]byte, in.SnapshotBytes()), make([]byte, in.SnapshotBytes())
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}
