package enginetest

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/types"
)

// oneInstance serves every frame from one instance, restored at Acquire,
// so a test can read what each restore copied.
type oneInstance struct{ in *vm.Instance }

func (o oneInstance) Acquire(ctx context.Context, _ types.Address, method string) (api.Module, api.Function, bool, error) {
	o.in.Restore()
	return o.in.Module(), o.in.Export(method), true, nil
}

func (o oneInstance) Release(api.Module, bool) {}

// TestGoTokenDirtiesFewPages guards the SDK's allocation-free helpers and
// its warmed allocator where they matter, in the wasm build: the restore
// after a Go token method copies back at most pagesMax 4 KiB pages. A
// transfer through helpers that allocate made the Go runtime fetch spans
// and dirtied ~26 pages; approve, which allocates (NewEncoder), dirtied
// ~18 before the SDK's init cached a span of every small size class
// (RATIONALE.md, "Why does the Go SDK read and encode state through
// package-level buffers?").
func TestGoTokenDirtiesFewPages(t *testing.T) {
	ctx := context.Background()
	ch := newChain(t, configs[0])
	setup(ch)
	code, err := ch.mods.compiled(ctx, ch.mods.code[token].bin)
	if err != nil {
		t.Fatal(err)
	}
	if !code.Tracked() {
		t.Fatal("the Go token's code is not tracked: every restore copies the whole snapshot")
	}
	for _, c := range []struct {
		method   string
		pagesMax int
	}{
		{"transfer", 4}, // the goroutine stack and the SDK's buffers
		{"approve", 10},
	} {
		in, err := code.Instantiate(ctx, vm.Env{})
		if err != nil {
			t.Fatal(err)
		}
		input := enc(bob, uint64(1))
		htx := ch.hostTx(tx{from: alice, to: token, method: c.method, input: input, time: t0}, false)
		htx.Instances = oneInstance{in}
		for i := range 3 {
			r, err := host.Run(ctx, htx, token, c.method, input)
			if err != nil || r.Status != types.StatusOK {
				t.Fatal(err, record(r))
			}
			if i == 0 {
				continue // restored what _initialize left: nothing
			}
			if pages := in.RestoredBytes() / (1 << meter.PageShift); pages > c.pagesMax {
				t.Errorf("%s %d: the restore before it copied %d bytes (%d pages), want at most %d pages", c.method, i, in.RestoredBytes(), pages, c.pagesMax)
			}
		}
		in.Close(ctx)
	}
}
