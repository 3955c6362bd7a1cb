package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/node/mempool"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/types"
)

// Transactions are gossiped in batches: one pubsub message carries every
// transaction this node admitted from its clients during a short interval
// (see RATIONALE.md, "Why are transactions gossiped in batches?").
const (
	// MaxGossipBatchTxs bounds the transactions of one gossiped batch,
	// sent and received.
	MaxGossipBatchTxs = 512
	// MaxGossipBatchBytes is the payload bytes at which a batch is sent
	// without waiting for its delay. A batch holds at most this many bytes
	// of payloads, or a single larger transaction (up to
	// types.DefaultTxLimits.MaxCodeTxBytes, under the topic's cap).
	MaxGossipBatchBytes = 1 << 20
	// DefaultGossipBatchDelay is how long the first transaction of a batch
	// waits for others before the batch is sent.
	DefaultGossipBatchDelay = 5 * time.Millisecond
)

// txBatch is the message of the transaction topic: canonical transaction
// encodings, each checked on its own by the receivers.
type txBatch struct {
	_   struct{} `cbor:",toarray"`
	Raw [][]byte
}

// ErrTxBatch: a gossiped transaction batch is malformed or over its limit.
var ErrTxBatch = errors.New("node: bad transaction batch")

// txBatcher collects the payloads to gossip until the publisher takes
// them. The queue needs no limit of its own: it holds only transactions
// new to the mempool, whose limits bound them, and shares their bytes.
type txBatcher struct {
	mu    sync.Mutex
	raws  [][]byte
	bytes int
	kick  chan struct{} // capacity 1: a batch started, or is full
	now   bool          // flush asked for the queued payloads to be sent
}

func newTxBatcher() *txBatcher { return &txBatcher{kick: make(chan struct{}, 1)} }

// add queues raw for the next batch.
func (b *txBatcher) add(raw []byte) {
	b.mu.Lock()
	b.raws = append(b.raws, raw)
	b.bytes += len(raw)
	wake := len(b.raws) == 1 || b.fullLocked()
	b.mu.Unlock()
	if wake {
		b.wake()
	}
}

// wake tells the sender to look at the queue; a pending kick already does.
func (b *txBatcher) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *txBatcher) fullLocked() bool {
	return b.now || len(b.raws) >= MaxGossipBatchTxs || b.bytes >= MaxGossipBatchBytes
}

// flush asks for the queued payloads to be sent without waiting for the
// rest of the batch delay.
func (b *txBatcher) flush() {
	b.mu.Lock()
	wake := len(b.raws) > 0 && !b.now
	if wake {
		b.now = true
	}
	b.mu.Unlock()
	if wake {
		b.wake()
	}
}

func (b *txBatcher) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fullLocked()
}

// take removes the next batch: the longest prefix of the queue within
// MaxGossipBatchTxs and MaxGossipBatchBytes, and at least one payload.
// more reports that payloads remain.
func (b *txBatcher) take() (batch [][]byte, more bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, size := 0, 0
	for n < len(b.raws) && n < MaxGossipBatchTxs && (n == 0 || size+len(b.raws[n]) <= MaxGossipBatchBytes) {
		size += len(b.raws[n])
		n++
	}
	batch = b.raws[:n:n]
	b.raws = append([][]byte(nil), b.raws[n:]...)
	b.bytes -= size
	b.now = false
	return batch, len(b.raws) > 0
}

// txPublisher gossips the batches: it waits for a batch to start, gives it
// the batch delay to fill (less if it fills up), and publishes it.
func (n *Node) txPublisher() {
	delay := n.cfg.GossipBatchDelay
	if delay <= 0 {
		delay = DefaultGossipBatchDelay
	}
	timer := time.NewTimer(delay)
	timer.Stop()
	b := n.txOut
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-b.kick:
		}
		if !b.full() {
			timer.Reset(delay)
			select {
			case <-n.ctx.Done():
				return
			case <-timer.C:
			case <-b.kick: // full
				timer.Stop()
			}
		}
		for more := true; more; {
			var batch [][]byte
			batch, more = b.take()
			if len(batch) == 0 {
				break
			}
			// Gossip is best effort: peers that miss it fetch by id.
			if err := n.txs.Publish(n.ctx, types.MustEncode(&txBatch{Raw: batch})); err != nil {
				n.log.Debug("publish txs", "count", len(batch), "err", err)
			}
		}
	}
}

// validateTxs is the gossip validator of transaction batches: a
// transaction enters the mempool (and consensus) here, so only batches of
// valid ones are forwarded. Refusals that depend on this node's clock or
// fullness are ignored rather than rejected, so an honest forwarder is not
// penalized for them; a batch with a transaction that breaks a rule
// everyone checks is rejected (its valid transactions are held all the
// same). This node's own batches hold transactions SubmitTx added already.
func (n *Node) validateTxs(ctx context.Context, from peer.ID, data []byte) error {
	if from == n.peers[n.me] {
		return nil
	}
	var b txBatch
	if err := types.Decode(data, &b); err != nil {
		return fmt.Errorf("%w: %w", ErrTxBatch, err)
	}
	if len(b.Raw) == 0 || len(b.Raw) > MaxGossipBatchTxs {
		return fmt.Errorf("%w: %d transactions, limit %d", ErrTxBatch, len(b.Raw), MaxGossipBatchTxs)
	}
	var local error
	for _, err := range n.addTxs(ctx, b.Raw) {
		switch {
		case err == nil:
		case isLocalRefusal(err):
			local = err
		default:
			return err
		}
	}
	if local != nil {
		return fmt.Errorf("%w: %w", p2p.ErrIgnore, local)
	}
	return nil
}

// isLocalRefusal reports whether err refuses a transaction for a reason of
// this node's (its clock, its pool's fullness) that another may not share.
func isLocalRefusal(err error) bool {
	for _, local := range []error{types.ErrTxExpired, types.ErrTxFarFuture, mempool.ErrFull,
		mempool.ErrBytesFull, mempool.ErrSenderFull} {
		if errors.Is(err, local) {
			return true
		}
	}
	return false
}

// addTxs is addTx for a batch of payloads, whose signatures are checked
// together; errs[i] is the outcome of raws[i].
func (n *Node) addTxs(ctx context.Context, raws [][]byte) (errs []error) {
	arrived := n.lat.now() // local observation for the latency histograms only
	errs = make([]error, len(raws))
	for i, a := range n.pool.AddAll(ctx, raws, n.clock.Now()) {
		errs[i] = a.Err
		if a.Err == nil && a.New {
			errs[i] = n.admit(ctx, a.Entry, arrived)
		}
	}
	return errs
}

// PoolStats returns the mempool's counters: how many payloads reached it
// (API, gossip, fetches), how many signatures it checked and how many
// payloads it held already.
func (n *Node) PoolStats() mempool.Stats { return n.pool.Stats() }
