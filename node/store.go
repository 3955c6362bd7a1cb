package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/types"
)

// The node's records live in the state store's datastore, under /node (the
// state uses /kairos). The mempool has its own namespace (mempool.Prefix).
const (
	nsLog   = "/node/log/"   // <seq %016x> consensus.Record, in append order
	nsBlock = "/node/block/" // <height %016x> types.Block
	nsRoot  = "/node/root/"  // <height %016x> state root after the block
	nsTx    = "/node/tx/"    // <hex id> txRecord: where an executed tx is, and its receipt
	nsCP    = "/node/cp/"    // <height %016x> consensus.CheckpointCert
)

var keyCPLatest = ds.NewKey("/node/cplatest")

// recordFormat is the format of the node's records, stored under
// keyFormat. 2: a transaction record holds its receipt (format 1, without
// a format record, kept receipts under /node/receipt). 3: the ordering
// state and its certificate are one record (/node/ostatecert is gone).
const recordFormat = 3

var keyFormat = ds.NewKey("/node/format")

// checkFormat refuses node records of another format, and stamps a store
// without node records with this one.
func checkFormat(ctx context.Context, d ds.Datastore) error {
	b, err := d.Get(ctx, keyFormat)
	switch {
	case err == nil:
		var f uint64
		if err := types.Decode(b, &f); err != nil {
			return fmt.Errorf("%w: format record: %w", ErrCorrupt, err)
		}
		if f != recordFormat {
			return fmt.Errorf("%w: format %d; this build reads format %d", ErrFormat, f, recordFormat)
		}
		return nil
	case !errors.Is(err, ds.ErrNotFound):
		return fmt.Errorf("node: read format record: %w", err)
	}
	res, err := d.Query(ctx, query.Query{Prefix: "/node/", KeysOnly: true, Limit: 1})
	if err != nil {
		return fmt.Errorf("node: read records: %w", err)
	}
	rest, err := res.Rest()
	if err != nil {
		return fmt.Errorf("node: read records: %w", err)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: records without a format record (format 1); this build reads format %d", ErrFormat, recordFormat)
	}
	return d.Put(ctx, keyFormat, types.MustEncode(uint64(recordFormat)))
}

// ErrNotFound is returned for a block, transaction or checkpoint the node
// does not have.
var ErrNotFound = errors.New("node: not found")

func heightKey(ns string, h uint64) ds.Key { return ds.NewKey(fmt.Sprintf("%s%016x", ns, h)) }

// idKey is ns followed by id's hex: a clean path already, so it skips
// NewKey's cleaning (a copy per key, and ids are looked up per request).
func idKey(ns string, id types.Hash) ds.Key { return ds.RawKey(ns + hex.EncodeToString(id[:])) }

// txRecord is an executed transaction: where it is, its body (served to
// peers that fetch it and to clients) and its receipt, nil while the
// transaction waits in the deferred set. The receipt lives in the record
// rather than under a key of its own so that a transaction costs one write
// when its block is stored, one read when a client asks for its receipt
// and one delete when it is pruned.
type txRecord struct {
	_       struct{} `cbor:",toarray"`
	Height  uint64
	Index   uint32
	Raw     []byte
	Receipt *types.Receipt
}

// scanLog calls fn for every persisted consensus record in append order,
// with its sequence number.
func scanLog(ctx context.Context, d ds.Datastore, fn func(seq uint64, rec *consensus.Record) error) error {
	res, err := d.Query(ctx, query.Query{Prefix: nsLog, Orders: []query.Order{query.OrderByKey{}}})
	if err != nil {
		return fmt.Errorf("node: read consensus log: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("node: read consensus log: %w", r.Error)
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(r.Key, nsLog), 16, 64)
		if err != nil {
			return fmt.Errorf("%w: consensus log key %s", ErrCorrupt, r.Key)
		}
		rec, err := consensus.DecodeRecord(r.Value)
		if err != nil {
			return fmt.Errorf("%w: consensus log %s: %w", ErrCorrupt, r.Key, err)
		}
		if err := fn(seq, rec); err != nil {
			return err
		}
	}
	return nil
}

// loadLog returns the persisted consensus records in append order and the
// next sequence number. Compaction leaves gaps, so the next number follows
// the last record, not the count.
func loadLog(ctx context.Context, d ds.Datastore) ([]consensus.Record, uint64, error) {
	var recs []consensus.Record
	var next uint64
	err := scanLog(ctx, d, func(seq uint64, rec *consensus.Record) error {
		recs = append(recs, *rec)
		next = seq + 1
		return nil
	})
	return recs, next, err
}

func getCBOR(ctx context.Context, d ds.Datastore, k ds.Key, v any) error {
	b, err := d.Get(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err != nil {
		return fmt.Errorf("node: read %s: %w", k, err)
	}
	if err := types.Decode(b, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, k, err)
	}
	return nil
}
