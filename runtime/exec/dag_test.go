package exec

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func depsOf(d *dag) [][]int {
	n := len(d.ndeps)
	deps := make([][]int, n)
	for j := range n {
		for _, i := range d.dependents(j) {
			deps[i] = append(deps[i], j)
		}
	}
	for i := range deps {
		slices.Sort(deps[i])
	}
	return deps
}

func TestDAGTable(t *testing.T) {
	m, other := CounterModule, ScanModule
	k := func(s string) []byte { return []byte(s) }
	call := call(m, "x", nil)
	tx := func(sender int, acc ...types.Access) *types.Tx { return mkTx(sender, 1, 0, call, acc...) }
	cases := []struct {
		name string
		txs  []*types.Tx
		want [][]int // direct dependencies per tx
	}{
		{"read/read no conflict", []*types.Tx{tx(0, rd(m, k("a"))), tx(1, rd(m, k("a")))}, [][]int{nil, nil}},
		{"write/write", []*types.Tx{tx(0, rw(m, k("a"))), tx(1, rw(m, k("a")))}, [][]int{nil, {0}}},
		{"read after write", []*types.Tx{tx(0, rw(m, k("a"))), tx(1, rd(m, k("a")))}, [][]int{nil, {0}}},
		{"write after reads", []*types.Tx{tx(0, rd(m, k("a"))), tx(1, rd(m, k("a"))), tx(2, rw(m, k("a")))}, [][]int{nil, nil, {0, 1}}},
		{"latest writer only", []*types.Tx{tx(0, rw(m, k("a"))), tx(1, rw(m, k("a"))), tx(2, rd(m, k("a")))}, [][]int{nil, {0}, {1}}},
		{"different keys", []*types.Tx{tx(0, rw(m, k("a"))), tx(1, rw(m, k("b")))}, [][]int{nil, nil}},
		{"same key other module", []*types.Tx{tx(0, rw(m, k("a"))), tx(1, rw(other, k("a")))}, [][]int{nil, nil}},
		{"exact under written prefix", []*types.Tx{tx(0, pfx(m, k("a/"), types.Write)), tx(1, rd(m, k("a/1")))}, [][]int{nil, {0}}},
		{"prefix read over written key", []*types.Tx{tx(0, rw(m, k("a/1"))), tx(1, pfx(m, k("a/"), types.Read))}, [][]int{nil, {0}}},
		{"prefix read, key outside", []*types.Tx{tx(0, rw(m, k("b/1"))), tx(1, pfx(m, k("a/"), types.Read))}, [][]int{nil, nil}},
		{"prefix reads do not conflict", []*types.Tx{tx(0, pfx(m, k("a/"), types.Read)), tx(1, pfx(m, k("a"), types.Read))}, [][]int{nil, nil}},
		{"nested prefixes", []*types.Tx{tx(0, pfx(m, k("a/x/"), types.Write)), tx(1, pfx(m, k("a/"), types.Read)), tx(2, pfx(m, k("a/x/y"), types.Write))}, [][]int{nil, {0}, {0, 1}}},
		{"empty prefix covers the module", []*types.Tx{tx(0, rw(m, k("z"))), tx(1, pfx(m, nil, types.Read)), tx(2, rw(other, k("z")))}, [][]int{nil, {0}, nil}},
		{"same sender: implicit nonce write", []*types.Tx{tx(0, rd(m, k("a"))), tx(0, rd(m, k("b")))}, [][]int{nil, {0}}},
		{"account record is a key like others", []*types.Tx{tx(0), tx(1, rd(AccountsModule, AccountKey(addr(0)).Key))}, [][]int{nil, {0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			senders := make([]types.Address, len(c.txs))
			for i, tx := range c.txs {
				senders[i] = tx.SenderAddress()
			}
			got := depsOf(buildDAG(c.txs, senders))
			for i := range c.want {
				if !slices.Equal(got[i], c.want[i]) {
					t.Errorf("tx %d depends on %v, want %v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// conflicts is the dumb reference: two transactions conflict when some
// entries of theirs overlap and at least one of the two writes.
func conflicts(a, b []access) bool {
	for _, x := range a {
		for _, y := range b {
			if !x.write && !y.write {
				continue
			}
			if x.k == y.k || (x.prefix && strings.HasPrefix(y.k, x.k)) || (y.prefix && strings.HasPrefix(x.k, y.k)) {
				return true
			}
		}
	}
	return false
}

// TestDAGAgainstReference checks buildDAG against all pairs on random
// blocks: every edge is a real conflict, and every conflicting earlier
// transaction is reachable (so it finished before the later one starts).
func TestDAGAgainstReference(t *testing.T) {
	w := wasmSetup(t, 2)
	independents := 0
	defer func() {
		if independents == 0 && !t.Failed() {
			t.Error("no independent block was generated")
		}
	}()
	for seed := range uint64(seeds(t, 30)) {
		g := newGen(seed, 6)
		if seed%2 == 1 {
			g.wasm = w // with lifecycle barriers
		}
		_, txs := g.block(2, 1e12, 80)
		senders := make([]types.Address, len(txs))
		es := make([][]access, len(txs))
		for i, tx := range txs {
			senders[i] = tx.SenderAddress()
			es[i] = entries(nil, new(keyBuilder), tx, senders[i])
		}
		// independent is exactly: no barrier, no prefix entry, no
		// conflicting pair; and then the DAG has no edge. Short heads of
		// the block are often independent.
		for _, n := range []int{1, 2, 3, 5, len(txs)} {
			want := true
			for i := range n {
				want = want && !isBarrier(txs[i])
				for _, e := range es[i] {
					want = want && !e.prefix
				}
				for j := range i {
					want = want && !conflicts(es[i], es[j])
				}
			}
			d := buildDAG(txs[:n], senders[:n])
			if got := newAccessTable(txs[:n], senders[:n], 1).independent; got != want || (got && len(d.out) > 0) {
				t.Fatalf("seed %d, %d txs: independent %v, want %v (%d edges)", seed, n, got, want, len(d.out))
			}
			if want {
				independents++
			}
		}
		deps := depsOf(buildDAG(txs, senders))
		// reach[i][j]: j is an ancestor of i.
		reach := make([][]bool, len(txs))
		for i := range txs {
			reach[i] = make([]bool, len(txs))
			for _, j := range deps[i] {
				if j >= i {
					t.Fatalf("seed %d: tx %d depends on later tx %d", seed, i, j)
				}
				if !conflicts(es[i], es[j]) && !isBarrier(txs[i]) && !isBarrier(txs[j]) {
					t.Fatalf("seed %d: edge %d -> %d without a conflict", seed, i, j)
				}
				reach[i][j] = true
				for a := range j {
					reach[i][a] = reach[i][a] || reach[j][a]
				}
			}
			for j := range i {
				if (conflicts(es[i], es[j]) || isBarrier(txs[i]) || isBarrier(txs[j])) && !reach[i][j] {
					t.Fatalf("seed %d: tx %d conflicts with %d but does not wait for it", seed, i, j)
				}
			}
		}
	}
}

// TestAccessTableAgainstReference checks the sort-based key numbering with
// 1 to 3 parts against a map: every exact entry's slot names its key, the
// keys are distinct and sorted, and stateKey gives each key back. Keys are
// short and drawn from bytes that include zero, so many share the first
// 8 bytes the sort compares first, or differ only by trailing zeros.
func TestAccessTableAgainstReference(t *testing.T) {
	for seed := range uint64(seeds(t, 20)) {
		rng := rand.New(rand.NewPCG(seed, 11))
		// {} and {8: 1} share the 8 bytes the sort compares first.
		modules := []types.Address{TokenModule, CounterModule, {}, {8: 1}}
		if seed%2 == 0 {
			modules[3] = types.Address{1}
		}
		size := 300 + rng.IntN(700)
		if seed%4 == 3 {
			// Enough entries for several numbering parts, whose bounds
			// fall inside the runs of one key (50 senders).
			size = 3*numberPartMin + rng.IntN(numberPartMin)
		}
		txs := make([]*types.Tx, size)
		senders := make([]types.Address, len(txs))
		for i := range txs {
			tx := &types.Tx{Body: types.TxBody{Payload: types.Payload{Kind: types.Call, Module: modules[rng.IntN(4)]}}}
			for range rng.IntN(5) {
				k := make([]byte, rng.IntN(12))
				for j := range k {
					k[j] = []byte{0, 1, 'a', 0xff}[rng.IntN(4)]
				}
				tx.Body.Access = append(tx.Body.Access, types.Access{Module: modules[rng.IntN(4)], Key: k, Prefix: rng.IntN(6) == 0, Mode: types.Write})
			}
			txs[i], senders[i] = tx, addr(rng.IntN(50))
		}
		for parts := 1; parts <= 3; parts++ {
			tab := newAccessTable(txs, senders, parts*accessPartMin)
			want := map[string]bool{}
			for i, tx := range txs {
				es := entries(nil, new(keyBuilder), tx, senders[i])
				if len(tab.all[i]) != len(es) {
					t.Fatalf("seed %d: tx %d has %d entries, want %d", seed, i, len(tab.all[i]), len(es))
				}
				for j, e := range tab.all[i] {
					if e.k != es[j].k || e.prefix != es[j].prefix || e.write != es[j].write {
						t.Fatalf("seed %d: tx %d entry %d is %+v, want %+v", seed, i, j, e, es[j])
					}
					switch {
					case e.prefix && e.slot != -1:
						t.Fatalf("seed %d: prefix with slot %d", seed, e.slot)
					case !e.prefix && tab.keys[e.slot] != e.k:
						t.Fatalf("seed %d: slot %d is %x, entry %x", seed, e.slot, tab.keys[e.slot], e.k)
					}
					if !e.prefix {
						want[e.k] = true
					}
				}
			}
			bySender := map[types.Address][]int{}
			for i, s := range senders {
				bySender[s] = append(bySender[s], i)
			}
			groups := 0
			for _, g := range tab.senderGroups {
				if !slices.Equal(g, bySender[senders[g[0]]]) {
					t.Fatalf("seed %d: sender group %v, want %v", seed, g, bySender[senders[g[0]]])
				}
				groups++
			}
			for _, g := range bySender {
				if len(g) > 1 {
					groups--
				}
			}
			if groups != 0 {
				t.Fatalf("seed %d: %d sender groups too many", seed, groups)
			}
			// The whole-key renumbering runs exactly when two modules of
			// the block share their first 8 bytes ({} and {8: 1}).
			mods := map[string]bool{}
			for k := range want {
				mods[k[:types.AddressLen]] = true
			}
			clash := false
			for k := range mods {
				for l := range mods {
					clash = clash || (k[:8] == l[:8] && k != l)
				}
			}
			if tab.renumbered != clash {
				t.Fatalf("seed %d, %d parts: renumbered %v, modules clash %v", seed, parts, tab.renumbered, clash)
			}
			if len(tab.keys) != len(want) || !slices.IsSorted(tab.keys) {
				t.Fatalf("seed %d: %d keys (sorted %v), want %d distinct", seed, len(tab.keys), slices.IsSorted(tab.keys), len(want))
			}
			// The cursor in slot order, as the prefetch reads, and one
			// started at each slot.
			var cur slotKeys
			if len(tab.keys) > 0 {
				cur = tab.slotKeys(0)
			}
			for s, k := range tab.keys {
				from := tab.slotKeys(int32(s))
				for _, sk := range []types.StateKey{cur.at(int32(s)), from.at(int32(s))} {
					if key(sk.Module, sk.Key) != k || tab.slotOf(k) != int32(s) {
						t.Fatalf("seed %d: slot %d: state key %v, slotOf %d", seed, s, sk, tab.slotOf(k))
					}
				}
			}
		}
	}
}

// TestKeyRefOrder checks the sort's comparison against the strings' for
// keys of one module.
func TestKeyRefOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rk := func() string {
		b := make([]byte, rng.IntN(12))
		for j := range b {
			b[j] = []byte{0, 1, 0xff}[rng.IntN(3)]
		}
		return string(TokenModule[:]) + string(b)
	}
	for range 20000 {
		a, b := rk(), rk()
		es := keyRefs{{k: a}, {k: b}}
		if got, want := es.cmp(newKeyRef(a, 0, 0), newKeyRef(b, 1, 1)), strings.Compare(a, b); got != want {
			t.Fatalf("%x vs %x: %d, want %d", a, b, got, want)
		}
	}
}

// TestKeyRefsMerge checks the parallel merge of two sorted runs with 1 to
// 5 parts: sorted, and every element once. Half the rounds have many
// equal keys, so the splits fall inside runs of ties; the others keys of
// two modules and up to 12 bytes from a small alphabet, so that the merge
// meets differing and equal 8-byte prefixes, and ties only the whole keys
// tell apart.
func TestKeyRefsMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	other := types.Address{TokenModule[0] + 1}
	for round := range 400 {
		es := make(keyRefs, rng.IntN(60))
		refs := make([]keyRef, len(es))
		for j := range es {
			if round%2 == 0 {
				es[j].k = string(TokenModule[:]) + string([]byte{byte(rng.IntN(4))})
			} else {
				mod, key := TokenModule, make([]byte, rng.IntN(13))
				if rng.IntN(4) == 0 {
					mod = other
				}
				for i := range key {
					key[i] = byte(rng.IntN(3))
				}
				es[j].k = string(mod[:]) + string(key)
			}
			refs[j] = newKeyRef(es[j].k, int32(j), 0)
		}
		cut := 0
		if len(refs) > 0 {
			cut = rng.IntN(len(refs) + 1)
		}
		a, b := slices.Clone(refs[:cut]), slices.Clone(refs[cut:])
		es.radix(a, make([]keyRef, len(a)))
		es.radix(b, make([]keyRef, len(b)))
		for parts := 1; parts <= 5; parts++ {
			got := es.merge(nil, make([]keyRef, len(a)+len(b)), a, b, parts)
			seen := make([]bool, len(es))
			for j, r := range got {
				if j > 0 && es.cmp(got[j-1], r) > 0 {
					t.Fatalf("%d parts: not sorted at %d", parts, j)
				}
				if seen[r.pos] {
					t.Fatalf("%d parts: entry %d twice", parts, r.pos)
				}
				seen[r.pos] = true
			}
			if len(got) != len(es) {
				t.Fatalf("%d parts: %d of %d entries", parts, len(got), len(es))
			}
		}
	}
}

// TestKeyRefsSort checks the radix sort and the introsort on shapes that
// defeat naive quicksorts (sorted, reversed, all equal, few values, organ
// pipe) and on random keys, the introsort also with the depth limit
// reached at once (heapsort).
func TestKeyRefsSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	shapes := map[string]func(i, n int) int{
		"sorted":   func(i, n int) int { return i },
		"reversed": func(i, n int) int { return n - i },
		"equal":    func(i, n int) int { return 7 },
		"few":      func(i, n int) int { return rng.IntN(3) },
		"organ":    func(i, n int) int { return min(i, n-i) },
		"random":   func(i, n int) int { return rng.IntN(1 << 20) },
	}
	// Where the shape's value goes: past the 8 bytes of lo (ties in (hi,
	// lo) that only the strings decide), inside lo (the radix sort's
	// digits), or also in the module (hi).
	layouts := map[string]func(v int) string{
		"tie": func(v int) string {
			return string(TokenModule[:]) + "prefix.." + string([]byte{byte(v >> 16), byte(v >> 8), byte(v)})
		},
		"lo": func(v int) string {
			return string(TokenModule[:]) + "\x03b" + string([]byte{byte(v >> 16), byte(v >> 8), byte(v)}) + "tail"
		},
		"hi": func(v int) string {
			m := [][]byte{TokenModule[:], CounterModule[:], AccountsModule[:]}[v%3]
			return string(m) + string([]byte{byte(v >> 16), byte(v >> 8)})
		},
	}
	for name, shape := range shapes {
		for layout, keyOf := range layouts {
			for _, n := range []int{0, 1, 2, 13, 100, 2000} {
				es := make(keyRefs, n)
				refs := make([]keyRef, n)
				for i := range es {
					es[i].k = keyOf(shape(i, n))
					refs[i] = newKeyRef(es[i].k, int32(i), 0)
				}
				for _, depth := range []int{-1, 0, 2 * bits.Len(uint(n))} {
					a := slices.Clone(refs)
					if depth < 0 {
						es.radix(a, make([]keyRef, n))
					} else {
						es.introsort(a, depth)
					}
					seen := make([]bool, n)
					for j, r := range a {
						if j > 0 && es[a[j-1].pos].k > es[r.pos].k {
							t.Fatalf("%s %s, %d keys, depth %d: not sorted at %d", name, layout, n, depth, j)
						}
						if seen[r.pos] {
							t.Fatalf("%s %s, %d keys: entry %d twice", name, layout, n, r.pos)
						}
						seen[r.pos] = true
					}
				}
			}
		}
	}
}

// TestAccessTableRepeatedRecord checks the module record entries that
// consecutive calls of one module share (one of them is sorted, the
// others take its slot): they still make the key used by several
// transactions, so a write of it by any one of them is a conflict.
func TestAccessTableRepeatedRecord(t *testing.T) {
	rec := types.Access{Module: ModulesModule, Key: recordKey(TokenModule), Mode: types.Write}
	call := func(access ...types.Access) *types.Tx {
		return &types.Tx{Body: types.TxBody{Payload: types.Payload{Kind: types.Call, Module: TokenModule}, Access: access}}
	}
	many := make([]*types.Tx, 3*accessPartMin+7)
	for i := range many {
		many[i] = call()
	}
	for _, c := range []struct {
		name        string
		txs         []*types.Tx
		independent bool
	}{
		{"first writes the record", []*types.Tx{call(rec), call()}, false},
		{"second writes the record", []*types.Tx{call(), call(rec)}, false},
		{"third writes the record", []*types.Tx{call(), call(), call(rec)}, false},
		{"both read", []*types.Tx{call(), call()}, true},
		{"many parts read", many, true},
	} {
		senders := make([]types.Address, len(c.txs))
		for i := range senders {
			senders[i] = addr(i)
		}
		for workers := 1; workers <= 3; workers++ {
			tab := newAccessTable(c.txs, senders, workers)
			if tab.independent != c.independent {
				t.Fatalf("%s, %d workers: independent %v", c.name, workers, tab.independent)
			}
			want := tab.slotOf(key(ModulesModule, recordKey(TokenModule)))
			for i, es := range tab.all {
				if es[1].slot != want || want < 0 {
					t.Fatalf("%s, %d workers: tx %d's record slot %d, want %d", c.name, workers, i, es[1].slot, want)
				}
			}
		}
	}
}

// BenchmarkKeyRefsMerge merges two sorted runs of 10 000 token balance
// keys of random accounts, as a 2-worker numbering of a 5 000-transfer
// block does, on one goroutine.
func BenchmarkKeyRefsMerge(b *testing.B) {
	const n = 20_000
	es, refs := make(keyRefs, n), make([]keyRef, n)
	for j := range es {
		h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(j)))
		es[j].k = string(TokenModule[:]) + "b" + string(h[:types.AddressLen])
		refs[j] = newKeyRef(es[j].k, int32(j), int32(j))
	}
	x, y := refs[:n/2], refs[n/2:]
	es.radix(x, make([]keyRef, len(x)))
	es.radix(y, make([]keyRef, len(y)))
	out := make([]keyRef, n)
	for b.Loop() {
		es.mergeInto(out, x, y)
	}
}

// BenchmarkKeyRefsSort sorts the exact keys of a 5 000-transfer block as
// its numbering does, on one goroutine: an account key and two token
// balance keys per transfer, of random accounts, in transaction order.
func BenchmarkKeyRefsSort(b *testing.B) {
	const n = 5_000
	es := make(keyRefs, 0, 3*n)
	for j := range n {
		from := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(j)))
		to := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(n+j)))
		es = append(es, access{k: string(AccountsModule[:]) + string(from[:types.AddressLen])},
			access{k: string(TokenModule[:]) + "b" + string(from[:types.AddressLen])},
			access{k: string(TokenModule[:]) + "b" + string(to[:types.AddressLen])})
	}
	refs := make([]keyRef, len(es))
	for j := range es {
		refs[j] = newKeyRef(es[j].k, int32(j), int32(j/3))
	}
	a, tmp := make([]keyRef, len(refs)), make([]keyRef, len(refs))
	for b.Loop() {
		copy(a, refs)
		es.radix(a, tmp)
	}
}
