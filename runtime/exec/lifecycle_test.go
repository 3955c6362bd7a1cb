package exec

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// lifecycleChain executes blocks on one store with every config and
// returns the receipts of the first config after checking that all agree.
type lifecycleChain struct {
	t      *testing.T
	w      *wasmWorld
	cs     []config
	stores []*state.Store
	h      uint64
}

func newLifecycleChain(t *testing.T) *lifecycleChain {
	w := wasmSetup(t, 1)
	c := &lifecycleChain{t: t, w: w, cs: configs(w.runner), h: 1}
	for range c.cs {
		c.stores = append(c.stores, newStore(t, 4, 100, w.genesis...))
	}
	return c
}

func (c *lifecycleChain) block(txs ...*types.Tx) []types.Receipt {
	c.t.Helper()
	c.h++
	b := mkBlock(c.h, int64(c.h)*1e12, txs)
	var want []byte
	var first *BlockResult
	for i, cfg := range c.cs {
		res, err := cfg.execute(context.Background(), c.stores[i], b, txs)
		if err != nil {
			c.t.Fatal(err)
		}
		if _, err := c.stores[i].Commit(context.Background(), c.h, res.Writes); err != nil {
			c.t.Fatal(err)
		}
		if i == 0 {
			want, first = encodeResult(res), res
		} else if !bytes.Equal(encodeResult(res), want) {
			c.t.Fatalf("height %d: %s differs from serial", c.h, cfg.name)
		}
	}
	return first.Receipts
}

func (c *lifecycleChain) get(module types.Address, k []byte) []byte {
	c.t.Helper()
	v, err := c.stores[0].Get(context.Background(), types.StateKey{Module: module, Key: k})
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

func expect(t *testing.T, rs []types.Receipt, want ...types.Status) {
	t.Helper()
	for i, r := range rs {
		if r.Status != want[i] {
			t.Errorf("tx %d: %s (%s), want %s", i, r.Status, r.Error, want[i])
		}
	}
}

func lc(sender int, nonce uint64, p types.Payload, access ...types.Access) *types.Tx {
	tx := mkTx(sender, nonce, 1e18, p, access...)
	tx.Body.GasLimit = 100_000
	return tx
}

func incr(sender int, nonce uint64, m types.Address) *types.Tx {
	return mkTx(sender, nonce, 1e18, call(m, "increment", nil), rw(m, wasmCountKey))
}

func TestDeployInTheMiddleOfABlock(t *testing.T) {
	c := newLifecycleChain(t)
	counter := c.w.code[0]
	inst := InstanceAddress(addr(1), 2)
	rs := c.block(
		incr(0, 1, inst), // before the deploy: no module yet
		incr(1, 1, c.w.counters[0]),
		lc(1, 2, types.Payload{Kind: types.Deploy, Code: counter, Admin: addr(1)}),
		incr(2, 1, inst),
		incr(3, 1, inst),
		lc(2, 2, types.Payload{Kind: types.Deploy, Code: []byte("not wasm")}),
		func() *types.Tx {
			tx := lc(3, 2, types.Payload{Kind: types.Deploy, Code: counter})
			tx.Body.GasLimit = GasDeployBase + 10
			return tx
		}(),
	)
	ok, inv := types.StatusOK, types.StatusInvalid
	expect(t, rs, inv, ok, ok, ok, ok, types.StatusAborted, types.StatusOutOfGas)
	if !bytes.Equal(rs[2].Return, inst[:]) {
		t.Errorf("deploy returned %x, want the instance address %x", rs[2].Return, inst)
	}
	if u64(rs[4].Return) != 2 {
		t.Errorf("second increment of the new instance returned %d", u64(rs[4].Return))
	}
	if !strings.Contains(rs[5].Error, ErrCodeRejected.Error()) {
		t.Errorf("bad code: %q", rs[5].Error)
	}
	if v := c.get(ModulesModule, recordKey(InstanceAddress(addr(2), 2))); v != nil {
		t.Errorf("rejected deploy left a record")
	}
	if n := nonceOf(t, c.stores[0], 2); n != 2 {
		t.Errorf("rejected deploy did not consume its nonce: %d", n)
	}
}

func TestUpgradeAndAdmin(t *testing.T) {
	c := newLifecycleChain(t)
	m := c.w.counters[0] // admin: account 0 (wasmSetup)
	okCode, failCode := c.w.code[1], c.w.code[2]
	up := func(sender int, nonce uint64, code []byte) *types.Tx {
		return lc(sender, nonce, types.Payload{Kind: types.Upgrade, Module: m, Code: code}, rw(m, wasmCountKey))
	}
	ok, ab := types.StatusOK, types.StatusAborted
	oldRecord := c.get(ModulesModule, recordKey(m))

	// Not the admin; the admin with a failing migrate: nothing changes.
	expect(t, c.block(incr(1, 1, m), up(1, 2, okCode), up(0, 1, failCode), incr(2, 1, m)), ok, ab, ab, ok)
	if !bytes.Equal(c.get(ModulesModule, recordKey(m)), oldRecord) || u64(c.get(m, wasmCountKey)) != 2 {
		t.Fatalf("failed upgrades changed the module: count %d", u64(c.get(m, wasmCountKey)))
	}
	// The admin upgrades: migrate sets 100, the next call counts on from it
	// in the same block.
	rs := c.block(up(0, 2, okCode), incr(1, 3, m))
	expect(t, rs, ok, ok)
	if u64(rs[1].Return) != 101 {
		t.Fatalf("after migrate: %d, want 101", u64(rs[1].Return))
	}
	// Hand the admin role to account 1; 0 may no longer upgrade, 1 may.
	set := lc(0, 3, types.Payload{Kind: types.SetAdmin, Module: m, Admin: addr(1)})
	expect(t, c.block(set, up(0, 4, c.w.code[0]), up(1, 4, c.w.code[0])), ok, ab, ok)
	// Clear: immutable forever, for everyone.
	clear := lc(1, 5, types.Payload{Kind: types.ClearAdmin, Module: m})
	rs = c.block(clear, up(1, 6, okCode), lc(1, 7, types.Payload{Kind: types.SetAdmin, Module: m, Admin: addr(1)}))
	expect(t, rs, ok, ab, ab)
	if !strings.Contains(rs[1].Error, ErrImmutable.Error()) {
		t.Errorf("upgrade after clear: %q", rs[1].Error)
	}
	// Lifecycle of a module that does not exist is invalid.
	rs = c.block(lc(2, 2, types.Payload{Kind: types.Upgrade, Module: nativeAddress("none"), Code: okCode}))
	expect(t, rs, types.StatusInvalid)
}

func TestBarriersInTheDAG(t *testing.T) {
	m := CounterModule
	txs := []*types.Tx{
		mkTx(0, 1, 0, call(m, "incr", []byte("a")), rw(m, []byte("a"))),
		mkTx(1, 1, 0, call(m, "incr", []byte("b")), rw(m, []byte("b"))),
		mkTx(2, 1, 0, types.Payload{Kind: types.ClearAdmin, Module: m}),
		mkTx(3, 1, 0, call(m, "incr", []byte("c")), rw(m, []byte("c"))),
		mkTx(4, 1, 0, call(m, "incr", []byte("d")), rw(m, []byte("d"))),
	}
	got := depsOf(buildDAG(txs, sendersOf(txs)))
	want := [][]int{nil, nil, {0, 1}, {2}, {2}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("tx %d depends on %v, want %v", i, got[i], want[i])
		}
	}
}

// TestCodeChunks: code over one state value is split and read back whole;
// a code over CodeChunksMax chunks is refused.
func TestCodeChunks(t *testing.T) {
	s := newStore(t, 0, 0)
	o := &overlay{ctx: context.Background(), layer: &serialLayer{}, parent: s}
	cid := []byte("cid")
	for _, n := range []int{1, types.StateValueMax, types.StateValueMax + 1, 5*types.StateValueMax/2 + 3} {
		code := make([]byte, n)
		for i := range code {
			code[i] = byte(i * 7)
		}
		ws, err := codeWrites(instrumented, cid, code)
		if err != nil {
			t.Fatal(err)
		}
		if want := (n + types.StateValueMax - 1) / types.StateValueMax; len(ws) != want {
			t.Fatalf("%d bytes: %d chunks, want %d", n, len(ws), want)
		}
		o.writes = nil
		for _, w := range ws {
			if err := o.Set(w.Key.Module, w.Key.Key, w.Value); err != nil {
				t.Fatal(err)
			}
		}
		got, err := loadCode(o, instrumented, cid)
		if err != nil || !bytes.Equal(got, code) {
			t.Fatalf("%d bytes: read back %d bytes, %v", n, len(got), err)
		}
		if _, err := loadCode(o, original, cid); !errors.Is(err, ErrState) {
			t.Fatalf("missing code: %v", err)
		}
	}
	if _, err := codeWrites(original, cid, make([]byte, CodeChunksMax*types.StateValueMax+1)); !errors.Is(err, ErrCodeTooLarge) {
		t.Fatalf("huge code: %v", err)
	}
}

// TestRecordMeterSelectsCode: a module runs the instrumented bytes of the
// instrumenter version its record names, stored beside other versions of
// the same CID. Two instances share the counter's CID; the second's record
// names another version, whose stored bytes are pool_dirty's. Through one
// pooled engine (which caches compiled code by code id) each must run its
// own bytes: keyed by the CID alone, one of them would run the other's
// code and miss its method.
func TestRecordMeterSelectsCode(t *testing.T) {
	counter, other := nativeAddress("meter-counter"), nativeAddress("meter-other")
	genesis, err := GenesisModule(counter, readWasm(t, "../../contracts/counter_wat/counter.wasm"), types.Address{})
	if err != nil {
		t.Fatal(err)
	}
	var rec ModuleRecord
	if err := types.Decode(genesis[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Meter != uint16(meter.Version) {
		t.Fatalf("genesis record meter %d, want %d", rec.Meter, meter.Version)
	}
	dirty, err := deploy.Prepare(readWasm(t, "testdata/pool_dirty.wasm"), DeployConfig())
	if err != nil {
		t.Fatal(err)
	}
	rec.Meter++
	ws, err := codeWrites(instrumented, instrumentedID(rec.Code, rec.Meter), dirty.Instrumented)
	if err != nil {
		t.Fatal(err)
	}
	genesis = append(genesis, ws...)
	genesis = append(genesis, state.Write{Key: types.StateKey{Module: ModulesModule, Key: recordKey(other)}, Value: types.MustEncode(&rec)})
	x := New(NewRunner(nil, newPooledEngine(t, DefaultPoolConfig())), Options{Workers: 2})
	var txs []*types.Tx
	for i := range 3 {
		txs = append(txs,
			mkTx(0, uint64(i+1), 1e18, call(counter, "increment", nil), rw(counter, wasmCountKey)),
			mkTx(1, uint64(i+1), 1e18, call(other, "dirty", nil)))
	}
	res, err := x.ExecuteBlock(context.Background(), newStore(t, 2, 0, genesis...), mkBlock(2, 1e12, txs), txs)
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range res.Receipts {
		if rc.Status != types.StatusOK {
			t.Fatalf("tx %d (%s): %s %s", i, txs[i].Body.Payload.Method, rc.Status, rc.Error)
		}
	}
}
