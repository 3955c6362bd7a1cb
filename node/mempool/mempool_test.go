package mempool

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/kairos-network/kairos/types"
)

const (
	chain = "test"
	now   = int64(1_700_000_000e9)
)

func senderKey(i int) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(fmt.Sprintf("mempool-test-%d", i)))
	return ed25519.NewKeyFromSeed(s[:])
}

// signed returns the canonical bytes of a call from sender with nonce.
func signed(sender int, nonce uint64, mod func(*types.TxBody)) []byte {
	b := types.TxBody{ChainID: chain, Nonce: nonce, ValidUntil: now + 60e9, GasLimit: 1000,
		Payload: types.Payload{Kind: types.Call, Module: types.Address{1}, Method: "incr", Args: []byte("k")}}
	if mod != nil {
		mod(&b)
	}
	return types.MustEncode(types.SignTx(b, senderKey(sender)))
}

func openPool(t *testing.T, dir string, cfg Config, at int64) (*Mempool, func()) {
	t.Helper()
	d, err := pebbleds.NewDatastore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ChainID = chain
	m, err := Open(context.Background(), d, cfg, at)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return m, func() { d.Close() }
}

func TestAddRejects(t *testing.T) {
	good := signed(1, 1, nil)
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-1] ^= 1
	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, types.ErrTxMalformed},
		{"garbage", []byte{0xff, 0x00}, types.ErrTxMalformed},
		{"trailing bytes", append(append([]byte(nil), good...), 0), types.ErrTxMalformed},
		{"bad signature", badSig, types.ErrTxSignature},
		{"wrong chain", signed(1, 1, func(b *types.TxBody) { b.ChainID = "other" }), types.ErrTxChain},
		{"expired", signed(1, 1, func(b *types.TxBody) { b.ValidUntil = now - 1 }), types.ErrTxExpired},
		{"far future", signed(1, 1, func(b *types.TxBody) { b.ValidUntil = now + 2*types.DefaultTxLimits.MaxValidity }), types.ErrTxFarFuture},
		{"zero gas", signed(1, 1, func(b *types.TxBody) { b.GasLimit = 0 }), types.ErrTxGas},
		{"oversize", make([]byte, types.DefaultTxLimits.MaxCodeTxBytes+1), types.ErrTxTooLarge},
	}
	m, done := openPool(t, t.TempDir(), Config{}, now)
	defer done()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := m.Add(context.Background(), c.raw, now); !errors.Is(err, c.want) {
				t.Fatalf("Add: %v, want %v", err, c.want)
			}
		})
	}
	if n, b := m.Len(); n != 0 || b != 0 {
		t.Fatalf("rejected transactions left %d entries, %d bytes", n, b)
	}
}

func TestDedupeKeepsFirstSeen(t *testing.T) {
	m, done := openPool(t, t.TempDir(), Config{}, now)
	defer done()
	ctx := context.Background()
	raw := signed(1, 1, nil)
	e1, isNew, err := m.Add(ctx, raw, now)
	if err != nil || !isNew {
		t.Fatalf("first Add: new=%v err=%v", isNew, err)
	}
	e2, isNew, err := m.Add(ctx, raw, now+5)
	if err != nil || isNew || e2.FirstSeen != now || e2.ID != e1.ID {
		t.Fatalf("second Add: new=%v err=%v first seen %d (want %d)", isNew, err, e2.FirstSeen, now)
	}
	var tx types.Tx
	if err := types.Decode(raw, &tx); err != nil {
		t.Fatal(err)
	}
	if got, ok := m.Get(tx.ID()); !ok || got.FirstSeen != now {
		t.Fatalf("Get by the transaction's own id: ok=%v", ok)
	}
	if n, b := m.Len(); n != 1 || b != len(raw) {
		t.Fatalf("Len = %d, %d; want 1, %d", n, b, len(raw))
	}
}

func TestLimits(t *testing.T) {
	raw := signed(1, 1, nil)
	cases := []struct {
		name string
		cfg  Config
		adds [][2]int // (sender, nonce)
		want error    // of the last add
	}{
		{"count", Config{MaxCount: 2}, [][2]int{{1, 1}, {2, 1}, {3, 1}}, ErrFull},
		{"bytes", Config{MaxBytes: 2*len(raw) + len(raw)/2}, [][2]int{{1, 1}, {2, 1}, {3, 1}}, ErrBytesFull},
		{"per sender", Config{MaxPerSender: 2}, [][2]int{{1, 1}, {1, 2}, {1, 3}}, ErrSenderFull},
		{"per sender, other sender fits", Config{MaxPerSender: 2}, [][2]int{{1, 1}, {1, 2}, {2, 1}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, done := openPool(t, t.TempDir(), c.cfg, now)
			defer done()
			var err error
			for i, a := range c.adds {
				_, _, err = m.Add(context.Background(), signed(a[0], uint64(a[1]), nil), now)
				if i < len(c.adds)-1 && err != nil {
					t.Fatalf("add %d: %v", i, err)
				}
			}
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("last add: %v, want %v", err, c.want)
			}
			if n, _ := m.Len(); c.want != nil && n != len(c.adds)-1 {
				t.Fatalf("refused add changed the pool: %d entries", n)
			}
		})
	}
}

// TestRestartRemoveExpire checks persistence against a map model: what Open
// reloads is exactly what was added and not removed or expired.
func TestRestartRemoveExpire(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, done := openPool(t, dir, Config{ExpiryGrace: 1e9}, now)
	model := map[types.Hash]int64{}
	var ids []types.Hash
	for i := 0; i < 6; i++ {
		valid := now + 60e9
		if i%3 == 0 {
			valid = now + 1e9 // expires early
		}
		e, _, err := m.Add(ctx, signed(10+i, 1, func(b *types.TxBody) { b.ValidUntil = valid }), now+int64(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
		model[e.ID] = e.FirstSeen
	}
	if err := m.Remove(ctx, ids[1:2]); err != nil {
		t.Fatal(err)
	}
	delete(model, ids[1])
	done()

	later := now + 3e9 // past ValidUntil + grace of the early ones
	m, done = openPool(t, dir, Config{ExpiryGrace: 1e9}, later)
	defer done()
	for _, id := range []types.Hash{ids[0], ids[3]} {
		delete(model, id)
	}
	got := m.Entries()
	if len(got) != len(model) {
		t.Fatalf("reloaded %d entries, model has %d", len(got), len(model))
	}
	for i, e := range got {
		if fs, ok := model[e.ID]; !ok || fs != e.FirstSeen {
			t.Fatalf("reloaded %s first seen %d; model %d (present %v)", e.ID, e.FirstSeen, fs, ok)
		}
		if i > 0 && got[i-1].FirstSeen > e.FirstSeen {
			t.Fatal("Entries not sorted by first seen")
		}
	}
	// Expire on a live pool drops the rest once they are past the grace.
	n, err := m.Expire(ctx, now+62e9)
	if err != nil || n != len(model) {
		t.Fatalf("Expire = %d, %v; want %d", n, err, len(model))
	}
	if c, b := m.Len(); c != 0 || b != 0 {
		t.Fatalf("after Expire: %d entries, %d bytes", c, b)
	}
}

// TestModel applies random adds, re-adds, removes, expiries and restarts to
// a pool and to a map model of (id → first seen, sender) with the same
// limits; they must agree on every outcome.
func TestModel(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{MaxCount: 8, MaxPerSender: 3, ExpiryGrace: 1e9}
	m, done := openPool(t, dir, cfg, now)
	defer func() { done() }()
	type entry struct {
		seen, valid int64
		sender      int
	}
	model := map[types.Hash]entry{}
	expire := func(at int64) {
		for id, e := range model {
			if e.valid < at-cfg.ExpiryGrace {
				delete(model, id)
			}
		}
	}
	perSender := func(s int) int {
		c := 0
		for _, e := range model {
			if e.sender == s {
				c++
			}
		}
		return c
	}
	r := rand.New(rand.NewPCG(1, 2))
	clock := now
	var known []types.Hash
	for step := 0; step < 400; step++ {
		clock += int64(r.IntN(50)) * 1e6
		switch op := r.IntN(10); {
		case op < 6: // add a transaction of a few senders, nonces, lifetimes
			sender, nonce := r.IntN(4), uint64(1+r.IntN(4))
			valid := now + int64(1+r.IntN(20))*1e9
			raw := signed(sender, nonce, func(b *types.TxBody) { b.ValidUntil = valid })
			var tx types.Tx
			if err := types.Decode(raw, &tx); err != nil {
				t.Fatal(err)
			}
			id := tx.ID()
			e, isNew, err := m.Add(ctx, raw, clock)
			old, held := model[id]
			switch {
			case valid < clock:
				if !errors.Is(err, types.ErrTxExpired) {
					t.Fatalf("step %d: expired add: %v", step, err)
				}
			case held:
				if err != nil || isNew || e.FirstSeen != old.seen {
					t.Fatalf("step %d: re-add: new=%v err=%v", step, isNew, err)
				}
			case len(model) >= cfg.MaxCount:
				if !errors.Is(err, ErrFull) {
					t.Fatalf("step %d: add to a full pool: %v", step, err)
				}
			case perSender(sender) >= cfg.MaxPerSender:
				if !errors.Is(err, ErrSenderFull) {
					t.Fatalf("step %d: add over the sender limit: %v", step, err)
				}
			default:
				if err != nil || !isNew {
					t.Fatalf("step %d: add: new=%v err=%v", step, isNew, err)
				}
				model[id] = entry{clock, valid, sender}
				known = append(known, id)
			}
		case op < 8 && len(known) > 0: // remove a known id (maybe already gone)
			id := known[r.IntN(len(known))]
			if err := m.Remove(ctx, []types.Hash{id}); err != nil {
				t.Fatal(err)
			}
			delete(model, id)
		case op == 8:
			if _, err := m.Expire(ctx, clock); err != nil {
				t.Fatal(err)
			}
			expire(clock)
		default: // restart
			done()
			m, done = openPool(t, dir, cfg, clock)
			expire(clock)
		}
		if n, _ := m.Len(); n != len(model) {
			t.Fatalf("step %d: pool holds %d, model %d", step, n, len(model))
		}
		for id, e := range model {
			got, ok := m.Get(id)
			if !ok || got.FirstSeen != e.seen {
				t.Fatalf("step %d: %s: held=%v", step, id, ok)
			}
		}
	}
}

// TestConcurrentAdds: goroutines adding overlapping transactions at once
// (run with -race) create each entry exactly once.
func TestConcurrentAdds(t *testing.T) {
	m, done := openPool(t, t.TempDir(), Config{}, now)
	defer done()
	const txs, workers = 20, 8
	raws := make([][]byte, txs)
	for i := range raws {
		raws[i] = signed(100+i, 1, nil)
	}
	var mu sync.Mutex
	created := map[types.Hash]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range raws {
				e, isNew, err := m.Add(context.Background(), raws[(i+w)%txs], now)
				if err != nil {
					t.Error(err)
					return
				}
				if isNew {
					mu.Lock()
					created[e.ID]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(created) != txs {
		t.Fatalf("%d entries created, want %d", len(created), txs)
	}
	for id, c := range created {
		if c != 1 {
			t.Fatalf("%s created %d times", id, c)
		}
	}
	if n, _ := m.Len(); n != txs {
		t.Fatalf("Len = %d, want %d", n, txs)
	}
}

// TestGroupCommitDurable: entries added concurrently (sharing batches) are
// all reloaded by a reopened pool.
func TestGroupCommitDurable(t *testing.T) {
	dir := t.TempDir()
	m, done := openPool(t, dir, Config{}, now)
	const txs = 64
	var wg sync.WaitGroup
	for i := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := m.Add(context.Background(), signed(200+i, 1, nil), now); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	done()
	m, done = openPool(t, dir, Config{}, now)
	defer done()
	if n, _ := m.Len(); n != txs {
		t.Fatalf("reopened pool holds %d entries, want %d", n, txs)
	}
}

// failingBatches is a datastore whose batch commits fail.
type failingBatches struct{ ds.Batching }

var errDisk = errors.New("disk failed")

func (f failingBatches) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := f.Batching.Batch(ctx)
	return failingBatch{b}, err
}

type failingBatch struct{ ds.Batch }

func (failingBatch) Commit(context.Context) error { return errDisk }

// TestGroupCommitFailure: when the shared batch fails, every Add in it
// fails with the cause and leaves no entry and no reserved bytes.
func TestGroupCommitFailure(t *testing.T) {
	m, err := Open(context.Background(), failingBatches{dssync.MutexWrap(ds.NewMapDatastore())}, Config{ChainID: chain}, now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := m.Add(context.Background(), signed(300+i, 1, nil), now); !errors.Is(err, errDisk) {
				t.Errorf("Add = %v, want %v", err, errDisk)
			}
		}()
	}
	wg.Wait()
	if n, b := m.Len(); n != 0 || b != 0 {
		t.Fatalf("after failed adds: %d entries, %d bytes", n, b)
	}
}

// TestAddAll: each outcome is the one Add gives for that payload, in
// input order.
func TestAddAll(t *testing.T) {
	m, done := openPool(t, t.TempDir(), Config{}, now)
	defer done()
	held := signed(400, 1, nil)
	if _, _, err := m.Add(context.Background(), held, now); err != nil {
		t.Fatal(err)
	}
	fresh := signed(401, 1, nil)
	bad := signed(402, 1, func(b *types.TxBody) { b.ChainID = "other" })
	out := m.AddAll(context.Background(), [][]byte{fresh, held, bad, fresh}, now)
	if len(out) != 4 {
		t.Fatalf("%d outcomes for 4 payloads", len(out))
	}
	if out[0].Err != nil || out[1].Err != nil || out[3].Err != nil {
		t.Fatalf("valid payloads failed: %v, %v, %v", out[0].Err, out[1].Err, out[3].Err)
	}
	if out[1].New || out[0].New == out[3].New {
		t.Fatalf("New = %v %v %v: want exactly one of the two copies of fresh new, held not new", out[0].New, out[1].New, out[3].New)
	}
	if !errors.Is(out[2].Err, types.ErrTxChain) {
		t.Fatalf("wrong chain: %v", out[2].Err)
	}
	if n, _ := m.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	// held was decoded once, by Add; the second copy of fresh was decoded
	// too, since it was not held yet when the batch was decoded.
	if st, want := m.Stats(), (Stats{Decoded: 4, Known: 1, Added: 2}); st != want {
		t.Fatalf("Stats %+v, want %+v", st, want)
	}
	// A held payload past its validity window is decoded and refused as
	// before, not taken as held.
	if _, _, err := m.Add(context.Background(), held, now+60e9+1); !errors.Is(err, types.ErrTxExpired) {
		t.Fatalf("expired held payload: %v", err)
	}
	if st := m.Stats(); st.Known != 1 || st.Decoded != 5 {
		t.Fatalf("after the expired payload: %+v", st)
	}
}

// TestAddAllBadSignatures: a batch whose signatures are checked together
// refuses exactly the transactions with a wrong signature and holds the
// others, as Add does one by one.
func TestAddAllBadSignatures(t *testing.T) {
	m, done := openPool(t, t.TempDir(), Config{}, now)
	defer done()
	var raws [][]byte
	bad := map[int]bool{3: true, 10: true, 11: true}
	for i := range 16 {
		raw := signed(500+i, 1, nil)
		if bad[i] {
			var tx types.Tx
			if err := types.Decode(raw, &tx); err != nil {
				t.Fatal(err)
			}
			tx.Sig[7] ^= 1
			raw = types.MustEncode(&tx)
		}
		raws = append(raws, raw)
	}
	for i, a := range m.AddAll(context.Background(), raws, now) {
		if bad[i] != errors.Is(a.Err, types.ErrTxSignature) || (!bad[i] && (a.Err != nil || !a.New)) {
			t.Fatalf("tx %d (bad %v): new %v, err %v", i, bad[i], a.New, a.Err)
		}
		if _, _, err := m.Add(context.Background(), raws[i], now); bad[i] != errors.Is(err, types.ErrTxSignature) {
			t.Fatalf("tx %d: Add disagrees with AddAll: %v", i, err)
		}
	}
	if n, _ := m.Len(); n != 16-len(bad) {
		t.Fatalf("Len = %d, want %d", n, 16-len(bad))
	}
}

// TestAddAllMatchesAdds: AddAll gives every payload of a random batch
// (duplicates, payloads held already, bad signatures, wrong chains, more
// than the limits allow) the outcome that Adds one after another give on a
// second pool, and both pools end up holding the same ids.
func TestAddAllMatchesAdds(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 2))
	cfg := Config{ChainID: chain, MaxCount: 40, MaxPerSender: 3}
	for round := range 20 {
		batch, seq := openMap(t, cfg), openMap(t, cfg)
		var pre, raws [][]byte
		for range rng.IntN(10) {
			pre = append(pre, signed(600+rng.IntN(8), uint64(1+rng.IntN(4)), nil))
		}
		for range 1 + rng.IntN(60) {
			switch rng.IntN(8) {
			case 0:
				raws = append(raws, signed(600+rng.IntN(8), 1, func(b *types.TxBody) { b.ChainID = "other" }))
			case 1:
				raw := signed(600+rng.IntN(8), uint64(1+rng.IntN(4)), nil)
				var tx types.Tx
				if err := types.Decode(raw, &tx); err != nil {
					t.Fatal(err)
				}
				tx.Sig[rng.IntN(len(tx.Sig))] ^= 1
				raws = append(raws, types.MustEncode(&tx))
			case 2:
				if len(raws) > 0 {
					raws = append(raws, raws[rng.IntN(len(raws))])
					continue
				}
				fallthrough
			default:
				raws = append(raws, signed(600+rng.IntN(20), uint64(1+rng.IntN(4)), nil))
			}
		}
		for _, raw := range pre {
			_, _, err1 := batch.Add(context.Background(), raw, now)
			_, _, err2 := seq.Add(context.Background(), raw, now)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
		}
		for i, a := range batch.AddAll(context.Background(), raws, now) {
			_, isNew, err := seq.Add(context.Background(), raws[i], now)
			if a.New != isNew || (a.Err == nil) != (err == nil) || (err != nil && a.Err.Error() != err.Error()) {
				t.Fatalf("round %d, payload %d: AddAll new %v err %v, Add new %v err %v", round, i, a.New, a.Err, isNew, err)
			}
			if a.Err == nil && a.Entry == nil {
				t.Fatalf("round %d, payload %d: no entry without an error", round, i)
			}
		}
		ids := func(m *Mempool) (out []types.Hash) {
			for _, e := range m.Entries() {
				out = append(out, e.ID)
			}
			return out
		}
		if a, b := ids(batch), ids(seq); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("round %d: AddAll holds %d ids, Adds %d", round, len(a), len(b))
		}
		if _, b1 := batch.Len(); true {
			if _, b2 := seq.Len(); b1 != b2 {
				t.Fatalf("round %d: counted bytes %d and %d", round, b1, b2)
			}
		}
	}
}

func openMap(t *testing.T, cfg Config) *Mempool {
	t.Helper()
	m, err := Open(context.Background(), dssync.MutexWrap(ds.NewMapDatastore()), cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAddAllFailedCommit: when the batch write fails, every new payload
// of AddAll fails with the cause and leaves nothing held or counted.
func TestAddAllFailedCommit(t *testing.T) {
	m, err := Open(context.Background(), failingBatches{dssync.MutexWrap(ds.NewMapDatastore())}, Config{ChainID: chain}, now)
	if err != nil {
		t.Fatal(err)
	}
	raws := [][]byte{signed(700, 1, nil), signed(701, 1, nil), signed(700, 1, nil)}
	for i, a := range m.AddAll(context.Background(), raws, now) {
		if !errors.Is(a.Err, errDisk) || a.New || a.Entry != nil {
			t.Fatalf("payload %d: new %v entry %v err %v, want %v", i, a.New, a.Entry != nil, a.Err, errDisk)
		}
	}
	if n, b := m.Len(); n != 0 || b != 0 {
		t.Fatalf("after a failed AddAll: %d entries, %d bytes", n, b)
	}
}

// TestAddAllConcurrent: AddAll and Add racing on the same payloads hold
// each once, and exactly one caller reports it new.
func TestAddAllConcurrent(t *testing.T) {
	m := openMap(t, Config{ChainID: chain})
	var raws [][]byte
	for i := range 32 {
		raws = append(raws, signed(800+i, 1, nil))
	}
	news := make([][]bool, 4)
	var wg sync.WaitGroup
	for g := range news {
		news[g] = make([]bool, len(raws))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g%2 == 0 {
				for i, a := range m.AddAll(context.Background(), raws, now) {
					if a.Err != nil {
						t.Error(a.Err)
					}
					news[g][i] = a.New
				}
				return
			}
			for i := len(raws) - 1; i >= 0; i-- {
				_, isNew, err := m.Add(context.Background(), raws[i], now)
				if err != nil {
					t.Error(err)
				}
				news[g][i] = isNew
			}
		}()
	}
	wg.Wait()
	for i := range raws {
		n := 0
		for g := range news {
			if news[g][i] {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("payload %d reported new %d times", i, n)
		}
	}
	if n, _ := m.Len(); n != len(raws) {
		t.Fatalf("Len = %d, want %d", n, len(raws))
	}
}

// BenchmarkAddAll adds gossip-sized batches of fresh transactions to an
// in-memory pool: the cost of AddAll's bookkeeping and signature batch.
// The senders repeat from one iteration to the next, as a chain's do.
// cpu-µs/tx is the process's CPU time (getrusage) per transaction, which a
// loaded machine distorts less than the wall time.
func BenchmarkAddAll(b *testing.B) {
	const batch = 64
	var raws [][][]byte
	for i := range 16 {
		var r [][]byte
		for j := range batch {
			r = append(r, signed(1000+i*batch+j, 1, nil))
		}
		raws = append(raws, r)
	}
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		m, err := Open(context.Background(), dssync.MutexWrap(ds.NewMapDatastore()), Config{ChainID: chain}, now)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := processCPU(b)
		for _, r := range raws {
			m.AddAll(context.Background(), r, now)
		}
		cpu += processCPU(b) - cpu0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*len(raws)*batch), "cpu-µs/tx")
}

// processCPU returns the process's user and system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingBatches counts the batches committed on a datastore.
type countingBatches struct {
	ds.Batching
	commits *atomic.Int32
}

func (c countingBatches) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := c.Batching.Batch(ctx)
	return countingBatch{b, c.commits}, err
}

type countingBatch struct {
	ds.Batch
	commits *atomic.Int32
}

func (c countingBatch) Commit(ctx context.Context) error {
	c.commits.Add(1)
	return c.Batch.Commit(ctx)
}

// TestAddAllOneCommit: the new entries of one AddAll share one batch.
func TestAddAllOneCommit(t *testing.T) {
	var commits atomic.Int32
	m, err := Open(context.Background(), countingBatches{dssync.MutexWrap(ds.NewMapDatastore()), &commits}, Config{ChainID: chain}, now)
	if err != nil {
		t.Fatal(err)
	}
	var raws [][]byte
	for i := range 32 {
		raws = append(raws, signed(900+i, 1, nil))
	}
	for i, a := range m.AddAll(context.Background(), raws, now) {
		if a.Err != nil || !a.New {
			t.Fatalf("payload %d: new %v err %v", i, a.New, a.Err)
		}
	}
	if n := commits.Load(); n != 1 {
		t.Fatalf("%d batches committed for one AddAll, want 1", n)
	}
}

// TestKeyIsClean: key skips NewKey's cleaning, so it must build the key
// NewKey would (Open compares them).
func TestKeyIsClean(t *testing.T) {
	id := types.Hash{1, 2, 3}
	if got, want := key(id), ds.NewKey(Prefix+id.String()); got != want {
		t.Fatalf("key = %s, NewKey gives %s", got, want)
	}
}

// TestRemoveWith: the record deletes go into the caller's batch, the
// entries stay held until drop, and afterwards the pool is what Remove
// leaves (a twin pool is the reference), also for an entry added between
// RemoveWith and drop (its record is deleted by drop).
func TestRemoveWith(t *testing.T) {
	ctx := context.Background()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	m, err := Open(ctx, d, Config{ChainID: chain}, now)
	if err != nil {
		t.Fatal(err)
	}
	twin := openMap(t, Config{ChainID: chain})
	var ids []types.Hash
	for i := range 4 {
		raw := signed(i, 1, nil)
		for _, p := range []*Mempool{m, twin} {
			e, _, err := p.Add(ctx, raw, now)
			if err != nil {
				t.Fatal(err)
			}
			if p == m {
				ids = append(ids, e.ID)
			}
		}
	}
	lateRaw := signed(7, 1, nil)
	probe, _, err := openMap(t, Config{ChainID: chain}).Add(ctx, lateRaw, now)
	if err != nil {
		t.Fatal(err)
	}
	late := probe.ID
	gone := []types.Hash{ids[0], late, ids[2], {9}} // one id never held, one held only after RemoveWith
	b, err := d.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := m.RemoveWith(ctx, b, gone)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Mempool{m, twin} {
		if _, _, err := p.Add(ctx, lateRaw, now); err != nil {
			t.Fatal(err)
		}
	}
	if has, _ := d.Has(ctx, key(ids[0])); !has {
		t.Fatal("a record was deleted before the caller's commit")
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if has, _ := d.Has(ctx, key(id)); has == (i == 0 || i == 2) {
			t.Fatalf("record %d on disk after the commit: %v", i, has)
		}
	}
	if _, ok := m.Get(ids[0]); !ok {
		t.Fatal("an entry left memory before drop")
	}
	drop()
	if has, _ := d.Has(ctx, key(late)); has {
		t.Fatal("the record of an entry added after RemoveWith survives drop")
	}
	if err := twin.Remove(ctx, gone); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		_, held := m.Get(id)
		_, want := twin.Get(id)
		if held != want {
			t.Fatalf("entry %d held %v after drop, Remove leaves %v", i, held, want)
		}
	}
	if n, bytes := m.Len(); n != 2 {
		t.Fatalf("%d held after drop, want 2", n)
	} else if tn, tbytes := twin.Len(); tn != n || tbytes != bytes {
		t.Fatalf("after drop %d held, %d bytes; Remove leaves %d, %d", n, bytes, tn, tbytes)
	}
}

// TestEncodeRecord: the direct encoding of a record is the canonical one
// (the reference is types.MustEncode), at every head length of both fields.
func TestEncodeRecord(t *testing.T) {
	times := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, now, 1<<63 - 1, -1, -24, -25, -257, -1 << 63}
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(i * 7)
		}
		for _, at := range times {
			got, want := encodeRecord(at, raw), types.MustEncode(&record{FirstSeen: at, Raw: raw})
			if string(got) != string(want) {
				t.Fatalf("firstSeen %d, %d bytes: %x…, want %x…", at, n, got[:min(len(got), 12)], want[:min(len(want), 12)])
			}
		}
	}
}
