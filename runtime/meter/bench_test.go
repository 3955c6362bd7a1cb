package meter_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero/api"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// Benchmarks (figures for the report; no timed assertions):
//
//	go test -run '^$' -bench . -count 3 ./runtime/meter/
//
// BenchmarkInstrument/* measures decode + validate + instrument + encode
// and reports the size increase; BenchmarkCall/* measures one export call
// on a live compiler-engine instance, metered against the unmetered
// baseline of the same run, and reports the gas of the call.

func BenchmarkInstrument(b *testing.B) {
	for _, c := range []struct {
		name string
		bin  func(testing.TB) []byte
	}{{"small", func(testing.TB) []byte { return programs() }}, {"goguest", GoGuest}} {
		b.Run(c.name, func(b *testing.B) {
			bin := c.bin(b)
			var out []byte
			b.SetBytes(int64(len(bin)))
			for b.Loop() {
				m, _, err := validate.Check(bin, testConfig)
				if err != nil {
					b.Fatal(err)
				}
				im, err := meter.Instrument(m)
				if err != nil {
					b.Fatal(err)
				}
				out = wasm.Encode(im)
			}
			b.ReportMetric(100*float64(len(out)-len(bin))/float64(len(bin)), "%size")
		})
	}
}

func BenchmarkCall(b *testing.B) {
	small := programs()
	for _, c := range []struct {
		name string
		bin  func(testing.TB) []byte
		fn   string
		args []uint64
		init bool
	}{
		{"small/add", func(testing.TB) []byte { return small }, "add", []uint64{2, 40}, false},
		{"small/sum1000", func(testing.TB) []byte { return small }, "sum", []uint64{1000}, false},
		{"small/fact20", func(testing.TB) []byte { return small }, "fact", []uint64{20}, false},
		{"goguest/add", GoGuest, "add", []uint64{2, 40}, true},
		{"goguest/churn100", GoGuest, "churn", []uint64{100}, true},
	} {
		for _, metered := range []bool{false, true} {
			name := c.name + "/plain"
			if metered {
				name = c.name + "/metered"
			}
			b.Run(name, func(b *testing.B) {
				bin := c.bin(b)
				if metered {
					bin = instrument(b, bin)
				}
				in := Instantiate(b, Engines[0], bin)
				if c.init {
					in.Call("_initialize", plenty)
				}
				// The loop is what a host does per call: set gas_left
				// (metered only) and call; no export lookups.
				f := in.Module().ExportedFunction(c.fn)
				gas, _ := in.Module().ExportedGlobal(meter.GasExport).(api.MutableGlobal)
				ctx := context.Background()
				for b.Loop() {
					if gas != nil {
						gas.Set(uint64(plenty))
					}
					if _, err := f.Call(ctx, c.args...); err != nil {
						b.Fatal(err)
					}
				}
				if metered {
					b.ReportMetric(float64(plenty-int64(gas.Get())), "gas/call")
				}
			})
		}
	}
}
