package enginetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/types"
)

// gasProfiler is a wazero FunctionListener that attributes gas to guest
// functions by reading gas_left on entry and exit. Host functions are not
// listened to (their module has no gas_left), so a kairos or WASI call's
// charge lands on the guest function that made it.
type gasProfiler struct {
	on    bool
	stack []gasFrame
	incl  map[string]int64
	excl  map[string]int64
	calls map[string]int64
}

type gasFrame struct {
	name           string
	entry, callees int64
}

func (p *gasProfiler) NewFunctionListener(api.FunctionDefinition) experimental.FunctionListener {
	return p
}

func (p *gasProfiler) gas(mod api.Module) (int64, bool) {
	g := mod.ExportedGlobal(meter.GasExport)
	if !p.on || g == nil {
		return 0, false
	}
	return int64(g.Get()), true
}

func (p *gasProfiler) Before(_ context.Context, mod api.Module, def api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	if g, ok := p.gas(mod); ok {
		p.stack = append(p.stack, gasFrame{name: def.DebugName(), entry: g})
	}
}

func (p *gasProfiler) After(_ context.Context, mod api.Module, _ api.FunctionDefinition, _ []uint64) {
	g, ok := p.gas(mod)
	if !ok || len(p.stack) == 0 {
		return
	}
	f := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	used := f.entry - g
	p.incl[f.name] += used
	p.excl[f.name] += used - f.callees
	p.calls[f.name]++
	if len(p.stack) > 0 {
		p.stack[len(p.stack)-1].callees += used
	}
}

func (p *gasProfiler) Abort(ctx context.Context, mod api.Module, def api.FunctionDefinition, _ error) {
	p.After(ctx, mod, def, nil)
}

// TestGasProfile attributes a method's gas to the guest functions that
// spent it (inclusive: what gas_left dropped across a function; exclusive:
// that minus its callees'), on the interpreter (gas is equal on both
// engines), after two runs of the method on the same restored instance so
// that the profiled run is a steady-state one. The exclusive gas of all
// functions must add up to the receipt's gas. It profiles the WAT token's
// transfer unless KAIROS_GAS_PROFILE names another module and method, and
// logs the costliest functions and the 4 KiB pages the run changed:
//
//	KAIROS_GAS_PROFILE="token transfer" go test -run GasProfile -v ./runtime/enginetest/
//
// (modules: token and token_wat with input bob ‖ u64 1; counter and
// counter_wat with no input). RATIONALE.md, "Why does the Go SDK read and
// encode state through package-level buffers?", shows what it found.
func TestGasProfile(t *testing.T) {
	name, method := "token_wat", "transfer"
	if s := os.Getenv("KAIROS_GAS_PROFILE"); s != "" {
		if _, err := fmt.Sscan(s, &name, &method); err != nil {
			t.Fatalf("KAIROS_GAS_PROFILE=%q: want \"<module> <method>\"", s)
		}
	}
	addrs := map[string]types.Address{"token": token, "token_wat": tokenWAT, "counter": counterGo, "counter_wat": counterWAT}
	at, ok := addrs[name]
	if !ok {
		t.Fatalf("no module %q to profile", name)
	}
	var input []byte
	if strings.HasPrefix(name, "token") {
		input = enc(bob, uint64(1))
	}
	ctx := context.Background()
	ch := newChain(t, configs[0])
	setup(ch)
	cfg := vm.DefaultConfig()
	cfg.Interpreter = true
	e, err := vm.NewEngine(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	p := &gasProfiler{incl: map[string]int64{}, excl: map[string]int64{}, calls: map[string]int64{}}
	code, err := e.Compile(experimental.WithFunctionListenerFactory(ctx, p), ch.mods.code[at].bin)
	if err != nil {
		t.Fatal(err)
	}
	in, err := code.Instantiate(ctx, vm.Env{})
	if err != nil {
		t.Fatal(err)
	}
	mem := in.Module().Memory()
	view, _ := mem.Read(0, mem.Size())
	snap := slices.Clone(view)
	htx := ch.hostTx(tx{from: alice, to: at, method: method, input: input, time: t0}, false)
	htx.Instances = oneInstance{in}
	var r host.Result
	for i := range 3 {
		p.on = i == 2
		if r, err = host.Run(ctx, htx, at, method, input); err != nil {
			t.Fatal(err)
		}
	}
	var sum int64
	names := make([]string, 0, len(p.excl))
	for n, g := range p.excl {
		sum += g
		names = append(names, n)
	}
	if sum != r.GasUsed {
		t.Fatalf("%s.%s: functions spent %d gas, the receipt says %d (%s)", name, method, sum, r.GasUsed, record(r))
	}
	slices.SortFunc(names, func(a, b string) int { return int(p.excl[b] - p.excl[a]) })
	var b strings.Builder
	fmt.Fprintf(&b, "%s.%s: status %s, %d gas\n%10s %10s %6s  function\n", name, method, r.Status, r.GasUsed, "exclusive", "inclusive", "calls")
	for _, n := range names[:min(len(names), 40)] {
		fmt.Fprintf(&b, "%10d %10d %6d  %s\n", p.excl[n], p.incl[n], p.calls[n], n)
	}
	var pages []int
	for pg := range len(snap) >> meter.PageShift {
		lo, hi := pg<<meter.PageShift, (pg+1)<<meter.PageShift
		if string(view[lo:hi]) != string(snap[lo:hi]) {
			pages = append(pages, pg)
		}
	}
	fmt.Fprintf(&b, "4 KiB pages changed since the snapshot: %v", pages)
	t.Log(b.String())
}
