package exec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// DeferredModule is the system module that keeps the deferred set:
// transactions that reached a block with a nonce ahead of their sender's
// account and wait there for the gap to close (see ExecuteBlockDeferred).
// Keys:
//
//	"n"                                  total count, 8 bytes big-endian
//	's' ‖ sender ‖ nonce(8) ‖ tx id      deferredEntry (the body and its place)
//	'e' ‖ expiry(8) ‖ sender ‖ nonce ‖ id   one byte: the expiry index
//
// expiry is the entry's deadline in consensus time with the sign bit
// flipped, so byte order is time order.
var DeferredModule = types.Address(sha256.Sum256([]byte("kairos/system/deferred\x00")))

// ErrDeferredCorrupt reports a deferred-set record the executor did not
// write (the set lives in the state, so this is state corruption).
var ErrDeferredCorrupt = errors.New("exec: deferred set corrupt")

// DeferLimits bound the deferred set. They are a rule of the chain: every
// validator must use the same values, or the state roots differ.
type DeferLimits struct {
	// PerSender caps the transactions one sender has deferred at once.
	PerSender int
	// Total caps the whole set.
	Total int
	// MaxAge is how long (consensus ns after the transaction's timestamp) a
	// transaction may wait, however far its ValidUntil is.
	MaxAge int64
}

// DefaultDeferLimits are the limits of every Kairos chain. A sender that
// pipelines transactions has at most a few blocks' worth ahead of a gap;
// the age keeps an unclosable gap from holding its transactions for the
// whole validity window (types.TxLimits.MaxValidity).
var DefaultDeferLimits = DeferLimits{PerSender: 256, Total: 16384, MaxAge: int64(30 * time.Second)}

var deferCountKey = []byte("n")

const (
	deferEntryTag  = 's'
	deferExpiryTag = 'e'
	deferKeyLen    = 1 + types.AddressLen + nonceLen + types.HashLen
)

// deferredEntry is the value under a deferred transaction's 's' key.
type deferredEntry struct {
	_      struct{} `cbor:",toarray"`
	Height uint64   // the block that ordered it
	TS     int64    // its consensus timestamp
	Raw    []byte   // its canonical bytes
}

// deferred is a loaded entry.
type deferred struct {
	entry  deferredEntry
	tx     *types.Tx
	sender types.Address
	expiry int64
}

func (d *deferred) id() types.Hash { return d.tx.ID() }

func deferEntryKey(sender types.Address, nonce uint64, id types.Hash) []byte {
	k := make([]byte, 0, deferKeyLen)
	k = append(append(k, deferEntryTag), sender[:]...)
	k = binary.BigEndian.AppendUint64(k, nonce)
	return append(k, id[:]...)
}

func deferExpiryKey(expiry int64, sender types.Address, nonce uint64, id types.Hash) []byte {
	k := binary.BigEndian.AppendUint64([]byte{deferExpiryTag}, uint64(expiry)^(1<<63))
	return append(k, deferEntryKey(sender, nonce, id)[1:]...)
}

// deferExpiry is when a transaction with timestamp ts leaves the set
// unexecuted: at its ValidUntil or after MaxAge, whichever is first.
func deferExpiry(tx *types.Tx, ts int64, lim DeferLimits) int64 {
	age := int64(math.MaxInt64)
	if ts <= math.MaxInt64-lim.MaxAge {
		age = ts + lim.MaxAge
	}
	return min(tx.Body.ValidUntil, age)
}

// ResolvedTx is a transaction deferred by an earlier block and settled in
// this one: executed (any status), expired, or refused because another
// transaction took its nonce.
type ResolvedTx struct {
	Receipt types.Receipt
	Raw     []byte
	Height  uint64 // the block that ordered it
}

// DeferredBlockResult is the outcome of ExecuteBlockDeferred. Writes
// include the deferred set's changes; Receipts stay one per block
// transaction, in block order; Events are those of the block's settled
// transactions, then of Resolved, in that order.
type DeferredBlockResult struct {
	BlockResult
	// Deferred[i] reports that block transaction i entered the deferred
	// set: Receipts[i] says why and is not final.
	Deferred []bool
	// Resolved lists the earlier-deferred transactions settled here:
	// first the expired ones in expiry order, then the executed ones in
	// (sender, nonce, id) order.
	Resolved []ResolvedTx
}

// errStopIteration ends an Iterate early.
var errStopIteration = errors.New("exec: stop iteration")

// ExecuteBlockDeferred executes b like ExecuteBlock, with the deferred set
// kept in DeferredModule. A transaction the fair order placed before its
// sender's gap (nonce more than one ahead of the account after the block)
// is not refused but deferred: kept in the state, and executed in a later
// block in which its sender has a transaction, once its nonce is next. It
// leaves the set when it executes, when another transaction took its
// nonce, or when it expires (ValidUntil, or lim.MaxAge after its
// timestamp, against the block time). Over lim.PerSender or lim.Total it
// is refused at once, like before.
//
// Everything here is a function of the parent state and the block: the
// expired entries in expiry-key order, the entries of the block's senders
// in key order run first in the block (the executor's nonce order then
// interleaves them with the sender's block transactions), and the limits
// are applied to candidates in block order after the settled entries left.
func (x *Executor) ExecuteBlockDeferred(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx, lim DeferLimits) (*DeferredBlockResult, error) {
	if len(txs) != len(b.Txs) {
		return nil, fmt.Errorf("%w: %d bodies for %d transactions", ErrBlockMismatch, len(txs), len(b.Txs))
	}
	count, err := readCount(ctx, parent)
	if err != nil {
		return nil, err
	}
	var ds deferSet
	if count > 0 {
		if ds, err = loadDeferred(ctx, parent, b, txs, lim); err != nil {
			return nil, err
		}
	}
	// The block's own copy of a deferred transaction (a re-release) runs in
	// its place, so one body never runs twice in a block.
	var run []*deferred
	if len(ds.waiting) > 0 {
		inBlock := make(map[types.Hash]bool, len(txs))
		for _, t := range b.Txs {
			inBlock[t.ID] = true
		}
		for _, d := range ds.waiting {
			if !inBlock[d.id()] {
				run = append(run, d)
			}
		}
		// Within the executor's block limit: entries left out (the last
		// in key order) wait for a later block of their sender.
		run = run[:min(len(run), max(0, x.opts.MaxTxs-len(txs)))]
	}
	aug, augTxs := b, txs
	if len(run) > 0 {
		ab := *b
		ab.Txs = make([]types.OrderedTx, 0, len(run)+len(b.Txs))
		augTxs = make([]*types.Tx, 0, len(run)+len(b.Txs))
		for _, d := range run {
			ab.Txs = append(ab.Txs, types.OrderedTx{ID: d.id(), TS: d.entry.TS})
			augTxs = append(augTxs, d.tx)
		}
		ab.Txs = append(ab.Txs, b.Txs...)
		augTxs = append(augTxs, txs...)
		aug = &ab
	}
	res, err := x.ExecuteBlock(ctx, parent, aug, augTxs)
	if err != nil {
		return nil, err
	}
	if len(ds.expired)+len(ds.waiting) == 0 && !slices.ContainsFunc(res.Receipts, func(r types.Receipt) bool { return r.Status == types.StatusInvalid }) {
		// Nothing deferred before, nothing refused now: the common block.
		return &DeferredBlockResult{BlockResult: *res, Deferred: make([]bool, len(txs))}, nil
	}
	// Only a refused transaction can be deferred or stay deferred: the
	// account nonces after the block are read for their senders alone.
	refused := map[int]types.Address{}
	for i, r := range res.Receipts {
		if r.Status == types.StatusInvalid {
			refused[i] = augTxs[i].SenderAddress()
		}
	}
	final, err := finalNonces(ctx, parent, res.Writes, refused)
	if err != nil {
		return nil, err
	}
	// ahead: the transaction was refused because its nonce is past the
	// account's after the block. Nonce order runs a sender's transactions
	// in ascending nonce, so such a one saw a smaller account nonce too,
	// and it is no replay (a replay's nonce is at most the account's).
	ahead := func(i int) bool {
		s, ok := refused[i]
		tx := augTxs[i]
		return ok && tx.Body.ValidUntil >= b.Time && tx.Body.Nonce > final[s]+1
	}
	out := &DeferredBlockResult{Deferred: make([]bool, len(b.Txs))}
	out.GasUsed = res.GasUsed
	var writes []state.Write
	// The deletions and the count carry the values they replace as the
	// commit's old values (state.Write.Old): an entry is what it decoded
	// from (entries are canonical CBOR), an expiry key holds 1.
	countWas := count
	del := func(d *deferred) {
		n := d.tx.Body.Nonce
		writes = append(writes,
			state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferEntryKey(d.sender, n, d.id())}, Old: types.MustEncode(&d.entry)},
			state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferExpiryKey(d.expiry, d.sender, n, d.id())}, Old: []byte{1}})
		count--
	}
	for _, d := range ds.expired {
		del(d)
		out.Resolved = append(out.Resolved, ResolvedTx{Raw: d.entry.Raw, Height: d.entry.Height, Receipt: types.Receipt{
			TxID: d.id(), Status: types.StatusInvalid,
			Error: fmt.Sprintf("expired while deferred: nonce %d never became next before %d (block time %d)", d.tx.Body.Nonce, d.expiry, b.Time)}})
	}
	// Entries per sender after this block: the waiting ones, less those
	// that settle, plus the new ones.
	perSender := map[types.Address]int{}
	for _, d := range ds.waiting {
		perSender[d.sender]++
	}
	for i, d := range run {
		if ahead(i) {
			continue
		}
		del(d)
		perSender[d.sender]--
		out.Resolved = append(out.Resolved, ResolvedTx{Raw: d.entry.Raw, Height: d.entry.Height, Receipt: res.Receipts[i]})
	}
	blockRes := res.Receipts[len(run):]
	for i, tx := range txs {
		if d, ok := ds.byID[b.Txs[i].ID]; ok {
			// A re-released deferred transaction: it settles the entry,
			// or stays in it.
			if ahead(len(run) + i) {
				out.Deferred[i] = true
			} else {
				del(d)
				perSender[d.sender]--
			}
			continue
		}
		if !ahead(len(run)+i) || ds.expiredIDs[b.Txs[i].ID] {
			continue // settled, or re-released after its entry expired here
		}
		s := tx.SenderAddress()
		expiry := deferExpiry(tx, b.Txs[i].TS, lim)
		switch {
		case expiry < b.Time:
			continue // too old to wait: the refusal stands
		case perSender[s] >= lim.PerSender:
			blockRes[i].Error = fmt.Sprintf("%s; not deferred: sender has %d deferred transactions", blockRes[i].Error, lim.PerSender)
			continue
		case count >= uint64(lim.Total):
			blockRes[i].Error = fmt.Sprintf("%s; not deferred: %d transactions deferred", blockRes[i].Error, lim.Total)
			continue
		}
		raw, err := types.Encode(tx)
		if err != nil {
			return nil, fmt.Errorf("%w: encode deferred tx: %w", ErrBlockMismatch, err)
		}
		n := tx.Body.Nonce
		writes = append(writes,
			state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferEntryKey(s, n, b.Txs[i].ID)},
				Value: types.MustEncode(&deferredEntry{Height: b.Height, TS: b.Txs[i].TS, Raw: raw})},
			state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferExpiryKey(expiry, s, n, b.Txs[i].ID)}, Value: []byte{1}})
		count++
		perSender[s]++
		out.Deferred[i] = true
		blockRes[i].Error = fmt.Sprintf("deferred until nonce %d is next (account nonce after block %d: %d)", n, b.Height, final[s])
	}
	out.Receipts = blockRes
	for i := range blockRes {
		if !out.Deferred[i] {
			out.Events = append(out.Events, blockRes[i].Events...)
		}
	}
	for _, r := range out.Resolved {
		out.Events = append(out.Events, r.Receipt.Events...)
	}
	if len(writes) > 0 {
		var v, was []byte // nil deletes the count of an empty set
		if count > 0 {
			v = binary.BigEndian.AppendUint64(nil, count)
		}
		if countWas > 0 {
			was = binary.BigEndian.AppendUint64(nil, countWas)
		}
		writes = append(writes, state.Write{Key: types.StateKey{Module: DeferredModule, Key: deferCountKey}, Value: v, Old: was})
		out.Writes = mergeWrites(res.Writes, writes)
	} else {
		out.Writes = res.Writes
	}
	return out, nil
}

// deferSet is what a block sees of the deferred set.
type deferSet struct {
	expired []*deferred              // expiry before the block time, in expiry-key order
	waiting []*deferred              // the block's senders' other entries, in key order
	byID    map[types.Hash]*deferred // of waiting
	// expiredIDs: a block copy of one of these is not deferred again, so
	// no key is both deleted and written.
	expiredIDs map[types.Hash]bool
}

func readCount(ctx context.Context, parent StateView) (uint64, error) {
	v, err := parent.Get(ctx, types.StateKey{Module: DeferredModule, Key: deferCountKey})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrState, err)
	}
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: count of %d bytes", ErrDeferredCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// loadDeferred reads the expired entries and those of the block's senders.
func loadDeferred(ctx context.Context, parent StateView, b *types.Block, txs []*types.Tx, lim DeferLimits) (deferSet, error) {
	ds := deferSet{byID: map[types.Hash]*deferred{}, expiredIDs: map[types.Hash]bool{}}
	gone := map[string]bool{}
	err := parent.Iterate(ctx, DeferredModule, []byte{deferExpiryTag}, func(k, _ []byte) error {
		if len(k) != 1+8+deferKeyLen-1 {
			return fmt.Errorf("%w: expiry key of %d bytes", ErrDeferredCorrupt, len(k))
		}
		if int64(binary.BigEndian.Uint64(k[1:])^(1<<63)) >= b.Time {
			return errStopIteration
		}
		ek := append([]byte{deferEntryTag}, k[9:]...)
		d, err := loadEntry(ctx, parent, ek, lim)
		if err != nil {
			return err
		}
		ds.expired = append(ds.expired, d)
		ds.expiredIDs[d.id()] = true
		gone[string(ek)] = true
		return nil
	})
	if err != nil && !errors.Is(err, errStopIteration) {
		return ds, stateErr(err)
	}
	senders := make([]types.Address, 0, len(txs))
	for _, tx := range txs {
		senders = append(senders, tx.SenderAddress())
	}
	slices.SortFunc(senders, func(a, b types.Address) int { return bytes.Compare(a[:], b[:]) })
	for _, s := range slices.Compact(senders) {
		err := parent.Iterate(ctx, DeferredModule, append([]byte{deferEntryTag}, s[:]...), func(k, v []byte) error {
			if gone[string(k)] {
				return nil
			}
			d, err := decodeEntry(k, v, lim)
			if err != nil {
				return err
			}
			ds.waiting = append(ds.waiting, d)
			ds.byID[d.id()] = d
			return nil
		})
		if err != nil {
			return ds, stateErr(err)
		}
	}
	return ds, nil
}

func stateErr(err error) error {
	if errors.Is(err, ErrDeferredCorrupt) {
		return err
	}
	return fmt.Errorf("%w: deferred set: %w", ErrState, err)
}

func loadEntry(ctx context.Context, parent StateView, k []byte, lim DeferLimits) (*deferred, error) {
	v, err := parent.Get(ctx, types.StateKey{Module: DeferredModule, Key: k})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: expiry without entry %x", ErrDeferredCorrupt, k)
	}
	return decodeEntry(k, v, lim)
}

// decodeEntry decodes the entry under k and checks it against its key.
func decodeEntry(k, v []byte, lim DeferLimits) (*deferred, error) {
	d := &deferred{}
	if len(k) != deferKeyLen {
		return nil, fmt.Errorf("%w: entry key of %d bytes", ErrDeferredCorrupt, len(k))
	}
	if err := types.Decode(v, &d.entry); err != nil {
		return nil, fmt.Errorf("%w: entry %x: %w", ErrDeferredCorrupt, k, err)
	}
	var tx types.Tx
	if err := types.Decode(d.entry.Raw, &tx); err != nil {
		return nil, fmt.Errorf("%w: entry %x: %w", ErrDeferredCorrupt, k, err)
	}
	d.tx, d.sender = &tx, tx.SenderAddress()
	if !bytes.Equal(k, deferEntryKey(d.sender, tx.Body.Nonce, tx.ID())) {
		return nil, fmt.Errorf("%w: entry %x holds another transaction", ErrDeferredCorrupt, k)
	}
	d.expiry = deferExpiry(&tx, d.entry.TS, lim)
	return d, nil
}

// finalNonces returns the account nonce after the block of the senders:
// its write in the block (writes are sorted by module and key), else its
// parent value.
func finalNonces(ctx context.Context, parent StateView, writes []state.Write, senders map[int]types.Address) (map[types.Address]uint64, error) {
	out := make(map[types.Address]uint64, len(senders))
	for _, s := range senders {
		if _, ok := out[s]; ok {
			continue
		}
		v, err := accountAfter(ctx, parent, writes, s)
		if err != nil {
			return nil, err
		}
		n, err := decodeNonce(v)
		if err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, nil
}

func accountAfter(ctx context.Context, parent StateView, writes []state.Write, s types.Address) ([]byte, error) {
	k := AccountKey(s)
	if i, ok := slices.BinarySearchFunc(writes, k, func(w state.Write, k types.StateKey) int { return w.Key.Compare(k) }); ok {
		return writes[i].Value, nil
	}
	v, err := parent.Get(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return v, nil
}

// mergeWrites returns a and b (each with distinct keys, a sorted; b's keys
// absent from a) as one slice sorted by (module, key), as state.Commit and
// BlockResult.Writes want.
func mergeWrites(a, b []state.Write) []state.Write {
	out := append(slices.Clip(a), b...)
	slices.SortFunc(out, func(x, y state.Write) int { return x.Key.Compare(y.Key) })
	return out
}
