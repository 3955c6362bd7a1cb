package consensus

import (
	"fmt"

	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// Event is an input to Core.Step. Every event carries Now, the node's local
// clock reading (unix ns) when the driver delivers it; the core never reads
// a clock itself.
type Event interface{ now() int64 }

// Start is the first event after New: the core replays its persisted
// records, then asks for what it needs to resume (its own highest signed
// round after an empty disk, certificates above its highest round after a
// restart).
type Start struct{ Now int64 }

// MsgIn is a message received from peer From (already decoded by
// DecodeMessage; signatures are checked by the core).
type MsgIn struct {
	Now  int64
	From uint32
	Msg  *Message
}

// Tick is a timer firing (the driver keeps the latest SetTimer only).
type Tick struct{ Now int64 }

// TxSeen reports that the node holds a valid transaction's payload for the
// first time (from a client, gossip or a fetch).
type TxSeen struct {
	Now int64
	ID  TxID
}

// FetchResult answers a Fetch action, completely or in part. Certificates
// are self-verifying, so they may come from any peer.
type FetchResult struct {
	Now   int64
	Certs []*Certificate
	Txs   []TxID
	// Executed are payloads the node holds and has already executed (a
	// replayed core asks for them, and so does a peer's header that acks
	// one again after the orderer forgot it was released). They count as
	// held, so a header naming them gets a vote, but they are never acked:
	// honest validators alone cannot then gather a quorum of acks for an
	// executed transaction and release it twice.
	Executed []TxID
	// OwnRound answers Fetch.OwnRound: the highest round at which peers
	// (>= Q of them in production) hold a header or vote signed by this node.
	OwnRound    uint64
	HasOwnRound bool
}

func (e Start) now() int64       { return e.Now }
func (e MsgIn) now() int64       { return e.Now }
func (e Tick) now() int64        { return e.Now }
func (e TxSeen) now() int64      { return e.Now }
func (e FetchResult) now() int64 { return e.Now }

// Action is an output of Core.Step. The driver performs actions in order: a
// Persist completes (synced if Sync) before any later Send or Broadcast.
type Action interface{ isAction() }

// Send sends a message to one validator.
type Send struct {
	To  uint32
	Msg *Message
}

// Broadcast sends a message to every other validator.
type Broadcast struct{ Msg *Message }

// Persist appends a record to the node's log. Sync records (own headers and
// votes) must be durable before the sends that follow; certificates may be
// lost in a crash (they are fetched again).
type Persist struct {
	Rec  Record
	Sync bool
}

// SetTimer asks for a Tick when the local clock reaches At; it replaces any
// earlier timer.
type SetTimer struct{ At int64 }

// Fetch asks the driver to obtain certificates (by digest, or every one from
// FromRound up when FromRound > 0), transaction payloads, or the node's own
// highest signed round, from peers.
type Fetch struct {
	Digests   []Digest
	FromRound uint64
	Txs       []TxID
	OwnRound  bool
}

// Committed reports one committed sub-DAG: the anchor and its not yet
// committed causal history sorted by (round, author). Index counts
// sub-DAGs from 1. The certificates are shared: do not modify them.
type Committed struct {
	Index  uint64
	Anchor Digest
	Certs  []*Certificate
}

// Released reports a block of the fair-ordering layer, with the ordering
// state right after it (the driver hashes it into the block's checkpoint
// vote and persists it when it compacts its log). Both are the receiver's.
type Released struct {
	Block *order.Block
	State *OrderingState
}

func (Send) isAction()      {}
func (Broadcast) isAction() {}
func (Persist) isAction()   {}
func (SetTimer) isAction()  {}
func (Fetch) isAction()     {}
func (Committed) isAction() {}
func (Released) isAction()  {}

// Record is one entry of a node's persisted log; exactly one field is set.
type Record struct {
	_    struct{} `cbor:",toarray"`
	Cert *Certificate
	Vote *VoteRecord
	Own  *Header
}

// VoteRecord remembers that this node voted for Digest as the header of
// (Author, Round), so that it never votes for another one.
type VoteRecord struct {
	_      struct{} `cbor:",toarray"`
	Author uint32
	Round  uint64
	Digest Digest
}

// EncodeRecord returns the canonical bytes of a persisted record.
func EncodeRecord(r *Record) []byte { return types.MustEncode(r) }

// DecodeRecord decodes one persisted record; exactly one field must be set.
func DecodeRecord(b []byte) (*Record, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrTooLarge, len(b))
	}
	var r Record
	if err := types.Decode(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	set := 0
	for _, p := range []bool{r.Cert != nil, r.Vote != nil, r.Own != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: record with %d entries", ErrMalformed, set)
	}
	return &r, nil
}
