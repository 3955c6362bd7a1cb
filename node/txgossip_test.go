package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/node/mempool"
	"github.com/kairos-network/kairos/p2p"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// TestTxBatcherTake: batches are prefixes of the queue in order, within
// the count and byte limits, and a payload larger than the byte limit
// travels alone.
func TestTxBatcherTake(t *testing.T) {
	const big = MaxGossipBatchBytes
	cases := []struct {
		name  string
		sizes []int
		want  [][]int // sizes of each batch taken
	}{
		{"one", []int{10}, [][]int{{10}}},
		{"count limit", repeat(100, MaxGossipBatchTxs+3), [][]int{repeat(100, MaxGossipBatchTxs), repeat(100, 3)}},
		{"byte limit", []int{big / 2, big / 2, 1, 5}, [][]int{{big / 2, big / 2}, {1, 5}}},
		{"large alone", []int{7, 3 * big, 9}, [][]int{{7}, {3 * big}, {9}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newTxBatcher()
			for i, s := range c.sizes {
				b.add(bytes.Repeat([]byte{byte(i)}, s))
			}
			if !b.full() && len(c.want) > 1 {
				t.Fatal("not full with more than one batch queued")
			}
			next := 0
			for k, want := range c.want {
				batch, more := b.take()
				if len(batch) != len(want) || more != (k < len(c.want)-1) {
					t.Fatalf("batch %d: %d payloads (more %v), want %d (more %v)", k, len(batch), more, len(want), k < len(c.want)-1)
				}
				for i, raw := range batch {
					if len(raw) != want[i] || raw[0] != byte(next) {
						t.Fatalf("batch %d payload %d: %d bytes of payload %d, want %d bytes of %d", k, i, len(raw), raw[0], want[i], next)
					}
					next++
				}
			}
			if batch, more := b.take(); len(batch) != 0 || more || b.bytes != 0 {
				t.Fatalf("after the last batch: %d payloads, more %v, %d bytes", len(batch), more, b.bytes)
			}
		})
	}
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// gossipNode is a node with what validateTxs touches: a pool on pebble and
// the inbox it reports new transactions to.
func gossipNode(t *testing.T) *Node {
	t.Helper()
	s, err := state.OpenPebble(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	comm := testCommittee(t, 4)
	n := &Node{d: s.Datastore(), clock: SystemClock{}, lat: newLatency(), log: slog.New(slog.DiscardHandler), executed: newExecutedIndex(),
		inbox: make(chan input, MaxInbox), peers: []peer.ID{"self", "peer"}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	t.Cleanup(n.cancel)
	if n.pool, err = mempool.Open(n.ctx, n.d, mempool.Config{ChainID: comm.ChainID}, n.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestValidateTxBatch: a gossiped batch is accepted when every transaction
// is valid, ignored when one is refused for a local reason, rejected when
// one breaks a rule or the batch itself is bad; every valid transaction is
// held and reported to consensus once, whatever the verdict.
func TestValidateTxBatch(t *testing.T) {
	n := gossipNode(t)
	badSig := func(raw []byte) []byte {
		var tx types.Tx
		if err := types.Decode(raw, &tx); err != nil {
			t.Fatal(err)
		}
		tx.Sig[1] ^= 1
		return types.MustEncode(&tx)
	}
	enc := func(raws ...[]byte) []byte { return types.MustEncode(&txBatch{Raw: raws}) }
	tx1 := counterTx(1, "a") // counterTx stamps ValidUntil from the clock: build once to repeat
	tooMany := make([][]byte, MaxGossipBatchTxs+1)
	for i := range tooMany {
		tooMany[i] = counterTx(1000+i, "k")
	}
	cases := []struct {
		name     string
		from     peer.ID
		data     []byte
		want     error // nil, p2p.ErrIgnore or the sentinel of a rejection
		newHeld  int
		isIgnore bool
	}{
		{"valid", "peer", enc(tx1, counterTx(2, "a"), counterTx(3, "b")), nil, 3, false},
		{"repeated", "peer", enc(tx1, counterTx(4, "b")), nil, 1, false},
		{"bad signature", "peer", enc(counterTx(5, "a"), badSig(counterTx(6, "a")), counterTx(7, "a")), types.ErrTxSignature, 2, false},
		{"expired", "peer", enc(counterTx(8, "a"), expiredTx(t)), types.ErrTxExpired, 1, true},
		{"not a batch", "peer", []byte{0x01}, ErrTxBatch, 0, false},
		{"empty", "peer", enc(), ErrTxBatch, 0, false},
		{"too many", "peer", enc(tooMany...), ErrTxBatch, 0, false},
		{"own", "self", enc(counterTx(9, "a")), nil, 0, false},
	}
	held := 0
	for _, c := range cases {
		err := n.validateTxs(context.Background(), c.from, c.data)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) || errors.Is(err, p2p.ErrIgnore) != c.isIgnore {
			t.Fatalf("%s: %v, want %v (ignore %v)", c.name, err, c.want, c.isIgnore)
		}
		held += c.newHeld
		if got, _ := n.pool.Len(); got != held || len(n.inbox) != held {
			t.Fatalf("%s: %d held, %d reported to consensus, want %d", c.name, got, len(n.inbox), held)
		}
	}
}

func expiredTx(t *testing.T) []byte {
	var tx types.Tx
	if err := types.Decode(counterTx(99, "a"), &tx); err != nil {
		t.Fatal(err)
	}
	tx.Body.ValidUntil = 1
	return types.MustEncode(types.SignTx(tx.Body, validatorKey(3)))
}

// TestCertDecodedOnce: a certificate message arriving twice (direct and
// gossip) is decoded once and both copies reach the driver; other kinds
// are decoded each time; the cache stays bounded.
func TestCertDecodedOnce(t *testing.T) {
	n := gossipNode(t)
	n.index = map[peer.ID]uint32{"peer": 1}
	cert := consensus.EncodeMessage(&consensus.Message{Cert: &consensus.Certificate{Header: consensus.Header{Round: 3, Author: 1}}})
	vote := consensus.EncodeMessage(&consensus.Message{Vote: &consensus.Vote{Round: 3, Author: 2, Voter: 1}})
	for _, data := range [][]byte{cert, cert, vote, vote} {
		n.onMessage("peer", data)
	}
	n.onMessage("stranger", cert)
	var msgs []*consensus.Message
	for len(n.inbox) > 0 {
		msgs = append(msgs, (<-n.inbox)(0).(consensus.MsgIn).Msg)
	}
	if len(msgs) != 4 {
		t.Fatalf("%d inputs for 4 messages from a validator", len(msgs))
	}
	if msgs[0] != msgs[1] || msgs[0].Cert == nil || msgs[2] == msgs[3] || msgs[2].Vote == nil {
		t.Fatal("certificate decoded twice, or another kind shared")
	}
	for i := range 3 * MaxDecodedCerts {
		n.decoded.put([32]byte{byte(i), byte(i >> 8)}, msgs[0])
	}
	if size := len(n.decoded.cur) + len(n.decoded.old); size > MaxDecodedCerts {
		t.Fatalf("%d certificates remembered, limit %d", size, MaxDecodedCerts)
	}
}

// TestTxBatcherFlush: flush marks the queued payloads due at once (the
// publisher sends them before an own header), and only when some wait.
func TestTxBatcherFlush(t *testing.T) {
	b := newTxBatcher()
	b.flush()
	if b.full() || len(b.kick) != 0 {
		t.Fatal("flush of an empty batcher asked for a send")
	}
	b.add([]byte{1})
	<-b.kick // the batch started
	if b.full() {
		t.Fatal("one payload due before its delay")
	}
	b.flush()
	if !b.full() || len(b.kick) != 1 {
		t.Fatal("flush did not make the batch due and wake the publisher")
	}
	b.flush() // again before the publisher took the batch: still due
	if !b.full() {
		t.Fatal("a second flush made the batch wait again")
	}
	if batch, more := b.take(); len(batch) != 1 || more || b.full() {
		t.Fatalf("take after flush: %d payloads, more %v, still due %v", len(batch), more, b.full())
	}
}
