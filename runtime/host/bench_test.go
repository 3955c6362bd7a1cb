package host_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/types"
)

// live hands out one instance per module, with its functions cached, and
// never resets it: it measures the host path alone (what a pooled engine
// adds on top is its reset).
type live struct {
	*fresh
	mods map[types.Address]api.Module
	fns  map[string]api.Function
}

func (l *live) Acquire(ctx context.Context, a types.Address, method string) (api.Module, api.Function, bool, error) {
	m, ok := l.mods[a]
	if !ok {
		var err error
		if m, _, ok, err = l.fresh.Acquire(ctx, a, method); !ok {
			return nil, nil, ok, err
		}
		l.mods[a] = m
	}
	k := string(a[:]) + method
	fn, ok := l.fns[k]
	if !ok {
		fn = m.ExportedFunction(method)
		l.fns[k] = fn
	}
	return m, fn, true, nil
}

func (l *live) Release(api.Module, bool) {}

// BenchmarkCall: one transaction through host.Run, per engine and instance
// mode: "live" reuses an instance (host path only), "fresh" instantiates
// and runs _initialize per call (the simplest correct engine). noop (an
// empty WAT-sized method) is the baseline of the same run.
//
//	go test -run '^$' -bench BenchmarkCall -benchtime 2000x ./runtime/host
func BenchmarkCall(b *testing.B) {
	token, counter, noop := addr("token"), addr("counter"), addr("noop")
	nb := New()
	nb.Memory(1, 1)
	nb.Func("noop", nil, nil, nil)
	transfer := enc(bob, uint64(1))
	cases := []struct {
		name   string
		to     types.Address
		method string
		input  []byte
		access []types.Access
	}{
		{"noop", noop, "noop", nil, nil},
		{"wat_counter_increment", counter, "increment", nil, []types.Access{{Module: counter, Key: countKey, Mode: types.Write}}},
		{"go_token_transfer", token, "transfer", transfer, []types.Access{
			{Module: token, Key: append([]byte("\x03bal"), alice[:]...), Mode: types.Write},
			{Module: token, Key: append([]byte("\x03bal"), bob[:]...), Mode: types.Write}}},
	}
	for ei := range engines {
		for _, mode := range []string{"live", "fresh"} {
			for _, tc := range cases {
				b.Run(engines[ei].name+"/"+mode+"/"+tc.name, func(b *testing.B) {
					c := newChain(b, ei)
					c.deploy(noop, nb.Bytes(), alice, nil, 1e9)
					c.deploy(counter, contract(b, "counter_wat"), alice, nil, 1e9)
					c.deploy(token, contract(b, "token"), alice, nil, 1e9)
					c.state.Set(token, append([]byte("\x03bal"), alice[:]...), u64(1<<40))
					var inst host.Instances = c.eng
					if mode == "live" {
						inst = &live{c.eng, map[types.Address]api.Module{}, map[string]api.Function{}}
					}
					tx := &host.Tx{ID: sha256.Sum256([]byte("bench")), Sender: alice, Time: 1e9, Height: 1, Gas: 10_000_000,
						Access: tc.access, State: c.state, Instances: inst}
					run := func() host.Result {
						r, err := host.Run(context.Background(), tx, tc.to, tc.method, tc.input)
						if err != nil || r.Status != types.StatusOK {
							b.Fatalf("%v %+v %s", err, r, r.Reason())
						}
						return r
					}
					gas := run().GasUsed
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						run()
					}
					b.ReportMetric(float64(gas), "gas/op")
				})
			}
		}
	}
}
