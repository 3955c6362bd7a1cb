//go:build !race

// The Go guest takes seconds per instantiation under the race detector;
// the scheduler's concurrency is raced by the other tests.

package exec

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestGoGuestLifecycle deploys the Go counter (contracts/counter, ~2 MB, so
// its code is stored in two chunks) in a block and calls it in the next,
// in parallel and serially. KAIROS_EXEC_SKIP_GO=1 skips it (it builds the
// module with the local Go toolchain).
func TestGoGuestLifecycle(t *testing.T) {
	if os.Getenv("KAIROS_EXEC_SKIP_GO") != "" {
		t.Skip("KAIROS_EXEC_SKIP_GO set")
	}
	out := filepath.Join(t.TempDir(), "counter.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "../../contracts/counter")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the Go counter: %v\n%s", err, b)
	}
	code := readWasm(t, out)
	if len(code) <= types.StateValueMax {
		t.Fatalf("Go counter of %d bytes no longer needs chunks; pick a bigger module", len(code))
	}
	c := newLifecycleChain(t)
	inst := InstanceAddress(addr(1), 1)
	deployTx := lc(1, 1, types.Payload{Kind: types.Deploy, Code: code, Admin: addr(1)})
	deployTx.Body.GasLimit = 1 << 30
	rs := c.block(deployTx)
	expect(t, rs, types.StatusOK)
	// The Go SDK keys its counter under a length-prefixed name; simulation
	// finds it, so the test does not hard-code the key.
	sim, err := New(c.w.runner, Options{}).Simulate(context.Background(), c.stores[0], BlockEnv{Height: c.h + 1, Time: 1e12}, goIncr(2, 1, inst))
	if err != nil || sim.Receipt.Status != types.StatusOK {
		t.Fatalf("simulate: %v %+v", err, sim)
	}
	rs = c.block(goIncr(2, 1, inst, sim.Access...), goIncr(3, 1, inst, sim.Access...))
	expect(t, rs, types.StatusOK, types.StatusOK)
	if len(rs[1].Return) != 8 || u64(rs[1].Return) != 2 {
		t.Fatalf("second increment returned %x", rs[1].Return)
	}
}

func goIncr(sender int, nonce uint64, m types.Address, access ...types.Access) *types.Tx {
	tx := mkTx(sender, nonce, 1e18, call(m, "increment", nil), access...)
	tx.Body.GasLimit = 1 << 30
	return tx
}
