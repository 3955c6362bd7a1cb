package enginetest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// BenchmarkGoTransferLayers splits the transfer cost of the Go token (go),
// of the same transfer in Go on the raw ABI without the SDK's typed helpers
// (goraw: sdk/guest/internal/rawtoken) and of the WAT token (wat: almost no
// guest code) by the layers the runtime puts around the guest's code, each
// one a compiler-engine instance serving every frame of host.Run:
//
//   - bare: the token as built, plus only the globals the host needs
//     (gas_left, the depth globals, exported globals) — no charges, no
//     depth counting, no tracking, no restore: what the guest itself costs
//     on a live instance behind the full host path (wat/bare is nearly all
//     host path);
//   - gas: Instrument's gas charges, without the call-depth counter;
//   - gas+depth: Instrument's output, what is deployed;
//   - tracked: that plus meter.Track's dirty-page marks (what a node
//     compiles), still without restores;
//   - restored: tracked with the dirty-page restore before every frame —
//     the production path of BenchmarkTokenTransfer's go/compiler/pooled.
//
// Without restores the instance carries its memory from one transfer to
// the next; a transfer allocates nothing (the Go SDK's helpers), so every
// iteration does the same work (the gas/op of the metered layers equals the receipt's). cpu-ns/op
// is the process's CPU time per transfer, x-native-cpu and x-native-wall
// the ratios to the native floor of the same run (see usage).
//
//	go test -run '^$' -bench GoTransferLayers -count 3 ./runtime/enginetest/
func BenchmarkGoTransferLayers(b *testing.B) {
	ch := newChain(b, configs[0])
	setup(ch)
	var floor usage
	b.Run("native", func(b *testing.B) { floor = benchNative(b, ch) })
	raw, err := buildGo("./sdk/guest/internal/rawtoken")
	if err != nil {
		b.Fatal(err)
	}
	rawToken := addr("rawtoken")
	ch.deploy(rawToken, raw, carol, nil)
	for _, a := range accounts { // the balances the token's mints wrote
		key := append([]byte("\x03bal"), a[:]...)
		bal, _, _ := ch.state.Get(token, key)
		ch.state.Set(rawToken, key, bal)
	}
	ctx := context.Background()
	for _, mod := range []struct {
		name string
		at   types.Address
		bin  []byte
	}{{"go", token, contract(b, "token")}, {"goraw", rawToken, raw}, {"wat", tokenWAT, contract(b, "token_wat")}} {
		at := mod.at
		inst := ch.mods.code[at].bin
		m, err := wasm.Decode(inst)
		if err != nil {
			b.Fatal(err)
		}
		orig, err := wasm.Decode(mod.bin)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range []struct {
			name             string
			bin              []byte
			tracked, restore bool
		}{
			{"bare", wasm.Encode(bare(b, m, orig)), false, false},
			{"gas", wasm.Encode(withoutDepth(b, m)), false, false},
			{"gas+depth", inst, false, false},
			{"tracked", inst, true, false},
			{"restored", inst, true, true},
		} {
			b.Run(mod.name+"/"+l.name, func(b *testing.B) {
				cfg := vm.DefaultConfig()
				cfg.FullRestore = !l.tracked
				e, err := vm.NewEngine(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close(ctx)
				code, err := e.Compile(ctx, l.bin)
				if err != nil {
					b.Fatal(err)
				}
				in, err := code.Instantiate(ctx, vm.Env{})
				if err != nil {
					b.Fatal(err)
				}
				t := tx{from: alice, to: at, method: "transfer", input: enc(bob, uint64(1)), time: t0}
				htx := ch.hostTx(t, false)
				htx.Instances = liveInstance{in, l.restore}
				htx.Arena = new(host.Arena) // as in BenchmarkTokenTransfer
				// Every module makes the Go token's writes and event (the
				// WAT token's equality is TestWATTokenMatchesGoToken's).
				want := ch.run(tx{from: alice, to: token, method: "transfer", input: t.input, time: t0}, false, false)
				if r, err := host.Run(ctx, htx, t.to, t.method, t.input); err != nil || effects(r) != effects(want) {
					b.Fatalf("%v %s, want the Go token's %s", err, effects(r), effects(want))
				}
				var gas int64
				done := measure(b)
				for b.Loop() {
					r, err := host.Run(ctx, htx, t.to, t.method, t.input)
					if err != nil || r.Status != types.StatusOK {
						b.Fatal(err, record(r))
					}
					gas = r.GasUsed
				}
				u := done()
				b.ReportMetric(float64(gas), "gas/op")
				u.report(b, floor)
			})
		}
	}
}

// liveInstance serves every frame from one instance, restored before each
// frame only if restore is set.
type liveInstance struct {
	in      *vm.Instance
	restore bool
}

func (l liveInstance) Acquire(_ context.Context, _ types.Address, method string) (api.Module, api.Function, bool, error) {
	if l.restore {
		l.in.Restore()
	}
	return l.in.Module(), l.in.Export(method), true, nil
}

func (liveInstance) Release(api.Module, bool) {}

// bare is Instrument's output m with the original function bodies of orig:
// the added globals and exports without any added code. Instrument adds no
// functions, so the bodies line up.
func bare(t testing.TB, m, orig *wasm.Module) *wasm.Module {
	if len(m.Code) != len(orig.Code) {
		t.Fatalf("%d instrumented bodies, %d original", len(m.Code), len(orig.Code))
	}
	out := *m
	out.Layout, out.Code = nil, orig.Code
	return &out
}

// withoutDepth is Instrument's output m without its call-depth counting:
// the prologue's increment and test, and every decrement.
func withoutDepth(t testing.TB, m *wasm.Module) *wasm.Module {
	depth := ^uint64(0)
	for _, e := range m.Exports {
		if e.Name == meter.DepthExport {
			depth = uint64(e.Index)
		}
	}
	const prologue = 12 // depth++; if depth > MaxCallDepth { exceeded = 1; unreachable }
	out := *m
	out.Layout, out.Code = nil, make([]wasm.Code, len(m.Code))
	for i, c := range m.Code {
		body := c.Body
		if len(body) < prologue || body[0].Op != wasm.OpGlobalGet || body[0].A != depth || body[prologue-1].Op != wasm.OpEnd {
			t.Fatalf("function %d does not start with the depth prologue", i)
		}
		var nb []wasm.Instr
		for j := prologue; j < len(body); j++ {
			if j+3 < len(body) && body[j].Op == wasm.OpGlobalGet && body[j].A == depth && body[j+2].Op == wasm.OpI32Sub &&
				body[j+3].Op == wasm.OpGlobalSet && body[j+3].A == depth {
				j += 3
				continue
			}
			nb = append(nb, body[j])
		}
		out.Code[i] = wasm.Code{Locals: c.Locals, Body: nb}
	}
	return &out
}

// benchNative measures the native floor on ch (set up) and returns what a
// transfer cost (see BenchmarkTokenTransfer).
func benchNative(b *testing.B, ch *chain) usage {
	input := enc(bob, uint64(1))
	done := measure(b)
	for b.Loop() {
		if _, err := nativeTransfer(ch.state, token, alice, input); err != nil {
			b.Fatal(err)
		}
	}
	u := done()
	u.report(b, usage{})
	return u
}

// effects renders a result's writes and events without the module address.
func effects(r host.Result) string {
	var b strings.Builder
	fmt.Fprint(&b, r.Status)
	for _, w := range r.Writes {
		fmt.Fprintf(&b, " %x=%x/%v", w.Key, w.Value, w.Deleted)
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, " %s:%x", e.Topic, e.Data)
	}
	return b.String()
}
