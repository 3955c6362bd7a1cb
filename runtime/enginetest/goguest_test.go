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

// goTransferPagesMax bounds the 4 KiB pages a Go token transfer dirties:
// the goroutine stack and the SDK's buffers. A transfer whose helpers
// allocate makes the Go runtime refill its span caches and dirties ~26
// pages (RATIONALE.md, "Why does the Go SDK read and encode state through
// package-level buffers?").
const goTransferPagesMax = 4

// TestGoTokenTransferDirtiesFewPages guards the SDK's allocation-free
// path where it matters, in the wasm build: the restore after a Go token
// transfer copies back at most goTransferPagesMax pages.
func TestGoTokenTransferDirtiesFewPages(t *testing.T) {
	ctx := context.Background()
	ch := newChain(t, configs[0])
	setup(ch)
	code, err := ch.mods.compiled(ctx, ch.mods.code[token].bin)
	if err != nil {
		t.Fatal(err)
	}
	in, err := code.Instantiate(ctx, vm.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(ctx)
	if !code.Tracked() {
		t.Fatal("the Go token's code is not tracked: every restore copies the whole snapshot")
	}
	input := enc(bob, uint64(1))
	htx := ch.hostTx(tx{from: alice, to: token, method: "transfer", input: input, time: t0}, false)
	htx.Instances = oneInstance{in}
	for i := range 3 {
		r, err := host.Run(ctx, htx, token, "transfer", input)
		if err != nil || r.Status != types.StatusOK {
			t.Fatal(err, record(r))
		}
		if i == 0 {
			continue // restored what _initialize left: nothing
		}
		if pages := in.RestoredBytes() / (1 << meter.PageShift); pages > goTransferPagesMax {
			t.Fatalf("transfer %d: the restore before it copied %d bytes (%d pages), want at most %d pages", i, in.RestoredBytes(), pages, goTransferPagesMax)
		}
	}
}
