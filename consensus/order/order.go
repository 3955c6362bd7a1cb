package order

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/kairos-network/kairos/types"
)

// TxID identifies a transaction: the sha2-256 digest of its canonical bytes.
type TxID [32]byte

// Ack is one validator's report: "I first received TxID at my local time
// TRecv (unix ns) and I hold its payload".
type Ack struct {
	_     struct{} `cbor:",toarray"`
	TxID  TxID
	TRecv int64
}

// Cert is the part of a committed certificate the ordering layer reads.
type Cert struct {
	Author int   // validator index
	Time   int64 // header time, unix ns
	Acks   []Ack
}

// Tx is one released transaction with its consensus timestamp.
type Tx struct {
	_  struct{} `cbor:",toarray"`
	ID TxID
	TS int64
}

// Block is one released batch. Its boundaries, like its contents, are a
// pure function of the committed sequence.
type Block struct {
	_         struct{} `cbor:",toarray"`
	Height    uint64
	Parent    [32]byte // ID of the previous block (zero for height 1)
	Txs       []Tx     // sorted by (TS, ID)
	Watermark int64    // B_k at release
	Time      int64    // TS of the last tx
}

// Types returns the block in the form the node executes, stores and
// serves.
func (b *Block) Types() *types.Block {
	tb := &types.Block{Height: b.Height, Parent: types.Hash(b.Parent), Time: b.Time, Watermark: b.Watermark,
		Txs: make([]types.OrderedTx, len(b.Txs))}
	for i, t := range b.Txs {
		tb.Txs[i] = types.OrderedTx{ID: types.Hash(t.ID), TS: t.TS}
	}
	return tb
}

// ID returns the block id, that of its types.Block: the id checkpoints
// certify and clients see, so the next block's Parent links to it.
func (b *Block) ID() [32]byte { return [32]byte(b.Types().ID()) }

// ErrBadParams reports weights or limits the layer cannot work with.
var ErrBadParams = errors.New("order: bad params")

// Params configure the layer; identical on every validator (genesis).
type Params struct {
	Weights  []uint64 // by validator index
	TxExpiry int64    // ns: an id with < Q acks is dropped when its newest ack is older than W_k - TxExpiry
	Retain   int64    // ns: released ids are remembered this long below W_k (>= TxExpiry)
	// EmptyEvery (ns, 0 = never): when a sub-DAG releases nothing but the
	// watermark crosses a multiple of it, an empty block is released,
	// timed at that multiple, so a chain without transactions still has
	// heights to checkpoint at. A function of the watermarks, which the
	// state holds: no new state.
	EmptyEvery int64
}

// Quorums returns total weight W, F = floor((W-1)/3) and Q = W - F.
func Quorums(weights []uint64) (w, f, q uint64) {
	for _, x := range weights {
		w += x
	}
	if w == 0 {
		return 0, 0, 0
	}
	f = (w - 1) / 3
	return w, f, w - f
}

type entry struct {
	acks   []int64 // by validator; valid where set[j]
	set    []bool
	weight uint64
	newest int64
	ts     int64
	done   bool // assigned
}

// Orderer is the layer's state. It is not safe for concurrent use.
type Orderer struct {
	p       Params
	f, q    uint64
	noClamp bool // tests only: shows the clamp is needed

	t       []int64 // T[j]: Time of j's latest committed header
	pending map[TxID]*entry
	gone    map[TxID]int64 // released ids -> ts, pruned below W - Retain
	// goneLog holds the same ids as goneRecord records in release order,
	// which is (ts, id) order (the released log is strictly increasing),
	// so pruning drops a prefix and State copies it without sorting.
	goneLog []byte
	height  uint64
	last    [32]byte
	lastB   int64
	w       int64
}

// minTime is below any real time and far from overflow on +1.
const minTime = -1 << 62

// New returns an Orderer at genesis.
func New(p Params) (*Orderer, error) {
	_, f, q := Quorums(p.Weights)
	if q == 0 || p.TxExpiry <= 0 || p.Retain < p.TxExpiry {
		return nil, fmt.Errorf("%w: %d validators, expiry %d, retain %d", ErrBadParams, len(p.Weights), p.TxExpiry, p.Retain)
	}
	o := &Orderer{p: p, f: f, q: q, t: make([]int64, len(p.Weights)),
		pending: map[TxID]*entry{}, gone: map[TxID]int64{}, lastB: minTime, w: minTime}
	for j := range o.t {
		o.t[j] = minTime
	}
	return o, nil
}

// Done reports whether id was released (and is still remembered). Honest
// validators do not ack such ids again; ids that are pending or expired
// still need their acks.
func (o *Orderer) Done(id TxID) bool {
	_, g := o.gone[id]
	return g
}

// Params returns the layer's parameters.
func (o *Orderer) Params() Params { return o.p }

// Watermark returns the last released watermark B_k.
func (o *Orderer) Watermark() int64 { return o.lastB }

// Height returns the height of the last released block.
func (o *Orderer) Height() uint64 { return o.height }

// Pending returns how many ids are waiting for assignment or release.
func (o *Orderer) Pending() int { return len(o.pending) }

type wv struct {
	v int64
	j int
}

// QuantileF1 returns the first value, in (value, validator) order, at which
// the cumulative weight of the given validators reaches f+1. ok is false if
// the total weight is below f+1.
func QuantileF1(vals []int64, has []bool, weights []uint64, f uint64) (v int64, ok bool) {
	s := make([]wv, 0, len(vals))
	for j, x := range vals {
		if has == nil || has[j] {
			s = append(s, wv{x, j})
		}
	}
	sort.Slice(s, func(a, b int) bool {
		if s[a].v != s[b].v {
			return s[a].v < s[b].v
		}
		return s[a].j < s[b].j
	})
	var cum uint64
	for _, e := range s {
		cum += weights[e.j]
		if cum >= f+1 {
			return e.v, true
		}
	}
	return 0, false
}

// Apply runs the layer on one committed sub-DAG (in its commit order) and
// returns the released block, or nil when nothing is released. Certificates
// with an author outside the validator set are ignored (the DAG never
// commits them; this keeps the function total).
func (o *Orderer) Apply(sub []Cert) *Block {
	n := len(o.p.Weights)
	for _, c := range sub {
		j := c.Author
		if j < 0 || j >= n {
			continue
		}
		for _, a := range c.Acks {
			if _, g := o.gone[a.TxID]; g {
				continue
			}
			e := o.pending[a.TxID]
			if e == nil {
				e = &entry{acks: make([]int64, n), set: make([]bool, n), newest: minTime}
				o.pending[a.TxID] = e
			}
			if e.set[j] {
				continue
			}
			t := a.TRecv
			if !o.noClamp {
				t = max(t, o.t[j]+1) // THE CLAMP
			}
			e.acks[j], e.set[j] = t, true
			e.weight += o.p.Weights[j]
			e.newest = max(e.newest, t)
		}
		o.t[j] = max(o.t[j], c.Time)
	}
	// T[j] only grow, so W_k never decreases.
	o.w, _ = QuantileF1(o.t, nil, o.p.Weights, o.f)
	b := o.w
	var release []Tx
	// Map scans below only take a minimum or collect ids that are sorted
	// before use, so iteration order cannot reach the output.
	for _, e := range o.pending {
		if !e.done && e.weight >= o.q {
			e.ts, _ = QuantileF1(e.acks, e.set, o.p.Weights, o.f)
			e.done = true
		}
		if !e.done {
			vals := make([]int64, n)
			for j := range vals {
				vals[j] = o.t[j]
				if e.set[j] {
					vals[j] = e.acks[j]
				}
			}
			if x, _ := QuantileF1(vals, nil, o.p.Weights, o.f); x < b {
				b = x
			}
		}
	}
	for id, e := range o.pending {
		if e.done && e.ts < b {
			release = append(release, Tx{ID: id, TS: e.ts})
		}
	}
	sort.Slice(release, func(a, c int) bool { return less(release[a], release[c]) })
	for _, tx := range release {
		delete(o.pending, tx.ID)
		o.gone[tx.ID] = tx.TS
		o.goneLog = appendGone(o.goneLog, tx.ID, tx.TS)
	}
	// Expired ids are forgotten, not barred: a Byzantine validator whose
	// clamp bound is still old (its first header) could otherwise expire a
	// transaction at once with one ancient ack and censor it for good.
	// Later acks simply start a new entry.
	for id, e := range o.pending {
		if !e.done && e.newest < o.w-o.p.TxExpiry {
			delete(o.pending, id)
		}
	}
	for len(o.goneLog) > 0 {
		id, t := goneAt(o.goneLog)
		if t >= o.w-o.p.Retain {
			break
		}
		delete(o.gone, id)
		o.goneLog = o.goneLog[goneRecord:]
	}
	prevB := o.lastB
	o.lastB = b
	var t int64
	switch {
	case len(release) > 0:
		t = release[len(release)-1].TS
	case o.p.EmptyEvery > 0 && prevB > 0 && b/o.p.EmptyEvery > prevB/o.p.EmptyEvery:
		// The previous block's time is below prevB and every later
		// timestamp is at least b, so the crossed multiple keeps block
		// times ordered.
		t = b / o.p.EmptyEvery * o.p.EmptyEvery
	default:
		return nil
	}
	o.height++
	blk := &Block{Height: o.height, Parent: o.last, Txs: release, Watermark: b, Time: t}
	o.last = blk.ID()
	return blk
}

func less(a, b Tx) bool {
	if a.TS != b.TS {
		return a.TS < b.TS
	}
	return bytes.Compare(a.ID[:], b.ID[:]) < 0
}

// Less reports whether a sorts before b in the released log, by (TS, ID).
func Less(a, b Tx) bool { return less(a, b) }

// Entry is one pending transaction id in a State: its acks by validator
// (valid where Set), the newest ack, and its timestamp once assigned (Done).
type Entry struct {
	_      struct{} `cbor:",toarray"`
	ID     TxID
	Acks   []int64
	Set    []bool
	Newest int64
	TS     int64
	Done   bool
}

// goneRecord is the size of one released id in State.Gone: the id, then
// its timestamp as a big-endian int64.
const goneRecord = 32 + 8

func appendGone(b []byte, id TxID, ts int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, id[:]...), uint64(ts))
}

func goneAt(b []byte) (id TxID, ts int64) {
	copy(id[:], b)
	return id, int64(binary.BigEndian.Uint64(b[32:goneRecord]))
}

// State is the whole layer state in canonical form, so that equal states
// encode to equal bytes. The watermark W_k is not part of it; Apply
// recomputes it from T before using it.
type State struct {
	_       struct{} `cbor:",toarray"`
	T       []int64  // by validator
	Pending []Entry  // ascending ID
	// Gone is the released ids still remembered, goneRecord bytes each,
	// in release order: strictly increasing (ts, id). One byte string
	// rather than a list of pairs: it is most of the state, and copying
	// and hashing it is what every block's checkpoint vote costs.
	Gone   []byte
	Height uint64
	Last   [32]byte
	LastB  int64
}

// ErrBadState reports a State that does not fit the params or is not in
// canonical form (it came from a peer or a disk).
var ErrBadState = errors.New("order: bad state")

// State returns a copy of the layer state in canonical form. Gone shares
// storage with the layer: its bytes are never written again (released ids
// are only appended after it and dropped from its front), so states kept
// for many blocks cost one copy of the ids, not one per block. The caller
// must not modify it.
func (o *Orderer) State() State {
	s := State{T: append([]int64(nil), o.t...), Height: o.height, Last: o.last, LastB: o.lastB,
		Pending: make([]Entry, 0, len(o.pending)), Gone: o.goneLog[:len(o.goneLog):len(o.goneLog)]}
	for id, e := range o.pending {
		s.Pending = append(s.Pending, Entry{ID: id, Acks: append([]int64(nil), e.acks...), Set: append([]bool(nil), e.set...),
			Newest: e.newest, TS: e.ts, Done: e.done})
	}
	sort.Slice(s.Pending, func(a, b int) bool { return bytes.Compare(s.Pending[a].ID[:], s.Pending[b].ID[:]) < 0 })
	return s
}

// Restore returns an Orderer continuing from s. It checks that s fits p
// and is canonical (ids strictly ascending, one ack slot per validator),
// and recomputes what State leaves out (ack weights, W_k is recomputed by
// the next Apply), so a restored layer behaves exactly like the one that
// exported s.
func Restore(p Params, s *State) (*Orderer, error) {
	o, err := New(p)
	if err != nil {
		return nil, err
	}
	n := len(p.Weights)
	if len(s.T) != n {
		return nil, fmt.Errorf("%w: %d clock entries for %d validators", ErrBadState, len(s.T), n)
	}
	copy(o.t, s.T)
	for i := range s.Pending {
		e := &s.Pending[i]
		if i > 0 && bytes.Compare(s.Pending[i-1].ID[:], e.ID[:]) >= 0 {
			return nil, fmt.Errorf("%w: pending ids not strictly ascending at %d", ErrBadState, i)
		}
		if len(e.Acks) != n || len(e.Set) != n {
			return nil, fmt.Errorf("%w: pending %d has %d acks, %d flags for %d validators", ErrBadState, i, len(e.Acks), len(e.Set), n)
		}
		x := &entry{acks: append([]int64(nil), e.Acks...), set: append([]bool(nil), e.Set...), newest: e.Newest, ts: e.TS, done: e.Done}
		for j, ok := range x.set {
			if ok {
				x.weight += p.Weights[j]
			}
		}
		o.pending[e.ID] = x
	}
	if len(s.Gone)%goneRecord != 0 {
		return nil, fmt.Errorf("%w: released ids of %d bytes", ErrBadState, len(s.Gone))
	}
	var prev Tx
	for k := 0; k < len(s.Gone); k += goneRecord {
		id, ts := goneAt(s.Gone[k:])
		cur := Tx{ID: id, TS: ts}
		if k > 0 && !less(prev, cur) {
			return nil, fmt.Errorf("%w: released ids not in strictly increasing (ts, id) order at %d", ErrBadState, k/goneRecord)
		}
		prev = cur
		if _, dup := o.pending[id]; dup {
			return nil, fmt.Errorf("%w: id both pending and released", ErrBadState)
		}
		o.gone[id] = ts
	}
	if s.Gone != nil {
		// Empty but present (all pruned) encodes differently from absent
		// (never released): keep which one, or the restored layer's
		// state hash would differ from its peers' until the next release.
		o.goneLog = append(make([]byte, 0, len(s.Gone)), s.Gone...)
	}
	o.height, o.last, o.lastB = s.Height, s.Last, s.LastB
	o.w, _ = QuantileF1(o.t, nil, p.Weights, o.f)
	return o, nil
}

// Hash returns the sha2-256 digest of the canonical encoding of State.
func (o *Orderer) Hash() [32]byte {
	s := o.State()
	return sha256.Sum256(types.MustEncode(&s))
}
