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
// on a live compiler-engine instance, metered and tracked (metered plus
// Track's dirty-page marks, what runtime/vm runs) against the unmetered
// baseline of the same run, and reports the gas of the call.
// small/stores1000 is the worst case for tracking: a loop of 1 000 i64
// stores.

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

// stores is a module whose "stores"(n) stores n words in a loop.
func stores() []byte {
	b := New()
	b.Memory(1, 1)
	b.Func("stores", I32s, nil, I32s,
		Block(wasm.OpLoop, wasm.BlockEmpty),
		Idx(wasm.OpLocalGet, 1), I32(3), Op(0x74 /* i32.shl */), I32(0xFFF8), Op(0x71 /* i32.and */), Idx(wasm.OpLocalGet, 1), Op(wasm.OpI64ExtendI32U), Mem(wasm.OpI64Store, 3, 0),
		Idx(wasm.OpLocalGet, 1), I32(1), Op(wasm.OpI32Add), Idx(wasm.OpLocalTee, 1), Idx(wasm.OpLocalGet, 0), Op(0x49 /* i32.lt_u */), Idx(wasm.OpBrIf, 0),
		Op(wasm.OpEnd))
	return b.Bytes()
}

// benchHost is a TrackConfig for benchmarks only: it claims WASI writes
// nothing, which is false but costs the same per store.
var benchHost = meter.TrackConfig{MemoryPages: 512, HostWrites: func(string, string) ([]meter.Region, bool) { return nil, true }}

func BenchmarkCall(b *testing.B) {
	small, st := programs(), stores()
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
		{"small/stores1000", func(testing.TB) []byte { return st }, "stores", []uint64{1000}, false},
		{"goguest/add", GoGuest, "add", []uint64{2, 40}, true},
		{"goguest/churn100", GoGuest, "churn", []uint64{100}, true},
	} {
		for _, variant := range []string{"plain", "metered", "tracked"} {
			metered := variant != "plain"
			b.Run(c.name+"/"+variant, func(b *testing.B) {
				bin := c.bin(b)
				var mod api.Module
				switch variant {
				case "plain", "metered":
					if metered {
						bin = instrument(b, bin)
					}
					in := Instantiate(b, Engines[0], bin)
					if c.init {
						in.Call("_initialize", plenty)
					}
					mod = in.Module()
				case "tracked":
					in := instantiateTracked(b, false, track(b, bin, benchHost))
					if c.init {
						in.call("_initialize", plenty)
					}
					mod = in.mod
				}
				// The loop is what a host does per call: set gas_left
				// (metered only) and call; no export lookups.
				f := mod.ExportedFunction(c.fn)
				gas, _ := mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal)
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
