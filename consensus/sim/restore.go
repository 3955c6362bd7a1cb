package sim

import (
	"sort"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
)

// restoreFor decides how slot i starts with Config.Restore set: after a
// crash, from its own latest ordering state with its log compacted to that
// state's gc round (what node/ does at a certified checkpoint); after a
// wipe, from the latest ordering state of the first honest running peer
// (state sync), with an empty log. It returns nil for a replay from the
// log (first start, no state yet, or an executor that cannot import a
// snapshot), and otherwise the state with the blocks and sub-DAG names
// the restored core will not re-emit.
func (s *sim) restoreFor(i int) (*consensus.OrderingState, []*order.Block, []consensus.Digest) {
	sl := s.slots[i]
	if !s.cfg.Restore || sl.restarts == 0 {
		return nil, nil, nil
	}
	if sl.state != nil && len(sl.disk) > 0 {
		st := sl.state
		s.compact(sl, st.GCRound)
		s.res.Faults["restore-compacted"]++
		s.note("restore %d from its own ordering state at height %d (gc %d, %d records kept)", i, st.Height, st.GCRound, len(sl.disk))
		return st, prefix(sl.blocks, st.Height), prefixD(sl.subs, st.SubIndex)
	}
	if len(sl.disk) > 0 || s.cfg.Executor != nil {
		return nil, nil, nil
	}
	for j, p := range s.slots {
		if j != i && p.up && s.honest(p) && p.state != nil && !p.twin {
			st := p.state
			s.res.Faults["restore-synced"]++
			s.note("restore %d from %d's ordering state at height %d (gc %d)", i, j, st.Height, st.GCRound)
			return st, prefix(p.blocks, st.Height), prefixD(p.subs, st.SubIndex)
		}
	}
	return nil, nil, nil
}

func prefix(bs []*order.Block, n uint64) []*order.Block {
	return append([]*order.Block(nil), bs[:min(uint64(len(bs)), n)]...)
}

func prefixD(ds []consensus.Digest, n uint64) []consensus.Digest {
	return append([]consensus.Digest(nil), ds[:min(uint64(len(ds)), n)]...)
}

// compact drops the log records below gc round g (node/ keeps one
// compaction interval more, for syncing peers): a restored core ignores
// them, and only the latest own header is needed below g (the next header
// is never re-created at its round).
func (s *sim) compact(sl *slot, g uint64) {
	lastOwn := -1
	for k, r := range sl.disk {
		if r.Own != nil {
			lastOwn = k
		}
	}
	kept := sl.disk[:0]
	for k, r := range sl.disk {
		switch {
		case r.Cert != nil && r.Cert.Header.Round < g,
			r.Vote != nil && r.Vote.Round < g,
			r.Own != nil && r.Own.Round < g && k != lastOwn:
			continue
		}
		kept = append(kept, r)
	}
	sl.disk = kept
	sl.synced = len(kept)
}

// resume sets the checkers' view of a restored slot: the blocks and
// sub-DAGs before the state count as its own, so S1, S5, S6 and S7 go on
// from there.
func (sl *slot) resume(blocks []*order.Block, subs []consensus.Digest) {
	sl.blocks, sl.subs = blocks, subs
	for _, b := range blocks {
		for _, tx := range b.Txs {
			sl.log[tx.ID] = true
			t := tx
			sl.lastTx = &t
		}
		sl.lastB = b.Watermark
	}
}

// logCerts answers a fetch from round from: certificates of the rounds
// below the peer core's gc round come from its log (node/ serves its
// compacted log the same way, so a synced node finds the rounds between
// its state's gc round and the peers'), the rest from the core; at most
// MaxFetchCerts in (round, author) order.
func (s *sim) logCerts(p *slot, from uint64) []*consensus.Certificate {
	var out []*consensus.Certificate
	if g := p.core.GCRound(); from < g {
		seen := map[consensus.Digest]bool{}
		for _, r := range p.disk {
			if c := r.Cert; c != nil && c.Header.Round >= from && c.Header.Round < g {
				if d := s.comm.Digest(&c.Header); !seen[d] {
					seen[d] = true
					out = append(out, c)
				}
			}
		}
		sort.SliceStable(out, func(a, b int) bool {
			ha, hb := &out[a].Header, &out[b].Header
			if ha.Round != hb.Round {
				return ha.Round < hb.Round
			}
			return ha.Author < hb.Author
		})
	}
	out = append(out, p.core.Certificates(nil, from)...)
	return out[:min(len(out), consensus.MaxFetchCerts)]
}
