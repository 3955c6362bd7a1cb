package enginetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

// sameAs is r with every mention of the module self (writes, events)
// replaced by the zero address, so the receipts of two modules compare.
func sameAs(r host.Result, self types.Address) string {
	for i := range r.Writes {
		if r.Writes[i].Module == self {
			r.Writes[i].Module = types.Address{}
		}
	}
	for i := range r.Events {
		if r.Events[i].Module == self {
			r.Events[i].Module = types.Address{}
		}
	}
	reason := r.Reason()
	if strings.HasPrefix(reason, "guest: ") || reason == "token: bad input" {
		// The Go SDK's decoder words input errors its own way; both
		// must abort, with any message.
		reason = "bad input"
	}
	return fmt.Sprintf("status=%v reason=%q return=%x events=%v writes=%v", r.Status, reason, r.Return, r.Events, r.Writes)
}

// tokenScript is a seeded mix of every token method with valid and
// invalid arguments: unknown admins, insufficient balances and
// allowances, self transfers, zero amounts (deleted keys), supply
// overflow, wrong input lengths.
func tokenScript(seed uint64, n int) []tx {
	rng := rand.New(rand.NewPCG(seed, 0))
	pick := func() types.Address { return accounts[rng.IntN(len(accounts))] }
	amount := func() uint64 {
		switch rng.IntN(8) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64 - uint64(rng.IntN(3))
		default:
			return uint64(rng.IntN(1500))
		}
	}
	var out []tx
	for range n {
		t := tx{from: pick()}
		switch rng.IntN(10) {
		case 0:
			t.from = []types.Address{carol, pick()}[rng.IntN(2)]
			t.method, t.input = "mint", enc(pick(), amount())
		case 1, 2:
			t.method, t.input = "transfer", enc(pick(), amount())
		case 3:
			t.method, t.input = "approve", enc(pick(), amount())
		case 4:
			t.method, t.input = "transfer_from", enc(pick(), pick(), amount())
		case 5:
			t.method, t.input = "balance", enc(pick())
		case 6:
			t.method, t.input = "allowance", enc(pick(), pick())
		case 7:
			t.method = "total_supply"
			if rng.IntN(3) == 0 {
				t.input = []byte{1}
			}
		case 8: // by the admin, so mints keep succeeding
			t.from, t.method = carol, "init"
			if rng.IntN(2) == 0 {
				t.input = []byte{1}
			}
		default: // an input one byte short or long
			t.method = []string{"mint", "transfer", "approve", "transfer_from", "balance", "allowance"}[rng.IntN(6)]
			t.input = enc(pick(), pick(), pick())[:32*(1+rng.IntN(2))+8*rng.IntN(2)+[]int{-1, 1}[rng.IntN(2)]]
		}
		out = append(out, t)
	}
	return out
}

// TestWATTokenMatchesGoToken is the differential test of
// contracts/token_wat against contracts/token: the same script, committed
// on one chain to both modules, gives the same status, abort message,
// return data, events and writes (up to the module address) at every step.
// Gas differs: the modules are different code.
func TestWATTokenMatchesGoToken(t *testing.T) {
	ch := newChain(t, configs[1])
	setup(ch)
	reasons := map[string]int{}
	for i, tc := range tokenScript(5, 200) {
		goTx, watTx := tc, tc
		goTx.to, watTx.to = token, tokenWAT
		lifecycle := tc.method == "init" // init runs at deploy (or upgrade) only
		g, w := ch.run(goTx, lifecycle, true), ch.run(watTx, lifecycle, true)
		if sameAs(g, token) != sameAs(w, tokenWAT) {
			t.Fatalf("tx %d %s %x from %x:\n go:  %s\n wat: %s", i, tc.method, tc.input, tc.from[:4], sameAs(g, token), sameAs(w, tokenWAT))
		}
		reasons[w.Status.String()+" "+w.Reason()]++
	}
	// The script reaches success and every failure of the token.
	for _, want := range []string{"ok ", "aborted token: bad input", "aborted token: init takes no input", "aborted token: not admin",
		"aborted token: supply overflow", "aborted token: insufficient balance", "aborted token: allowance exceeded",
		"aborted token: total_supply takes no input"} {
		if reasons[want] == 0 {
			t.Errorf("the script never reached %q: %v", want, reasons)
		}
	}
}
