package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the node's progress, its
// p2p counters, its state store's pruner lag and node cache misses, and its
// latency histograms (latency.go). Progress and
// counters are read at scrape time; the histograms are the node's own.
func (n *Node) Collector() prometheus.Collector { return collector{n} }

type collector struct{ n *Node }

var (
	descGauge = map[string]*prometheus.Desc{
		"height":            prometheus.NewDesc("kairos_height", "Last executed block.", nil, nil),
		"round":             prometheus.NewDesc("kairos_round", "Last own consensus round.", nil, nil),
		"checkpoint_height": prometheus.NewDesc("kairos_checkpoint_height", "Highest checkpoint certificate held.", nil, nil),
		"mempool":           prometheus.NewDesc("kairos_mempool_txs", "Pending transactions.", nil, nil),
		"peers":             prometheus.NewDesc("kairos_peers", "Connected peers.", nil, nil),
		"halted":            prometheus.NewDesc("kairos_halted", "1 when the node stopped by itself (see /v1/status).", nil, nil),
	}
	descDropped   = prometheus.NewDesc("kairos_consensus_dropped_total", "Consensus messages dropped at a full inbox or outbox.", nil, nil)
	descInvalid   = prometheus.NewDesc("kairos_consensus_invalid_total", "Consensus messages rejected by the core.", nil, nil)
	descConflicts = prometheus.NewDesc("kairos_consensus_conflicts_total", "Conflicting certificates seen (equivocation).", nil, nil)
	descAnchors   = prometheus.NewDesc("kairos_consensus_anchors_total", "Anchors committed by the current core (since start or the last core replacement).", nil, nil)
	descWaits     = prometheus.NewDesc("kairos_consensus_leader_timeouts_total", "Own headers proposed only after the leader timeout (anchor or its support missing), by the current core.", nil, nil)
	descTxs       = prometheus.NewDesc("kairos_executed_txs_total", "Transactions executed since start.", nil, nil)
	descDeferred  = prometheus.NewDesc("kairos_deferred_txs_total", "Transactions deferred (nonce ahead of the sender's) since start.", nil, nil)
	descBodies    = prometheus.NewDesc("kairos_block_body_fetches_total", "Blocks whose execution had to fetch transaction bodies from peers.", nil, nil)
	descMessages  = prometheus.NewDesc("kairos_p2p_messages_total", "p2p messages by kind and outcome.", []string{"kind", "outcome"}, nil)
	descGated     = prometheus.NewDesc("kairos_p2p_gated_total", "Connections refused by the connection gater.", nil, nil)
	descQueue     = prometheus.NewDesc("kairos_p2p_gossip_queue_drops_total", "Gossip RPCs dropped at a full peer queue.", nil, nil)
	descLag       = prometheus.NewDesc("kairos_state_pruner_lag", "State versions below the kept window still awaiting pruning (held by readers or pins, or the pruner behind).", nil, nil)
	descMisses    = prometheus.NewDesc("kairos_state_node_cache_misses_total", "State node cache lookups that read the node from disk.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descGauge {
		ch <- d
	}
	for _, l := range c.n.lat.collectors() {
		l.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{descDropped, descInvalid, descConflicts, descAnchors, descWaits, descTxs, descDeferred, descBodies, descMessages, descGated, descQueue, descLag, descMisses} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.n.lat.collectors() {
		l.Collect(ch)
	}
	st := c.n.Status()
	halted := 0.0
	if st.Err != "" {
		halted = 1
	}
	for name, v := range map[string]float64{"height": float64(st.Height), "round": float64(st.Round),
		"checkpoint_height": float64(st.CheckpointHeight), "mempool": float64(st.Mempool),
		"peers": float64(st.Peers), "halted": halted} {
		ch <- prometheus.MustNewConstMetric(descGauge[name], prometheus.GaugeValue, v)
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descInvalid, prometheus.CounterValue, float64(st.Invalid))
	ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(st.Conflicts))
	ch <- prometheus.MustNewConstMetric(descAnchors, prometheus.CounterValue, float64(c.n.anchors.Load()))
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(c.n.leaderWaits.Load()))
	ch <- prometheus.MustNewConstMetric(descTxs, prometheus.CounterValue, float64(c.n.executedTxs.Load()))
	ch <- prometheus.MustNewConstMetric(descDeferred, prometheus.CounterValue, float64(c.n.deferredTxs.Load()))
	ch <- prometheus.MustNewConstMetric(descBodies, prometheus.CounterValue, float64(c.n.bodyFetches.Load()))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(c.n.store.PrunerLag()))
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(c.n.store.NodeCacheMisses()))
	m := c.n.host.Metrics()
	ch <- prometheus.MustNewConstMetric(descGated, prometheus.CounterValue, float64(m.Gated.Load()))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.CounterValue, float64(m.GossipQueueDrops.Load()))
	for _, k := range m.Snapshot() {
		for outcome, v := range map[string]uint64{"in": k.In, "out": k.Out, "dropped": k.Dropped, "rejected": k.Rejected,
			"oversize": k.Oversize, "duplicate": k.Duplicates, "throttled": k.Throttled,
			"slow_subscriber": k.SlowSubscriber, "timeout": k.Timeouts, "error": k.Errors} {
			ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(v), k.Kind, outcome)
		}
	}
}
