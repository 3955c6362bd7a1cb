package node

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// stageCounts gathers c and returns the observation count of each
// kairos_tx_stage_seconds stage and of the driver's histograms by name.
func stageCounts(t *testing.T, cs ...prometheus.Collector) map[string]uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name = l.GetValue()
			}
			out[name] += h.GetSampleCount()
		}
	}
	return out
}

// TestLatencyStages walks two transactions through every stage by hand:
// each stage is observed once per transaction that reached it, a
// transaction acked only by another validator gets no own-header stages,
// an executed transaction is forgotten, and a peer's header is timed from
// its first arrival to the vote.
func TestLatencyStages(t *testing.T) {
	l := newLatency()
	a, b := consensus.TxID{1}, consensus.TxID{2}
	l.pooled(a, l.now())
	l.pooled(b, l.now())
	l.pooled(a, l.now()) // already tracked: not observed again
	l.ownHeader(&consensus.Header{Round: 3, Author: 0, Acks: []consensus.Ack{{TxID: a}}})
	l.ownCert(3)
	l.ownCert(4) // no own header of round 4: ignored
	l.committed(0, []*consensus.Certificate{{Header: consensus.Header{Round: 3, Author: 1}}, {Header: consensus.Header{Round: 3, Author: 0}}})
	l.released(&order.Block{Txs: []order.Tx{{ID: a}, {ID: b}}})
	l.executed([]types.Hash{types.Hash(a), types.Hash(b), {9}})
	l.header(&consensus.Header{Round: 3, Author: 2, Time: 1}, 2)
	l.header(&consensus.Header{Round: 3, Author: 2, Time: 1}, 3) // a re-sent header: the first arrival counts
	l.voted(&consensus.Vote{Round: 3, Author: 2})
	l.voted(&consensus.Vote{Round: 3, Author: 1}) // no header seen: not observed
	got := stageCounts(t, l.collectors()...)
	want := map[string]uint64{StagePool: 2, StageAck: 1, StageCert: 1, StageCommit: 1, StageRelease: 1, StageExecute: 2, StageTotal: 2,
		"kairos_vote_wait_seconds": 1, "kairos_header_transit_seconds": 1, "kairos_round_seconds": 0}
	for _, s := range append(Stages, "kairos_vote_wait_seconds", "kairos_header_transit_seconds", "kairos_round_seconds") {
		if got[s] != want[s] {
			t.Errorf("stage %s: %d observations, want %d", s, got[s], want[s])
		}
	}
	if len(l.cur)+len(l.old) != 0 || len(l.headers) != 0 || len(l.certs) != 0 || len(l.headerIn) != 0 {
		t.Errorf("finished entries kept: %d %d %d %d %d", len(l.cur), len(l.old), len(l.headers), len(l.certs), len(l.headerIn))
	}
}

// TestLatencyRound: the round histogram observes the gaps between own
// headers, none before the second.
func TestLatencyRound(t *testing.T) {
	l := newLatency()
	for r := range uint64(3) {
		l.ownHeader(&consensus.Header{Round: r + 1})
		l.ownCert(r + 1)
		if got, want := stageCounts(t, l.collectors()...)["kairos_round_seconds"], r; got != want {
			t.Fatalf("after %d own headers: %d rounds observed, want %d", r+1, got, want)
		}
	}
}

// TestLatencyBounded: transactions that never execute and own headers
// that never certify are forgotten within the named limits.
func TestLatencyBounded(t *testing.T) {
	l := newLatency()
	for i := range 2 * MaxTrackedTxs {
		l.pooled(consensus.TxID{byte(i), byte(i >> 8), byte(i >> 16)}, l.now())
		if n := len(l.cur) + len(l.old); n > MaxTrackedTxs {
			t.Fatalf("after %d transactions %d tracked > %d", i+1, n, MaxTrackedTxs)
		}
	}
	for r := range uint64(3 * maxOwnRounds) {
		l.header(&consensus.Header{Round: r, Author: 1}, 0)
		if r%2 == 0 {
			l.voted(&consensus.Vote{Round: r, Author: 1})
		}
		l.ownHeader(&consensus.Header{Round: r})
		if r%2 == 0 {
			l.ownCert(r)
		}
		if len(l.headers) > maxOwnRounds || len(l.certs) > maxOwnRounds || len(l.headerIn) > maxOwnRounds {
			t.Fatalf("round %d: %d own headers, %d certificates, %d peers' headers kept", r, len(l.headers), len(l.certs), len(l.headerIn))
		}
	}
}

// TestClusterLatencyHistograms: in a running 4-validator cluster every
// stage histogram, the driver's commit time and its inbox get observations,
// and no node observes more total latencies than transactions it executed.
func TestClusterLatencyHistograms(t *testing.T) {
	c := newCluster(t, 4)
	ids := c.submit(0, 16)
	c.waitFor("all nodes execute", 60*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !c.executedAll(nd, ids) {
				return false
			}
		}
		return true
	})
	sum := map[string]uint64{}
	for i, nd := range c.nodes {
		got := stageCounts(t, nd.Collector())
		if got[StageTotal] > uint64(len(ids)) {
			t.Errorf("node %d: %d total latencies for %d transactions", i, got[StageTotal], len(ids))
		}
		for k, v := range got {
			sum[k] += v
		}
	}
	for _, name := range append(Stages, "kairos_driver_commit_seconds", "kairos_driver_inbox_wait_seconds", "kairos_driver_inbox_depth", "kairos_vote_wait_seconds") {
		if sum[name] == 0 {
			t.Errorf("%s: no observations on any node (%v)", name, sum)
		}
	}
}

// BenchmarkLatencyTrack is the tracker's cost per transaction at a full
// tracker: 5 000 transactions pooled, acked in one own header, certified,
// committed, released and executed, per iteration (ns/op ÷ 5 000 is the
// cost per transaction).
func BenchmarkLatencyTrack(b *testing.B) {
	const perRound = 5000
	l := newLatency()
	ids := make([]types.Hash, perRound)
	acks := make([]consensus.Ack, perRound)
	txs := make([]order.Tx, perRound)
	// Fill the tracker with transactions that never finish, as a node
	// holds those acked by others.
	for i := range MaxTrackedTxs {
		l.pooled(consensus.TxID(benchID(uint64(i))), 1)
	}
	b.ReportAllocs()
	round := uint64(0)
	for b.Loop() {
		round++
		for i := range ids {
			ids[i] = benchID(round<<32 | uint64(i) | 1<<31)
			acks[i] = consensus.Ack{TxID: consensus.TxID(ids[i])}
			txs[i] = order.Tx{ID: consensus.TxID(ids[i])}
			l.pooled(acks[i].TxID, l.now())
		}
		l.ownHeader(&consensus.Header{Round: round, Acks: acks})
		l.ownCert(round)
		l.committed(0, []*consensus.Certificate{{Header: consensus.Header{Round: round}}})
		l.released(&order.Block{Txs: txs})
		l.executed(ids)
	}
}

// benchID is a distinct hash-like id for n (splitmix64 in each word).
func benchID(n uint64) (h types.Hash) {
	for w := range 4 {
		z := n*4 + uint64(w) + 0x9e3779b97f4a7c15
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(h[8*w:], z^z>>31)
	}
	return h
}
