package enginetest

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

var (
	alice, bob, carol, dave = addr("alice"), addr("bob"), addr("carol"), addr("dave")
	accounts                = []types.Address{alice, bob, carol, dave}
	counterGo, counterWAT   = addr("counter"), addr("counter_wat")
	token, registry, caller = addr("token"), addr("registry"), addr("caller")
	tokenWAT                = addr("token_wat")
)

const t0 = int64(1_700_000_000_000_000_000)

// setup deploys every example module and funds the accounts.
func setup(c *chain) {
	c.t.Helper()
	c.deploy(counterGo, contract(c.t, "counter"), alice, nil)
	c.deploy(counterWAT, contract(c.t, "counter_wat"), alice, nil)
	c.deploy(token, contract(c.t, "token"), carol, nil)
	c.deploy(tokenWAT, contract(c.t, "token_wat"), carol, nil)
	c.deploy(registry, contract(c.t, "registry"), alice, enc(uint64(3_600_000_000_000)))
	c.deploy(caller, contract(c.t, "caller"), alice, enc(counterGo))
	for _, a := range accounts {
		for _, tok := range []types.Address{token, tokenWAT} {
			if r := c.run(tx{from: carol, to: tok, method: "mint", input: enc(a, uint64(1000))}, false, true); r.Status != types.StatusOK {
				c.t.Fatalf("mint: %s", record(r))
			}
		}
	}
}

// workload is a generated script over the example modules: valid and
// invalid calls (bad input, insufficient balance, unknown methods, failing
// callees) in a random but seeded mix.
func workload(seed uint64, n int) []tx {
	rng := rand.New(rand.NewPCG(seed, 0))
	pick := func() types.Address { return accounts[rng.IntN(len(accounts))] }
	names := []string{"alice", "bob", "x", "Bad Name", ""}
	var out []tx
	for i := range n {
		t := tx{from: pick(), time: t0 + int64(i)*1e9}
		switch rng.IntN(12) {
		case 0:
			t.to, t.method = counterGo, []string{"increment", "get"}[rng.IntN(2)]
		case 1:
			t.to, t.method = counterWAT, []string{"increment", "get"}[rng.IntN(2)]
		case 2, 3:
			t.to, t.method, t.input = token, "transfer", enc(pick(), uint64(rng.IntN(1200)))
		case 4:
			t.to, t.method, t.input = token, "approve", enc(pick(), uint64(rng.IntN(300)))
		case 5:
			t.to, t.method, t.input = token, "transfer_from", enc(pick(), pick(), uint64(rng.IntN(300)))
		case 6:
			t.to, t.method, t.input = token, "balance", enc(pick())
		case 7:
			t.to, t.method, t.input = registry, []string{"register", "lookup", "renew"}[rng.IntN(3)], enc(names[rng.IntN(len(names))])
		case 8:
			t.to, t.method = caller, "bump"
		case 9:
			t.to, t.method, t.input = caller, "try_call", enc([]string{"increment", "nope", "init", "get"}[rng.IntN(4)])
		case 10:
			t.to, t.method, t.input = tokenWAT, "transfer", enc(pick(), uint64(rng.IntN(1200)))
		default: // malformed input
			t.to, t.method, t.input = token, "transfer", enc(pick())
		}
		out = append(out, t)
	}
	return out
}

// TestConfigurationsAgree: every example module and a generated workload
// give identical receipts (status, reason, return, gas, events, writes) on
// the compiler and the interpreter, with fresh and with pooled instances,
// and with dirty-page and whole-snapshot restores (the marks cost no gas).
func TestConfigurationsAgree(t *testing.T) {
	script := workload(1, 60)
	var want []string
	for ci, c := range append(slices.Clone(configs), fullRestore) {
		t.Run(c.name, func(t *testing.T) {
			ch := newChain(t, c)
			setup(ch)
			statuses := map[types.Status]int{}
			for i, tc := range script {
				got := record(ch.run(tc, false, true))
				statuses[ch.run(tc, false, false).Status]++ // again, on the committed state
				if ci == 0 {
					want = append(want, got)
				} else if got != want[i] {
					t.Fatalf("tx %d %s.%s:\n %s: %s\n %s: %s", i, tc.to, tc.method, configs[0].name, want[i], c.name, got)
				}
			}
			// The workload exercises success and failure (and so pooled
			// instances discarded after failed frames).
			if statuses[types.StatusOK] == 0 || statuses[types.StatusAborted] == 0 || ch.mods.failed == 0 {
				t.Fatalf("workload too tame: %v, %d failed frames", statuses, ch.mods.failed)
			}
		})
	}
}

// TestPriorHistoryDoesNotLeak: on pooled instances, a set of probe
// transactions gives the same receipts after the instances served other
// transactions in different orders (their writes not committed) as on
// fresh instances.
func TestPriorHistoryDoesNotLeak(t *testing.T) {
	probes := workload(2, 12)
	prior := workload(3, 12)
	ref := newChain(t, configs[0])
	setup(ref)
	var want []string
	for _, p := range probes {
		want = append(want, record(ref.run(p, false, false)))
	}
	for _, c := range []config{configs[1], configs[3]} {
		ch := newChain(t, c)
		setup(ch)
		rng := rand.New(rand.NewPCG(4, 0))
		for round := range 3 {
			rng.Shuffle(len(prior), func(i, j int) { prior[i], prior[j] = prior[j], prior[i] })
			for _, p := range prior {
				ch.run(p, false, false)
			}
			for i, p := range probes {
				if got := record(ch.run(p, false, false)); got != want[i] {
					t.Fatalf("%s round %d probe %d %s:\n fresh:  %s\n pooled: %s", c.name, round, i, p.method, want[i], got)
				}
			}
		}
	}
}
