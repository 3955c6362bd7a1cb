package exec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// pub returns the fake public key of test account i. The executor never
// checks signatures (the node does, before a block), so any 32 bytes do.
func pub(i int) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("exec-test-key"), uint64(i)))
	return h[:]
}

func addr(i int) types.Address { return types.AddressFromPublicKey(pub(i)) }

const testGas = 10_000

// mkTx builds an unsigned transaction of sender i.
func mkTx(sender int, nonce uint64, validUntil int64, p types.Payload, access ...types.Access) *types.Tx {
	return &types.Tx{Body: types.TxBody{ChainID: "test", Sender: pub(sender), Nonce: nonce, ValidUntil: validUntil, GasLimit: testGas, Access: access, Payload: p}}
}

func call(module types.Address, method string, args []byte) types.Payload {
	return types.Payload{Kind: types.Call, Module: module, Method: method, Args: args}
}

func rw(module types.Address, k []byte) types.Access {
	return types.Access{Module: module, Key: k, Mode: types.Write}
}

func rd(module types.Address, k []byte) types.Access {
	return types.Access{Module: module, Key: k, Mode: types.Read}
}

func pfx(module types.Address, k []byte, mode types.AccessMode) types.Access {
	return types.Access{Module: module, Key: k, Prefix: true, Mode: mode}
}

func transfer(from, to int, amount uint64, nonce uint64, validUntil int64) *types.Tx {
	return mkTx(from, nonce, validUntil, call(TokenModule, "transfer", TransferArgs(addr(to), amount)),
		rw(TokenModule, BalanceKey(addr(from))), rw(TokenModule, BalanceKey(addr(to))))
}

// mkBlock wraps txs in a block at height with time t; timestamps ascend to t.
func mkBlock(height uint64, t int64, txs []*types.Tx) *types.Block {
	b := &types.Block{Height: height, Time: t}
	for i, tx := range txs {
		b.Txs = append(b.Txs, types.OrderedTx{ID: tx.ID(), TS: t - int64(len(txs)-1-i)})
	}
	return b
}

// genesisStore opens an in-memory store holding genesis at height 1.
func genesisStore(t testing.TB, genesis []state.Write) *state.Store {
	t.Helper()
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Commit(context.Background(), 1, genesis); err != nil {
		t.Fatal(err)
	}
	return s
}

// newStore opens an in-memory store with the genesis of the tests at
// height 1: balances of accounts 0..n-1 and a few Scan keys.
func newStore(t testing.TB, accounts int, balance uint64, extra ...state.Write) *state.Store {
	t.Helper()
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var ws []state.Write
	for i := range accounts {
		ws = append(ws, state.Write{Key: types.StateKey{Module: TokenModule, Key: BalanceKey(addr(i))}, Value: putU64(balance)})
	}
	for _, k := range []string{"a/1", "a/2", "a/x/1", "b/1"} {
		ws = append(ws, state.Write{Key: types.StateKey{Module: ScanModule, Key: []byte(k)}, Value: putU64(uint64(len(k)))})
	}
	if _, err := s.Commit(context.Background(), 1, append(ws, extra...)); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkHints checks that every write of ws with an old-value hint hints
// the value parent holds, and returns how many have one and how many
// replace a value parent holds (a write of an absent key has no hint).
func checkHints(ctx context.Context, parent StateView, ws []state.Write) (hinted, replacing int, err error) {
	for _, w := range ws {
		v, err := parent.Get(ctx, w.Key)
		if err != nil {
			return hinted, replacing, err
		}
		if len(v) > 0 {
			replacing++
		}
		if len(w.Old) == 0 {
			continue
		}
		hinted++
		if !bytes.Equal(v, w.Old) {
			return hinted, replacing, fmt.Errorf("write of %x/%q hints old value %x, the parent holds %x", w.Key.Module, w.Key.Key, w.Old, v)
		}
	}
	return hinted, replacing, nil
}

// encodeResult is a canonical byte form of a block result, for equality.
func encodeResult(r *BlockResult) []byte {
	var b bytes.Buffer
	b.Write(types.MustEncode(r.Receipts))
	b.Write(types.MustEncode(r.Events))
	fmt.Fprintf(&b, "gas=%d;", r.GasUsed)
	for _, w := range r.Writes {
		fmt.Fprintf(&b, "%x/%x=%x,%v;", w.Key.Module, w.Key.Key, w.Value, w.Value == nil)
	}
	return b.Bytes()
}

// gen makes random blocks over a few senders, with hot keys, prefixes,
// failures, out-of-gas, access violations, bad nonces and expired txs. It
// tracks the nonce each sender should use next, assuming the transactions
// it meant to be valid are.
type gen struct {
	rng     *rand.Rand
	senders int
	next    []uint64
	wasm    *wasmWorld // nil: native modules only
	// deployed are the instances this generator's deploys create (if
	// they succeed; a call to one that does not exist is invalid).
	deployed []types.Address
	// admin is who the generator believes administers each module, so
	// that lifecycle transactions often come from the admin.
	admin map[types.Address]int
}

func newGen(seed uint64, senders int) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), senders: senders, next: make([]uint64, senders)}
	for i := range g.next {
		g.next[i] = 1
	}
	return g
}

var scanKeys = []string{"a/1", "a/2", "a/3", "a/x/1", "a/x/2", "b/1", "b/2", "total/a/"}
var scanPrefixes = []string{"a/", "a/x/", "b/", ""}

func (g *gen) block(height uint64, t int64, n int) (*types.Block, []*types.Tx) {
	txs := make([]*types.Tx, 0, n)
	for range n {
		txs = append(txs, g.tx(t))
	}
	return mkBlock(height, t, txs), txs
}

func (g *gen) tx(t int64) *types.Tx {
	r := g.rng
	s := r.IntN(g.senders)
	nonce, valid := g.next[s], t+1e9
	consumes := true
	switch x := r.IntN(100); {
	case x < 4:
		nonce = g.next[s] - 1 // replay
		consumes = false
	case x < 7:
		nonce = g.next[s] + 1 + uint64(r.IntN(3)) // gap
		consumes = false
	case x < 10:
		valid = t - 1 // expired at block time
		consumes = false
	}
	var tx *types.Tx
	if g.wasm != nil && r.IntN(4) == 0 {
		tx = g.wasmTx(s, nonce, valid, consumes)
		if consumes {
			g.next[s]++
		}
		return tx
	}
	hot := func(k int) int {
		if r.IntN(3) == 0 {
			return 0 // a hot account
		}
		return r.IntN(k)
	}
	switch k := r.IntN(100); {
	case k < 40: // transfers, sometimes too large
		to := hot(g.senders + 4)
		amount := uint64(r.IntN(50))
		if r.IntN(10) == 0 {
			amount = 1 << 40
		}
		tx = mkTx(s, nonce, valid, call(TokenModule, "transfer", TransferArgs(addr(to), amount)),
			rw(TokenModule, BalanceKey(addr(s))), rw(TokenModule, BalanceKey(addr(to))))
		switch r.IntN(12) {
		case 0: // receiver undeclared
			tx.Body.Access = tx.Body.Access[:1]
		case 1: // receiver declared read-only
			tx.Body.Access[1].Mode = types.Read
		case 2: // receiver declared through a prefix write
			tx.Body.Access[1] = pfx(TokenModule, []byte("b"), types.Write)
		}
	case k < 60: // counters, one hot
		key := []byte{'c', byte(hot(6))}
		method := "incr"
		if r.IntN(6) == 0 {
			method = "fail"
		}
		tx = mkTx(s, nonce, valid, call(CounterModule, method, key), rw(CounterModule, key))
		if r.IntN(10) == 0 {
			tx.Body.Access[0].Mode = types.Read
		}
	case k < 65: // out of gas
		tx = mkTx(s, nonce, valid, call(CounterModule, "spin", putU64(uint64(r.IntN(2*testGas)))))
	case k < 80: // exact or prefix-declared puts
		key := []byte(scanKeys[r.IntN(len(scanKeys))])
		val := putU64(uint64(r.IntN(100)))
		if r.IntN(5) == 0 {
			val = nil // delete
		}
		acc := rw(ScanModule, key)
		if r.IntN(2) == 0 {
			acc = pfx(ScanModule, key[:1+r.IntN(len(key))], types.Write)
		}
		tx = mkTx(s, nonce, valid, call(ScanModule, "put", PutArgs(key, val)), acc)
	case k < 92: // sums over prefixes
		p := []byte(scanPrefixes[r.IntN(len(scanPrefixes))])
		tx = mkTx(s, nonce, valid, call(ScanModule, "sum", p), pfx(ScanModule, p, types.Read), rw(ScanModule, SumKey(p)))
		if r.IntN(8) == 0 { // the sum key undeclared
			tx.Body.Access = tx.Body.Access[:1]
		}
	case k < 97: // clear a prefix
		p := []byte(scanPrefixes[r.IntN(len(scanPrefixes)-1)])
		tx = mkTx(s, nonce, valid, call(ScanModule, "clear", p), pfx(ScanModule, p, types.Write))
	default: // unknown module: invalid, nonce not consumed
		tx = mkTx(s, nonce, valid, call(nativeAddress("nope"), "x", nil))
		consumes = false
	}
	if consumes {
		g.next[s]++
	}
	return tx
}

// wasmTx makes a WAT counter call, or now and then a deploy, an upgrade
// (by the admin or not, with a migrate that works or fails) or an admin
// change, in the middle of a block.
// dirtyMethods are the calls of pool_dirty the generator makes: mostly
// successful ones, whose return would show an unrestored instance.
var dirtyMethods = []string{"dirty", "dirty", "grow", "trap"}

func (g *gen) wasmTx(s int, nonce uint64, valid int64, consumes bool) *types.Tx {
	r := g.rng
	if g.admin == nil {
		g.admin = map[types.Address]int{}
		for i, c := range g.wasm.counters {
			g.admin[c] = i
		}
	}
	all := append(append([]types.Address(nil), g.wasm.counters...), g.deployed...)
	m := all[r.IntN(len(all))]
	if r.IntN(2) == 0 {
		for _, a := range all { // prefer a module s administers
			if g.admin[a] == s {
				m = a
				break
			}
		}
	}
	lifecycle := func(p types.Payload, access ...types.Access) *types.Tx {
		tx := mkTx(s, nonce, valid, p, access...)
		tx.Body.GasLimit = 100_000
		if r.IntN(10) == 0 {
			tx.Body.GasLimit = 5_000 // out of gas while storing code
		}
		return tx
	}
	switch k := r.IntN(100); {
	case k < 8:
		code := g.wasm.code[r.IntN(2)]
		admin := addr(s)
		if r.IntN(3) == 0 {
			admin = types.Address{}
		}
		tx := lifecycle(types.Payload{Kind: types.Deploy, Code: code, Admin: admin})
		if consumes && tx.Body.GasLimit > 5_000 {
			// Sure to exist: later calls may go to it.
			a := InstanceAddress(addr(s), nonce)
			g.deployed = append(g.deployed, a)
			g.admin[a] = s
		}
		return tx
	case k < 20:
		p := types.Payload{Kind: types.Upgrade, Module: m, Code: g.wasm.code[r.IntN(3)]}
		return lifecycle(p, rw(m, wasmCountKey))
	case k < 24:
		to := r.IntN(g.senders)
		if g.admin[m] == s {
			g.admin[m] = to // a belief: the tx may still fail
		}
		return lifecycle(types.Payload{Kind: types.SetAdmin, Module: m, Admin: addr(to)})
	case k < 26:
		return lifecycle(types.Payload{Kind: types.ClearAdmin, Module: m})
	case k < 38: // state a pooled instance must not carry to the next call
		return mkTx(s, nonce, valid, call(g.wasm.dirty, dirtyMethods[r.IntN(len(dirtyMethods))], nil))
	}
	tx := mkTx(s, nonce, valid, call(m, "increment", nil), rw(m, wasmCountKey))
	switch r.IntN(10) {
	case 0:
		tx.Body.Access = nil
	case 1:
		tx.Body.Access[0].Mode = types.Read
	case 2:
		tx.Body.GasLimit = 50
	case 3:
		tx.Body.Payload.Method = "get"
		tx.Body.Access[0].Mode = types.Read
	}
	return tx
}
