package mempool

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/kairos-network/kairos/types"
)

// Default limits of a Config left zero.
const (
	DefaultMaxCount     = 100_000
	DefaultMaxBytes     = 256 << 20
	DefaultMaxPerSender = 1_000
	// DefaultExpiryGrace keeps an expired transaction this long past its
	// ValidUntil: it may still be released in a block timed before
	// ValidUntil (consensus timestamps trail the local clock), and the
	// executor needs its body then. It exceeds consensus tx_expiry (10 s).
	DefaultExpiryGrace = int64(30e9)
)

// Errors of Add. Decode and validation failures wrap the types.ErrTx*
// sentinels instead.
var (
	ErrFull       = errors.New("mempool: too many transactions")
	ErrBytesFull  = errors.New("mempool: transaction bytes over limit")
	ErrSenderFull = errors.New("mempool: too many transactions from one sender")
	ErrCorrupt    = errors.New("mempool: corrupt persisted entry")
)

// Prefix is the datastore namespace of persisted entries; it is disjoint
// from the state store's /kairos namespace.
const Prefix = "/node/mempool/"

// Config configures a Mempool.
type Config struct {
	ChainID      string
	Limits       types.TxLimits // zero value: types.DefaultTxLimits
	MaxCount     int            // entries
	MaxBytes     int            // sum of encoded transaction sizes
	MaxPerSender int            // entries per sender address
	ExpiryGrace  int64          // ns kept past ValidUntil
	// SyncedWrites says the datastore makes every Put durable by itself
	// (the node's pebble store writes with pebble.Sync), so Add need not
	// ask for a second sync.
	SyncedWrites bool
}

func (c Config) withDefaults() Config {
	if c.Limits == (types.TxLimits{}) {
		c.Limits = types.DefaultTxLimits
	}
	if c.MaxCount <= 0 {
		c.MaxCount = DefaultMaxCount
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxPerSender <= 0 {
		c.MaxPerSender = DefaultMaxPerSender
	}
	if c.ExpiryGrace <= 0 {
		c.ExpiryGrace = DefaultExpiryGrace
	}
	return c
}

// Entry is one held transaction.
type Entry struct {
	ID        types.Hash
	Tx        *types.Tx
	Raw       []byte // canonical bytes as received
	FirstSeen int64  // local clock (unix ns) when first added
	// sender is Tx.SenderAddress(), a hash of the key: the per-sender
	// limit asks for it at every add and removal.
	sender types.Address
}

func newEntry(id types.Hash, tx *types.Tx, raw []byte, firstSeen int64) *Entry {
	return &Entry{ID: id, Tx: tx, Raw: raw, FirstSeen: firstSeen, sender: tx.SenderAddress()}
}

// record is what is persisted per entry.
type record struct {
	_         struct{} `cbor:",toarray"`
	FirstSeen int64
	Raw       []byte
}

// encodeRecord returns types.MustEncode(&record{firstSeen, raw}) for a
// non-nil raw, written directly: the canonical array of two items, the
// integer and the byte string, each with its shortest head. Every payload
// the pool takes is encoded once, and the reflective encoder cost about a
// microsecond and three allocations (TestEncodeRecord compares the two).
func encodeRecord(firstSeen int64, raw []byte) []byte {
	b := make([]byte, 0, 1+9+9+len(raw))
	b = append(b, 0x82)
	b = types.AppendInt(b, firstSeen)
	b = types.AppendHead(b, 2, uint64(len(raw)))
	return append(b, raw...)
}

// Mempool is the set of pending transactions.
type Mempool struct {
	cfg Config
	d   ds.Batching

	mu       sync.Mutex
	byID     map[types.Hash]*Entry
	pending  map[types.Hash]chan struct{} // being persisted; closed when done
	bySender map[types.Address]int        // held and pending
	bytes    int                          // held and pending

	// Group commit of new entries: Adds queue their records, and one
	// flusher at a time writes everything queued in one synced batch.
	wmu    sync.Mutex
	wqueue []*write // waiting for the next batch
	wbusy  bool     // a flusher is running

	decoded, known, added atomic.Uint64 // Stats
}

// Stats counts what Add and AddAll did with the payloads they were given
// since Open. A node should decode and check each transaction once, so
// Decoded stays close to Added; a payload that arrives again while held
// (by gossip after a fetch) counts as Known.
type Stats struct {
	Decoded uint64 // decoded and checked (the signature too, if every other check passed)
	Known   uint64 // held already with the same bytes, so neither decoded nor checked again
	Added   uint64 // new entries
}

// Stats returns the pool's counters.
func (m *Mempool) Stats() Stats {
	return Stats{Decoded: m.decoded.Load(), Known: m.known.Load(), Added: m.added.Load()}
}

// write is one queued record of a new entry; err is set before done closes.
type write struct {
	key  ds.Key
	val  []byte
	done chan struct{}
	err  error
}

// Open loads the persisted entries of d (dropping those expired at now)
// and returns the pool.
func Open(ctx context.Context, d ds.Batching, cfg Config, now int64) (*Mempool, error) {
	m := &Mempool{cfg: cfg.withDefaults(), d: d, byID: map[types.Hash]*Entry{}, pending: map[types.Hash]chan struct{}{},
		bySender: map[types.Address]int{}}
	res, err := d.Query(ctx, query.Query{Prefix: Prefix})
	if err != nil {
		return nil, fmt.Errorf("mempool: load: %w", err)
	}
	defer res.Close()
	var stale []ds.Key
	for r := range res.Next() {
		if r.Error != nil {
			return nil, fmt.Errorf("mempool: load: %w", r.Error)
		}
		var rec record
		if err := types.Decode(r.Value, &rec); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, r.Key, err)
		}
		// Validate at the first-seen time: the entry was valid then, and
		// expiry is decided below with the grace period.
		tx, err := types.DecodeTx(rec.Raw, m.cfg.ChainID, rec.FirstSeen, m.cfg.Limits)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, r.Key, err)
		}
		e := newEntry(tx.ID(), tx, rec.Raw, rec.FirstSeen)
		if ds.NewKey(r.Key) != key(e.ID) {
			return nil, fmt.Errorf("%w: %s holds transaction %s", ErrCorrupt, r.Key, e.ID)
		}
		if m.expired(e, now) {
			stale = append(stale, key(e.ID))
			continue
		}
		m.insert(e)
	}
	for _, k := range stale {
		if err := d.Delete(ctx, k); err != nil {
			return nil, fmt.Errorf("mempool: drop expired: %w", err)
		}
	}
	return m, nil
}

// key is Prefix followed by id's hex: a clean path, so NewKey's cleaning
// (a copy per key) is skipped.
// It is built in one buffer: one allocation a key, not two.
func key(id types.Hash) ds.Key {
	var b [len(Prefix) + 2*types.HashLen]byte
	copy(b[:], Prefix)
	hex.Encode(b[len(Prefix):], id[:])
	return ds.RawKey(string(b[:]))
}

func (m *Mempool) expired(e *Entry, now int64) bool {
	return e.Tx.Body.ValidUntil < now-m.cfg.ExpiryGrace
}

func (m *Mempool) insert(e *Entry) {
	m.byID[e.ID] = e
	m.count(e, 1)
}

func (m *Mempool) drop(e *Entry) {
	delete(m.byID, e.ID)
	m.count(e, -1)
}

// count adds (+1) or removes (-1) e's share of the limits.
func (m *Mempool) count(e *Entry, sign int) {
	if m.bySender[e.sender] += sign; m.bySender[e.sender] == 0 {
		delete(m.bySender, e.sender)
	}
	m.bytes += sign * len(e.Raw)
}

// Add validates raw at the local time now and holds it. isNew is false when
// the transaction was already held; e is then the first entry, with its
// original FirstSeen. The entry is durable when Add returns it as new, and
// only then visible to Get; concurrent Adds share synced batches (group
// commit), and an Add of an id being persisted waits for that one. ctx
// bounds only that wait.
func (m *Mempool) Add(ctx context.Context, raw []byte, now int64) (e *Entry, isNew bool, err error) {
	a := m.AddAll(ctx, [][]byte{raw}, now)[0]
	return a.Entry, a.New, a.Err
}

// add holds a transaction already decoded and validated, as one Add would:
// it first waits for a write of the same id in flight (another call's, or
// an earlier copy in the same AddAll) and holds the transaction itself if
// that write failed.
func (m *Mempool) add(ctx context.Context, tx *types.Tx, id types.Hash, raw []byte, now int64) (e *Entry, isNew bool, err error) {
	m.mu.Lock()
	for {
		if old, ok := m.byID[id]; ok {
			m.mu.Unlock()
			return old, false, nil
		}
		ch, ok := m.pending[id]
		if !ok {
			break
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		m.mu.Lock() // held again, or the first Add failed: try ourselves
	}
	e, err = m.reserveLocked(tx, id, raw, now)
	m.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	w := m.queue(e)[0]
	<-w.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.settleLocked(e, w.err); err != nil {
		return nil, false, err
	}
	m.added.Add(1)
	return e, true, nil
}

// reserveLocked checks the limits for a transaction that is neither held
// nor pending, and reserves its share of them and its id while it is
// persisted. m.mu is held.
func (m *Mempool) reserveLocked(tx *types.Tx, id types.Hash, raw []byte, now int64) (*Entry, error) {
	e := newEntry(id, tx, raw, now)
	switch {
	case len(m.byID)+len(m.pending) >= m.cfg.MaxCount:
		return nil, fmt.Errorf("%w: %d held", ErrFull, len(m.byID)+len(m.pending))
	case m.bytes+len(raw) > m.cfg.MaxBytes:
		return nil, fmt.Errorf("%w: %d + %d > %d bytes", ErrBytesFull, m.bytes, len(raw), m.cfg.MaxBytes)
	case m.bySender[e.sender] >= m.cfg.MaxPerSender:
		return nil, fmt.Errorf("%w: %d from %s", ErrSenderFull, m.bySender[e.sender], e.sender)
	}
	e.Raw = append([]byte(nil), raw...)
	m.pending[id] = make(chan struct{})
	m.count(e, 1)
	return e, nil
}

// settleLocked ends the reservation of e once its write finished with
// err: the entry is held if the write succeeded, and its limits are given
// back otherwise. Adds waiting for the id are woken. m.mu is held.
func (m *Mempool) settleLocked(e *Entry, err error) error {
	close(m.pending[e.ID])
	delete(m.pending, e.ID)
	if err != nil {
		m.count(e, -1)
		return err
	}
	m.byID[e.ID] = e
	return nil
}

// Added is the outcome of one transaction of AddAll, as Add returns it.
type Added struct {
	Entry *Entry
	New   bool
	Err   error
}

// AddAll adds raws as Adds one after another would (in input order, so
// limits refuse the last ones), but cheaper: their signatures are checked
// in one batch (types.DecodeTxs, the same verdicts as one by one), and a
// payload held already with the same bytes (a fetched transaction arriving
// again by gossip) is neither decoded nor checked again while its validity
// window holds; the new entries are reserved under one lock
// and queued together, so a gossiped or fetched set of payloads costs about
// one synced batch and no goroutine per transaction. out[i] is the outcome
// of raws[i].
func (m *Mempool) AddAll(ctx context.Context, raws [][]byte, now int64) []Added {
	out := make([]Added, len(raws))
	held := func(id types.Hash, raw []byte) *types.Tx {
		if e, ok := m.Get(id); ok && bytes.Equal(e.Raw, raw) {
			return e.Tx
		}
		return nil
	}
	decoded := types.DecodeTxs(raws, m.cfg.ChainID, now, m.cfg.Limits, held)
	known := 0
	for _, d := range decoded {
		if d.Known {
			known++
		}
	}
	m.known.Add(uint64(known))
	m.decoded.Add(uint64(len(raws) - known))
	var mine []int  // indexes reserved by this call
	var later []int // ids being persisted (by another Add, or twice in raws)
	m.mu.Lock()
	for i, d := range decoded {
		if d.Err != nil {
			out[i].Err = d.Err
			continue
		}
		if old, ok := m.byID[d.ID]; ok {
			out[i] = Added{Entry: old}
			continue
		}
		if _, ok := m.pending[d.ID]; ok {
			later = append(later, i)
			continue
		}
		e, err := m.reserveLocked(d.Tx, d.ID, raws[i], now)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = Added{Entry: e, New: true}
		mine = append(mine, i)
	}
	m.mu.Unlock()
	es := make([]*Entry, len(mine))
	for j, i := range mine {
		es[j] = out[i].Entry
	}
	ws := m.queue(es...)
	for _, w := range ws {
		<-w.done
	}
	m.mu.Lock()
	for j, i := range mine {
		if err := m.settleLocked(out[i].Entry, ws[j].err); err != nil {
			out[i] = Added{Err: err}
			continue
		}
		m.added.Add(1)
	}
	m.mu.Unlock()
	// Only now, with this call's own reservations settled, wait for the
	// others: a duplicate within raws waits for its first copy.
	for _, i := range later {
		e, isNew, err := m.add(ctx, decoded[i].Tx, decoded[i].ID, raws[i], now)
		out[i] = Added{Entry: e, New: isNew, Err: err}
	}
	return out
}

// queue hands the records of es to the group commit, together, so they
// share one batch: the flusher commits everything queued while the
// previous batch was syncing, so a burst of Adds (API clients, gossip
// validators) costs one fsync per batch instead of one per transaction.
// ws[i].done closes when the batch holding es[i]'s record is durable, or
// failed (ws[i].err, set before done closes); an entry's reservation
// depends on the outcome, so a caller does not give up early.
func (m *Mempool) queue(es ...*Entry) []*write {
	ws := make([]*write, len(es))
	for i, e := range es {
		ws[i] = &write{key: key(e.ID), val: encodeRecord(e.FirstSeen, e.Raw), done: make(chan struct{})}
	}
	m.wmu.Lock()
	m.wqueue = append(m.wqueue, ws...)
	if !m.wbusy && len(ws) > 0 {
		m.wbusy = true
		go m.flush()
	}
	m.wmu.Unlock()
	return ws
}

// flush writes queued records in batches until the queue is empty.
func (m *Mempool) flush() {
	for {
		m.wmu.Lock()
		group := m.wqueue
		m.wqueue = nil
		if len(group) == 0 {
			m.wbusy = false
			m.wmu.Unlock()
			return
		}
		m.wmu.Unlock()
		err := m.writeGroup(group)
		for _, w := range group {
			w.err = err
			close(w.done)
		}
	}
}

// writeGroup commits one batch of records. Its context is not a caller's:
// one caller giving up must not fail the others' records.
func (m *Mempool) writeGroup(group []*write) error {
	ctx := context.Background()
	b, err := m.d.Batch(ctx)
	if err != nil {
		return fmt.Errorf("mempool: persist: %w", err)
	}
	for _, w := range group {
		if err := b.Put(ctx, w.key, w.val); err != nil {
			return fmt.Errorf("mempool: persist: %w", err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("mempool: persist: %w", err)
	}
	if !m.cfg.SyncedWrites {
		if err := m.d.Sync(ctx, ds.NewKey(Prefix)); err != nil {
			return fmt.Errorf("mempool: sync: %w", err)
		}
	}
	return nil
}

// Get returns the entry of id.
func (m *Mempool) Get(id types.Hash) (*Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byID[id]
	return e, ok
}

// Len returns the number of held transactions and the bytes counted
// against MaxBytes (including transactions being persisted).
func (m *Mempool) Len() (count, bytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID), m.bytes
}

// Entries returns every entry sorted by (FirstSeen, ID): the order in which
// a restarted node reports them to consensus again.
func (m *Mempool) Entries() []*Entry {
	m.mu.Lock()
	out := make([]*Entry, 0, len(m.byID))
	for _, e := range m.byID {
		out = append(out, e)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].FirstSeen != out[j].FirstSeen {
			return out[i].FirstSeen < out[j].FirstSeen
		}
		return string(out[i].ID[:]) < string(out[j].ID[:])
	})
	return out
}

// Remove drops ids (executed, or otherwise final); unknown ids, and ids
// still being persisted by an Add, are ignored. The entries leave memory
// at once and their records are deleted after the lock is released, so
// Adds do not wait for this sync. A record whose delete is lost (a crash,
// a failed write, or an Add of the same id that committed first) is only
// reloaded on restart, and the node drops a reloaded transaction that has
// a receipt.
func (m *Mempool) Remove(ctx context.Context, ids []types.Hash) error {
	m.mu.Lock()
	gone := m.dropLocked(ids)
	m.mu.Unlock()
	return m.deleteRecords(ctx, gone)
}

// RemoveWith is Remove for a caller that commits the record deletes in a
// batch of its own (the executor's root record batch, not synced: the
// next synced write on the log makes it durable, and open drops executed
// entries a crash left): it adds the deletes of the held ids' records to b
// and returns drop, which takes the entries out of memory and is to be
// called once b is committed; until then an Add of one of them still finds
// it held. Ids not held, or still being persisted by an Add, are ignored,
// as by Remove. drop takes out every one of ids, also those an Add put in
// after RemoveWith (a fetch answered while the block was being stored: the
// node could not yet see it executed), and deletes those late records
// itself; a lost delete is harmless, as for Remove.
func (m *Mempool) RemoveWith(ctx context.Context, b ds.Batch, ids []types.Hash) (drop func(), err error) {
	m.mu.Lock()
	var heldAt []int // positions in ids of the entries held now, increasing
	for i, id := range ids {
		if _, ok := m.byID[id]; ok {
			heldAt = append(heldAt, i)
		}
	}
	m.mu.Unlock()
	for _, i := range heldAt {
		if err := b.Delete(ctx, key(ids[i])); err != nil {
			return nil, fmt.Errorf("mempool: remove: %w", err)
		}
	}
	return func() {
		var late []types.Hash
		m.mu.Lock()
		j := 0
		for i, id := range ids {
			e, ok := m.byID[id]
			if !ok {
				continue
			}
			m.drop(e)
			for j < len(heldAt) && heldAt[j] < i {
				j++
			}
			if j == len(heldAt) || heldAt[j] != i {
				late = append(late, id)
			}
		}
		m.mu.Unlock()
		_ = m.deleteRecords(ctx, late) // a lost one is reloaded on restart and dropped for its receipt
	}, nil
}

// dropLocked takes the entries of ids out of memory and returns their ids.
func (m *Mempool) dropLocked(ids []types.Hash) []types.Hash {
	var gone []types.Hash
	for _, id := range ids {
		if e, ok := m.byID[id]; ok {
			m.drop(e)
			gone = append(gone, id)
		}
	}
	return gone
}

func (m *Mempool) deleteRecords(ctx context.Context, ids []types.Hash) error {
	if len(ids) == 0 {
		return nil
	}
	b, err := m.d.Batch(ctx)
	if err != nil {
		return fmt.Errorf("mempool: remove: %w", err)
	}
	for _, id := range ids {
		if err := b.Delete(ctx, key(id)); err != nil {
			return fmt.Errorf("mempool: remove: %w", err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("mempool: remove: %w", err)
	}
	return nil
}

// Expire drops the entries whose ValidUntil is more than the grace period
// before now and returns how many.
func (m *Mempool) Expire(ctx context.Context, now int64) (int, error) {
	m.mu.Lock()
	var ids []types.Hash
	for id, e := range m.byID {
		if m.expired(e, now) {
			ids = append(ids, id)
		}
	}
	gone := m.dropLocked(ids)
	m.mu.Unlock()
	return len(gone), m.deleteRecords(ctx, gone)
}
