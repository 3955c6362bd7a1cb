package order

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/kairos-network/kairos/types"
)

var orderSeeds = flag.Int("order.seeds", 300, "seeds for the randomized Byzantine-ack property test")

// refQuantile is the dumb reference: repeat each validator's value weight
// times, sort by (value, validator), take the element at index f.
func refQuantile(vals []int64, has []bool, weights []uint64, f uint64) (int64, bool) {
	type e struct {
		v int64
		j int
	}
	var all []e
	for j, v := range vals {
		if has == nil || has[j] {
			for range weights[j] {
				all = append(all, e{v, j})
			}
		}
	}
	sort.Slice(all, func(a, b int) bool {
		if all[a].v != all[b].v {
			return all[a].v < all[b].v
		}
		return all[a].j < all[b].j
	})
	if uint64(len(all)) <= f {
		return 0, false
	}
	return all[f].v, true
}

func TestQuantileF1AgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		n := 1 + r.IntN(9)
		w := make([]uint64, n)
		vals := make([]int64, n)
		has := make([]bool, n)
		for j := range w {
			w[j] = uint64(r.IntN(5)) // zero weights are allowed in the math
			vals[j] = int64(r.IntN(20)) - 10
			has[j] = r.IntN(3) > 0
		}
		_, f, _ := Quorums(w)
		got, gok := QuantileF1(vals, has, w, f)
		want, wok := refQuantile(vals, has, w, f)
		if got != want || gok != wok {
			t.Fatalf("case %d: weights %v vals %v has %v f %d: got (%d,%v) want (%d,%v)", i, w, vals, has, f, got, gok, want, wok)
		}
	}
}

func TestQuorums(t *testing.T) {
	for _, c := range []struct {
		w       []uint64
		W, F, Q uint64
	}{
		{[]uint64{1, 1, 1, 1}, 4, 1, 3},
		{[]uint64{1, 1, 1, 1, 1, 1, 1}, 7, 2, 5},
		{[]uint64{1}, 1, 0, 1},
		{[]uint64{5, 1, 1, 3}, 10, 3, 7},
		{nil, 0, 0, 0},
	} {
		W, F, Q := Quorums(c.w)
		if W != c.W || F != c.F || Q != c.Q || (W > 0 && W < 3*F+1) {
			t.Errorf("Quorums(%v) = %d,%d,%d want %d,%d,%d", c.w, W, F, Q, c.W, c.F, c.Q)
		}
	}
}

func TestNewRejectsBadParams(t *testing.T) {
	for _, p := range []Params{
		{Weights: nil, TxExpiry: 1, Retain: 1},
		{Weights: []uint64{1}, TxExpiry: 0, Retain: 1},
		{Weights: []uint64{1}, TxExpiry: 10, Retain: 5},
	} {
		if _, err := New(p); !errors.Is(err, ErrBadParams) {
			t.Errorf("New(%+v) = %v, want ErrBadParams", p, err)
		}
	}
}

func txid(i int) TxID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// TestTable walks a small hand-computed case: 4 validators, F=1, Q=3.
func TestTable(t *testing.T) {
	o, err := New(Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 1000, Retain: 2000})
	if err != nil {
		t.Fatal(err)
	}
	a := txid(1)
	// Three acks 10, 12, 30: ts = second lowest = 12. Validator 3 is silent,
	// T = (20, 20, 40, min), and W = second lowest = 20: one silent validator
	// (weight F) cannot hold the watermark back, so 12 < 20 is released.
	b := o.Apply([]Cert{
		{Author: 0, Time: 20, Acks: []Ack{{TxID: a, TRecv: 10}}},
		{Author: 1, Time: 20, Acks: []Ack{{TxID: a, TRecv: 12}}},
		{Author: 2, Time: 40, Acks: []Ack{{TxID: a, TRecv: 30}}},
	})
	if b == nil || len(b.Txs) != 1 || b.Txs[0].TS != 12 || b.Watermark != 20 || b.Height != 1 || b.Time != 12 {
		t.Fatalf("block %+v, want tx at 12 below watermark 20", b)
	}
	if b = o.Apply([]Cert{{Author: 3, Time: 50}}); b != nil {
		t.Fatalf("empty sub-DAG released %+v", b)
	}
	// A late ack for a released id is ignored; a new id with one ack holds
	// the watermark at its quantile with T substitutes.
	c := txid(2)
	b = o.Apply([]Cert{{Author: 0, Time: 60, Acks: []Ack{{TxID: a, TRecv: 55}, {TxID: c, TRecv: 21}}}})
	if b != nil || !o.Done(a) || o.Done(c) || o.Pending() != 1 {
		t.Fatalf("block %+v pending %d", b, o.Pending())
	}
	// T = (60, 20, 40, 50) so W = 40; c's values are (21, 20, 40, 50)
	// (T substitutes where unset) with second lowest 21, so B = 21.
	if o.Watermark() != 21 {
		t.Fatalf("watermark %d want 21", o.Watermark())
	}
}

// scenario drives the layer with a synthetic run: honest validators ack
// every tx shortly after it arrives, one Byzantine validator runs its header
// times ahead and acks some transactions late with old-looking times.
type scenario struct {
	log      []Tx
	lastB    int64
	lastID   types.Hash // id of the last released block, as the node serves it
	problems []string
	honest   map[TxID][2]int64 // min, max honest ack

	restoreAt int      // sub-DAG index at which twin is restored (-1 never)
	applied   int      // sub-DAGs applied so far
	twin      *Orderer // restored from the main orderer's State
	early     State    // the State twin was restored from, kept to the end
	earlyHash [32]byte // its hash when taken
}

func runScenario(seed uint64, clamp bool) *scenario { return runScenarioRestoring(seed, clamp, -1) }

// runScenarioRestoring is runScenario that, before the restoreAt-th
// committed sub-DAG, restores a second Orderer from the first one's State
// (through its canonical bytes) and feeds it the same sub-DAGs from then on.
func runScenarioRestoring(seed uint64, clamp bool, restoreAt int) *scenario {
	r := rand.New(rand.NewPCG(seed, 0xfa1))
	const n, byz = 4, 3
	const ms = int64(1e6)
	o, _ := New(Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 10_000 * ms, Retain: 20_000 * ms})
	o.noClamp = !clamp
	s := &scenario{lastB: minTime, honest: map[TxID][2]int64{}, restoreAt: restoreAt}
	offset := make([]int64, n)
	for j := range offset {
		offset[j] = int64(r.IntN(100)) * ms
	}
	type seen struct {
		id TxID
		at int64
	}
	inbox := make([][]seen, n)
	var prevTime [n]int64
	var queue [n][]Cert // produced but not yet committed, per author
	var late []seen     // Byzantine withholds these
	nextTx := 0
	for step := 0; step < 300; step++ {
		now := int64(step) * 20 * ms
		for k := r.IntN(4); k > 0; k-- {
			id := txid(nextTx)
			nextTx++
			for j := 0; j < n; j++ {
				inbox[j] = append(inbox[j], seen{id, now + offset[j] + int64(r.IntN(30))*ms})
			}
		}
		j := r.IntN(n)
		tm := max(now+offset[j], prevTime[j]+1)
		if j == byz {
			tm = max(now+200*ms, prevTime[j]+1)
		}
		var acks []Ack
		var keep []seen
		for _, x := range inbox[j] {
			if x.at > tm {
				keep = append(keep, x)
				continue
			}
			if j == byz && r.IntN(2) == 0 {
				late = append(late, x)
				continue
			}
			acks = append(acks, Ack{TxID: x.id, TRecv: max(x.at, prevTime[j]+1)})
		}
		if j == byz && len(late) > 0 && r.IntN(4) == 0 {
			for _, x := range late {
				acks = append(acks, Ack{TxID: x.id, TRecv: x.at - 500*ms})
			}
			late = nil
		}
		inbox[j] = keep
		prevTime[j] = tm
		queue[j] = append(queue[j], Cert{Author: j, Time: tm, Acks: acks})
		// Commit a random prefix of every author's queue as one sub-DAG.
		if r.IntN(3) == 0 {
			var sub []Cert
			for a := 0; a < n; a++ {
				k := r.IntN(len(queue[a]) + 1)
				if a == byz && r.IntN(2) == 0 {
					k = 0 // the Byzantine's headers land late
				}
				sub = append(sub, queue[a][:k]...)
				queue[a] = queue[a][k:]
			}
			r.Shuffle(len(sub), func(x, y int) { sub[x], sub[y] = sub[y], sub[x] })
			sortByAuthorOrder(sub)
			for _, c := range sub {
				if c.Author != byz {
					for _, a := range c.Acks {
						h, ok := s.honest[a.TxID]
						if !ok {
							h = [2]int64{a.TRecv, a.TRecv}
						}
						s.honest[a.TxID] = [2]int64{min(h[0], a.TRecv), max(h[1], a.TRecv)}
					}
				}
			}
			s.apply(o, sub)
		}
	}
	return s
}

// sortByAuthorOrder restores per-author order after a shuffle while keeping
// the interleaving across authors (a stable sort on a per-author sequence).
func sortByAuthorOrder(sub []Cert) {
	byAuthor := map[int][]Cert{}
	for _, c := range sub {
		byAuthor[c.Author] = append(byAuthor[c.Author], c)
	}
	for a := range byAuthor {
		sort.SliceStable(byAuthor[a], func(x, y int) bool { return byAuthor[a][x].Time < byAuthor[a][y].Time })
	}
	next := map[int]int{}
	for i, c := range sub {
		sub[i] = byAuthor[c.Author][next[c.Author]]
		next[c.Author]++
	}
}

func (s *scenario) apply(o *Orderer, sub []Cert) {
	if s.applied == s.restoreAt {
		st := o.State()
		s.early, s.earlyHash = st, sha256.Sum256(types.MustEncode(&st))
		var dec State
		if err := types.Decode(types.MustEncode(&st), &dec); err != nil {
			s.problems = append(s.problems, "state does not decode: "+err.Error())
		} else if tw, err := Restore(o.p, &dec); err != nil {
			s.problems = append(s.problems, "restore: "+err.Error())
		} else if s.twin = tw; tw.Hash() != o.Hash() {
			s.problems = append(s.problems, "restored state hashes differently")
		}
	}
	s.applied++
	b := o.Apply(sub)
	if s.twin != nil {
		tb := s.twin.Apply(sub)
		switch {
		case (b == nil) != (tb == nil):
			s.problems = append(s.problems, "restored orderer releases differently")
		case b != nil && b.ID() != tb.ID():
			s.problems = append(s.problems, "restored orderer releases another block")
		case s.twin.Hash() != o.Hash():
			s.problems = append(s.problems, "restored orderer state diverges")
		}
	}
	if o.Watermark() < s.lastB {
		s.problems = append(s.problems, "watermark decreased")
	}
	s.lastB = o.Watermark()
	if b == nil {
		return
	}
	// Blocks form a chain by the id clients see.
	if types.Hash(b.Parent) != s.lastID {
		s.problems = append(s.problems, "parent is not the previous block's id")
	}
	s.lastID = b.Types().ID()
	if types.Hash(b.ID()) != s.lastID {
		s.problems = append(s.problems, "block id is not its types.Block id")
	}
	for _, tx := range b.Txs {
		if n := len(s.log); n > 0 && !Less(s.log[n-1], tx) {
			s.problems = append(s.problems, "log not increasing")
		}
		if h := s.honest[tx.ID]; tx.TS < h[0] || tx.TS > h[1] {
			s.problems = append(s.problems, "ts outside honest acks")
		}
		s.log = append(s.log, tx)
	}
}

// TestByzantineLateAcks is the randomized check from consensus.md: with the
// clamp no seed breaks the properties; without it some seed produces an
// unsorted log (which shows the check can fail).
func TestByzantineLateAcks(t *testing.T) {
	brokeWithout := -1
	released := 0
	for seed := uint64(0); seed < uint64(*orderSeeds); seed++ {
		s := runScenario(seed, true)
		if len(s.problems) > 0 {
			t.Fatalf("seed %d with clamp: %v (replay: go test -run TestByzantineLateAcks ./consensus/order)", seed, s.problems[0])
		}
		released += len(s.log)
		if brokeWithout < 0 {
			if u := runScenario(seed, false); len(u.problems) > 0 {
				brokeWithout = int(seed)
				t.Logf("without the clamp seed %d: %v", seed, u.problems[0])
			}
		}
	}
	if released == 0 {
		t.Fatal("nothing released: the scenario does not exercise the layer")
	}
	if brokeWithout < 0 {
		t.Fatalf("without the clamp no seed of %d broke the properties: the check is too weak", *orderSeeds)
	}
	t.Logf("%d seeds hold with the clamp (%d txs released); without it seed %d breaks", *orderSeeds, released, brokeWithout)
}

// TestDeterministic: the same committed sequence gives the same blocks and
// the same state hash (no map order or clock reaches the output).
func TestDeterministic(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		a, b := runScenario(seed, true), runScenario(seed, true)
		if len(a.log) != len(b.log) {
			t.Fatalf("seed %d: %d vs %d released", seed, len(a.log), len(b.log))
		}
		for i := range a.log {
			if a.log[i] != b.log[i] {
				t.Fatalf("seed %d: log differs at %d", seed, i)
			}
		}
	}
}

// TestRestoreContinuesIdentically: an Orderer restored from another's
// State at any point releases the same blocks afterwards and keeps the
// same state hash, Byzantine acks included.
func TestRestoreContinuesIdentically(t *testing.T) {
	compared := 0
	for seed := uint64(0); seed < 40; seed++ {
		s := runScenarioRestoring(seed, true, int(seed%30))
		if len(s.problems) > 0 {
			t.Fatalf("seed %d: %v", seed, s.problems[0])
		}
		if s.twin != nil {
			compared++
			// A State shares the released ids with the layer; Apply
			// must never change the bytes of one taken earlier.
			if sha256.Sum256(types.MustEncode(&s.early)) != s.earlyHash {
				t.Fatalf("seed %d: a State taken earlier changed", seed)
			}
		}
	}
	if compared < 30 {
		t.Fatalf("only %d seeds restored: the check does not run", compared)
	}
}

// TestRestoreKeepsEmptyReleasedIDs: a layer that released ids and then
// pruned them all (an idle chain 2 × expiry later) exports an empty, not
// absent, Gone, which encodes differently from a layer that never
// released; a layer restored from either state, also through its
// encoding (a node restarted from its compacted state or state-synced),
// exports the same bytes.
func TestRestoreKeepsEmptyReleasedIDs(t *testing.T) {
	p := Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 10, Retain: 10}
	pruned, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	at := func(time int64, acks ...Ack) []Cert {
		var sub []Cert
		for j := range p.Weights {
			sub = append(sub, Cert{Author: j, Time: time, Acks: acks})
		}
		return sub
	}
	released := 0
	for _, sub := range [][]Cert{at(100, Ack{TxID: TxID{1}, TRecv: 50}), at(200), at(1000)} {
		if b := pruned.Apply(sub); b != nil {
			released += len(b.Txs)
		}
	}
	if st := pruned.State(); released != 1 || st.Gone == nil || len(st.Gone) != 0 {
		t.Fatalf("setup: %d released, gone %v (nil %v)", released, st.Gone, st.Gone == nil)
	}
	fresh, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]*Orderer{"pruned": pruned, "fresh": fresh} {
		st := o.State()
		want := types.MustEncode(&st)
		var decoded State
		if err := types.Decode(want, &decoded); err != nil {
			t.Fatal(err)
		}
		for how, s := range map[string]*State{"state": &st, "decoded": &decoded} {
			r, err := Restore(p, s)
			if err != nil {
				t.Fatalf("%s from %s: %v", name, how, err)
			}
			if rs := r.State(); !bytes.Equal(types.MustEncode(&rs), want) {
				t.Errorf("%s restored from %s: %x, exported %x", name, how, types.MustEncode(&rs), want)
			}
		}
	}
}

// TestRestoreRejectsBadState: a State from a peer or disk that does not fit
// the params or is not canonical is refused with ErrBadState.
func TestRestoreRejectsBadState(t *testing.T) {
	p := Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 10, Retain: 20}
	good := func() State {
		ids := []TxID{txid(1), txid(2), txid(3), txid(4)}
		sort.Slice(ids, func(a, b int) bool { return string(ids[a][:]) < string(ids[b][:]) })
		return State{T: make([]int64, 4), Pending: []Entry{{ID: ids[0], Acks: make([]int64, 4), Set: make([]bool, 4)},
			{ID: ids[1], Acks: make([]int64, 4), Set: make([]bool, 4)}}, Gone: appendGone(appendGone(nil, ids[2], 5), ids[3], 6)}
	}
	if s := good(); mustRestore(t, p, &s) != nil {
		t.Fatal("good state refused")
	}
	for name, bad := range map[string]func(*State){
		"clock entries":    func(s *State) { s.T = s.T[:3] },
		"pending order":    func(s *State) { s.Pending[0], s.Pending[1] = s.Pending[1], s.Pending[0] },
		"pending dup":      func(s *State) { s.Pending[1].ID = s.Pending[0].ID },
		"ack slots":        func(s *State) { s.Pending[0].Acks = nil },
		"flag slots":       func(s *State) { s.Pending[1].Set = make([]bool, 5) },
		"gone order":       func(s *State) { s.Gone = appendGone(appendGone(nil, txid(3), 6), txid(4), 5) },
		"gone same ts":     func(s *State) { s.Gone = appendGone(appendGone(nil, txid(3), 5), txid(3), 5) },
		"gone record size": func(s *State) { s.Gone = s.Gone[:goneRecord+1] },
		"pending or gone":  func(s *State) { s.Gone = appendGone(nil, s.Pending[0].ID, 5) },
	} {
		s := good()
		bad(&s)
		if err := mustRestore(t, p, &s); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: %v, want ErrBadState", name, err)
		}
	}
}

func mustRestore(t *testing.T, p Params, s *State) error {
	t.Helper()
	_, err := Restore(p, s)
	return err
}

// TestAncientAckDoesNotCensor: a Byzantine validator whose first header
// acks a transaction with an ancient time expires that entry at once, but
// the honest acks that follow still get the transaction released.
func TestAncientAckDoesNotCensor(t *testing.T) {
	const s = int64(1e9)
	o, _ := New(Params{Weights: []uint64{1, 1, 1, 1}, TxExpiry: 10 * s, Retain: 20 * s})
	id := txid(9)
	now := 100 * s
	o.Apply([]Cert{
		{Author: 0, Time: now}, {Author: 1, Time: now}, {Author: 2, Time: now},
		{Author: 3, Time: now, Acks: []Ack{{TxID: id, TRecv: now - 60*s}}},
	})
	var got *Block
	for k := int64(1); k < 5 && got == nil; k++ {
		t2 := now + k*s
		got = o.Apply([]Cert{
			{Author: 0, Time: t2, Acks: []Ack{{TxID: id, TRecv: t2 - 1}}},
			{Author: 1, Time: t2, Acks: []Ack{{TxID: id, TRecv: t2 - 2}}},
			{Author: 2, Time: t2, Acks: []Ack{{TxID: id, TRecv: t2 - 3}}},
			{Author: 3, Time: t2},
		})
	}
	if got == nil || len(got.Txs) != 1 || got.Txs[0].ID != id {
		t.Fatalf("transaction censored by one ancient ack: %+v", got)
	}
}

// refModel is the dumb reference of the whole layer: plain maps, every
// quantity recomputed from scratch with refQuantile after each sub-DAG.
type refModel struct {
	w        []uint64
	f, q     uint64
	expiry   int64
	t        []int64
	acks     map[TxID]map[int]int64
	assigned map[TxID]int64
	released map[TxID]bool
	lastB    int64
}

func newRef(w []uint64, expiry int64) *refModel {
	_, f, q := Quorums(w)
	m := &refModel{w: w, f: f, q: q, expiry: expiry, t: make([]int64, len(w)), acks: map[TxID]map[int]int64{},
		assigned: map[TxID]int64{}, released: map[TxID]bool{}, lastB: minTime}
	for j := range m.t {
		m.t[j] = minTime
	}
	return m
}

// apply returns the ids released by this sub-DAG, in release order.
func (m *refModel) apply(sub []Cert) []Tx {
	for _, c := range sub {
		for _, a := range c.Acks {
			if m.released[a.TxID] {
				continue
			}
			if m.acks[a.TxID] == nil {
				m.acks[a.TxID] = map[int]int64{}
			}
			if _, ok := m.acks[a.TxID][c.Author]; !ok {
				m.acks[a.TxID][c.Author] = max(a.TRecv, m.t[c.Author]+1)
			}
		}
		m.t[c.Author] = max(m.t[c.Author], c.Time)
	}
	w, _ := refQuantile(m.t, nil, m.w, m.f)
	b := w
	var ids []TxID
	for id := range m.acks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return Less(Tx{ID: ids[i]}, Tx{ID: ids[j]}) })
	for _, id := range ids {
		vals := make([]int64, len(m.w))
		has := make([]bool, len(m.w))
		var weight uint64
		for j := range m.w {
			if v, ok := m.acks[id][j]; ok {
				vals[j], has[j] = v, true
				weight += m.w[j]
			}
		}
		if _, done := m.assigned[id]; !done && weight >= m.q {
			m.assigned[id], _ = refQuantile(vals, has, m.w, m.f)
		}
		if _, done := m.assigned[id]; !done {
			for j := range vals {
				if !has[j] {
					vals[j] = m.t[j]
				}
			}
			x, _ := refQuantile(vals, nil, m.w, m.f)
			b = min(b, x)
		}
	}
	var out []Tx
	for _, id := range ids {
		if ts, ok := m.assigned[id]; ok && ts < b {
			out = append(out, Tx{ID: id, TS: ts})
		}
	}
	sort.Slice(out, func(i, j int) bool { return Less(out[i], out[j]) })
	for _, tx := range out {
		m.released[tx.ID] = true
		delete(m.acks, tx.ID)
		delete(m.assigned, tx.ID)
	}
	for _, id := range ids {
		if _, done := m.assigned[id]; done || m.released[id] {
			continue
		}
		newest := int64(minTime)
		for _, v := range m.acks[id] {
			newest = max(newest, v)
		}
		if newest < w-m.expiry {
			delete(m.acks, id)
		}
	}
	m.lastB = b
	return out
}

// TestAgainstReference: random weights, random committed sequences with
// old, duplicate and late acks; the layer and the dumb reference release
// the same transactions with the same timestamps and watermarks.
func TestAgainstReference(t *testing.T) {
	released := 0
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x4ef))
		n := 1 + r.IntN(7)
		w := make([]uint64, n)
		for j := range w {
			w[j] = 1 + uint64(r.IntN(4))
		}
		const expiry = 400
		o, _ := New(Params{Weights: w, TxExpiry: expiry, Retain: 10 * expiry})
		m := newRef(w, expiry)
		times := make([]int64, n)
		for step := 0; step < 60; step++ {
			var sub []Cert
			for k := r.IntN(5); k > 0; k-- {
				j := r.IntN(n)
				times[j] += 1 + int64(r.IntN(30))
				c := Cert{Author: j, Time: times[j]}
				for a := r.IntN(4); a > 0; a-- {
					c.Acks = append(c.Acks, Ack{TxID: txid(r.IntN(40)), TRecv: times[j] - int64(r.IntN(120))})
				}
				sub = append(sub, c)
			}
			got := o.Apply(sub)
			want := m.apply(sub)
			var g []Tx
			if got != nil {
				g = got.Txs
			}
			released += len(g)
			if len(g) != len(want) {
				t.Fatalf("seed %d step %d (weights %v): released %d, reference %d", seed, step, w, len(g), len(want))
			}
			for i := range g {
				if g[i] != want[i] {
					t.Fatalf("seed %d step %d: tx %d = %v, reference %v", seed, step, i, g[i], want[i])
				}
			}
			if o.Watermark() != m.lastB {
				t.Fatalf("seed %d step %d: watermark %d, reference %d", seed, step, o.Watermark(), m.lastB)
			}
		}
	}
	if released < 1000 {
		t.Fatalf("only %d txs released: the sequences do not exercise the layer", released)
	}
}
