package exec

import (
	"context"
	"errors"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func TestNativeStatuses(t *testing.T) {
	T := int64(2e12)
	k := []byte("k")
	cases := []struct {
		name   string
		tx     *types.Tx
		status types.Status
		gas    uint64
		writes int // keys written besides the account record
	}{
		{"incr", mkTx(0, 1, T, call(CounterModule, "incr", k), rw(CounterModule, k)), types.StatusOK, GasTxBase + GasGet + GasSet + GasEmit, 1},
		{"undeclared write", mkTx(0, 1, T, call(CounterModule, "incr", k), rd(CounterModule, k)), types.StatusAccessViolation, GasTxBase + GasGet + GasSet, 0},
		{"undeclared read", mkTx(0, 1, T, call(CounterModule, "incr", k)), types.StatusAccessViolation, GasTxBase + GasGet, 0},
		{"other module declared", mkTx(0, 1, T, call(CounterModule, "incr", k), rw(ScanModule, k)), types.StatusAccessViolation, GasTxBase + GasGet, 0},
		{"abort discards writes", mkTx(0, 1, T, call(CounterModule, "fail", k), rw(CounterModule, k)), types.StatusAborted, GasTxBase + GasGet + GasSet, 0},
		{"out of gas charges the limit", mkTx(0, 1, T, call(CounterModule, "spin", putU64(testGas))), types.StatusOutOfGas, testGas, 0},
		{"spin within the limit", mkTx(0, 1, T, call(CounterModule, "spin", putU64(testGas-GasTxBase))), types.StatusOK, testGas, 0},
		{"iterate needs a prefix entry", mkTx(0, 1, T, call(ScanModule, "sum", []byte("a/")), rd(ScanModule, []byte("a/")), rw(ScanModule, SumKey([]byte("a/")))), types.StatusAccessViolation, GasTxBase, 0},
		{"iterate under a wider prefix", mkTx(0, 1, T, call(ScanModule, "sum", []byte("a/")), pfx(ScanModule, []byte("a"), types.Read), rw(ScanModule, SumKey([]byte("a/")))), types.StatusOK, GasTxBase + 3*GasIterItem + GasSet, 1},
		{"unknown method aborts", mkTx(0, 1, T, call(CounterModule, "nope", nil)), types.StatusAborted, GasTxBase, 0},
		{"unknown module is invalid", mkTx(0, 1, T, call(nativeAddress("nope"), "x", nil)), types.StatusInvalid, 0, -1},
		{"deploy is invalid natively", mkTx(0, 1, T, types.Payload{Kind: types.Deploy, Code: []byte{0}}), types.StatusInvalid, 0, -1},
	}
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 1})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, 1, 0)
			txs := []*types.Tx{c.tx}
			res, err := x.ExecuteBlock(context.Background(), s, mkBlock(2, 1e12, txs), txs)
			if err != nil {
				t.Fatal(err)
			}
			r := res.Receipts[0]
			if r.Status != c.status || r.GasUsed != c.gas {
				t.Fatalf("status %s gas %d (%s), want %s gas %d", r.Status, r.GasUsed, r.Error, c.status, c.gas)
			}
			if res.GasUsed != r.GasUsed {
				t.Fatalf("block gas %d != receipt gas %d", res.GasUsed, r.GasUsed)
			}
			if r.Status != types.StatusOK && (len(r.Events) != 0 || r.Return != nil || r.Error == "") {
				t.Fatalf("failed tx kept events %v / return %x, or has no error text", r.Events, r.Return)
			}
			if len(res.Writes) != c.writes+1 {
				t.Fatalf("%d writes, want %d plus the account record: %v", len(res.Writes), c.writes, res.Writes)
			}
		})
	}
}

// TestOverlaySemantics: reads see the transaction's own writes, then the
// block's earlier writes, then the parent; deletes hide keys from Iterate.
func TestOverlaySemantics(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, 3, 0)
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 3})
	a := []byte("a/")
	txs := []*types.Tx{
		mkTx(0, 1, 1e18, call(ScanModule, "put", PutArgs([]byte("a/1"), nil)), rw(ScanModule, []byte("a/1"))),           // delete a parent key
		mkTx(1, 1, 1e18, call(ScanModule, "put", PutArgs([]byte("a/9"), putU64(100))), pfx(ScanModule, a, types.Write)), // add a key
		mkTx(2, 1, 1e18, call(ScanModule, "sum", a), pfx(ScanModule, a, types.Read), rw(ScanModule, SumKey(a))),
		mkTx(2, 2, 1e18, call(ScanModule, "clear", []byte("a/x/")), pfx(ScanModule, []byte("a/x/"), types.Write)),
		mkTx(2, 3, 1e18, call(ScanModule, "sum", a), pfx(ScanModule, a, types.Read), rw(ScanModule, SumKey(a))),
	}
	res, err := x.ExecuteBlock(ctx, s, mkBlock(2, 1e12, txs), txs)
	if err != nil {
		t.Fatal(err)
	}
	// Genesis: a/1=3, a/2=3, a/x/1=5. After tx 0 and 1: a/2, a/9, a/x/1.
	if got := u64(res.Receipts[2].Return); got != 3+100+5 {
		t.Fatalf("sum = %d, want 108 (%s)", got, res.Receipts[2].Error)
	}
	if got := u64(res.Receipts[4].Return); got != 3+100 {
		t.Fatalf("sum after clear = %d, want 103 (%s)", got, res.Receipts[4].Error)
	}
	if v := valueOf(res.Writes, ScanModule, []byte("a/1")); v != nil {
		t.Fatalf("deleted key written as %x", v)
	}
	if _, err := s.Commit(ctx, 2, res.Writes); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]uint64{"a/1": 0, "a/9": 100, "a/x/1": 0, "total/a/": 103} {
		v, err := s.Get(ctx, types.StateKey{Module: ScanModule, Key: []byte(k)})
		if err != nil {
			t.Fatal(err)
		}
		if u64(v) != want {
			t.Errorf("%s = %d, want %d", k, u64(v), want)
		}
	}
}

// failingView fails every read: the executor must return a node error,
// not a receipt.
type failingView struct{}

var errDisk = errors.New("disk on fire")

func (failingView) Get(context.Context, types.StateKey) ([]byte, error) { return nil, errDisk }
func (failingView) Iterate(context.Context, types.Address, []byte, func(k, v []byte) error) error {
	return errDisk
}

func TestNodeErrors(t *testing.T) {
	ctx := context.Background()
	x := New(NewNativeRunner(NativeModules()), Options{Workers: 2})
	txs := []*types.Tx{transfer(0, 1, 1, 1, 1e18)}
	b := mkBlock(2, 1e12, txs)
	if _, err := x.ExecuteBlock(ctx, failingView{}, b, txs); !errors.Is(err, ErrState) || !errors.Is(err, errDisk) {
		t.Fatalf("failing parent: %v", err)
	}
	if _, err := x.ExecuteBlock(ctx, failingView{}, b, nil); !errors.Is(err, ErrBlockMismatch) {
		t.Fatalf("missing bodies: %v", err)
	}
	if _, err := x.ExecuteBlock(ctx, failingView{}, b, []*types.Tx{nil}); !errors.Is(err, ErrBlockMismatch) {
		t.Fatalf("nil body: %v", err)
	}
	small := New(NewNativeRunner(NativeModules()), Options{MaxTxs: 1})
	two := append(txs, txs[0])
	if _, err := small.ExecuteBlock(ctx, failingView{}, mkBlock(2, 1e12, two), two); !errors.Is(err, ErrBlockTooLarge) {
		t.Fatalf("too many txs: %v", err)
	}
	s := newStore(t, 2, 10)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := x.ExecuteBlock(cctx, s, b, txs); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// A prefix read of a failing parent inside a transaction is a node
	// error too, also when the exact keys were prefetched.
	sum := []*types.Tx{mkTx(0, 1, 1e18, call(ScanModule, "sum", nil), pfx(ScanModule, nil, types.Read), rw(ScanModule, SumKey(nil)))}
	v := &iterFailView{s}
	if _, err := x.ExecuteBlock(ctx, v, mkBlock(2, 1e12, sum), sum); !errors.Is(err, ErrState) || !errors.Is(err, errDisk) {
		t.Fatalf("failing iteration: %v", err)
	}
}

type iterFailView struct{ StateView }

func (iterFailView) Iterate(context.Context, types.Address, []byte, func(k, v []byte) error) error {
	return errDisk
}

// TestEmptyBlock: no transactions, no writes, no error.
func TestEmptyBlock(t *testing.T) {
	for _, cfg := range configs(NewNativeRunner(NativeModules())) {
		res, err := cfg.execute(context.Background(), failingView{}, mkBlock(2, 1, nil), nil)
		if err != nil || len(res.Writes)+len(res.Receipts) != 0 {
			t.Fatalf("%s: %v %+v", cfg.name, err, res)
		}
	}
}
