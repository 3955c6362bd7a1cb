package sim

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
)

// hashScheme is the simulation's signature scheme: sig = sha256(secret ‖
// msg), verified by a table from public key (sha256(secret)) to secret.
// Nobody in the simulation signs with a key it does not own, so accepting
// and rejecting behave as with ed25519 for every message that occurs.
type hashScheme map[string][]byte

type hashSigner []byte

func (k hashSigner) Sign(msg []byte) []byte {
	d := sha256.Sum256(append(append([]byte(nil), k...), msg...))
	return d[:]
}

func (h hashScheme) Verify(pub, msg, sig []byte) bool {
	secret, ok := h[string(pub)]
	return ok && bytes.Equal(hashSigner(secret).Sign(msg), sig)
}

// checkSigned records what validators signed, as delivered to a peer (a
// signature that reached no one cannot be used): S3 (no equivocation of
// headers or votes by honest validators, also across restarts and wipes)
// and S4 (one certificate per author and round among all certificates).
func (s *sim) checkSigned(from uint32, m *consensus.Message) {
	switch {
	case m.Cert != nil:
		h := &m.Cert.Header
		d := s.comm.Digest(h)
		k := [2]uint64{uint64(h.Author), h.Round}
		if old, ok := s.certs[k]; ok && old != d {
			s.violate("S4: two certificates for author %d round %d", h.Author, h.Round)
		}
		s.certs[k] = d
	case !s.signsHonestly(from):
	case m.Header != nil:
		h := m.Header
		d := s.comm.Digest(h)
		k := [2]uint64{uint64(h.Author), h.Round}
		if old, ok := s.headers[k]; ok && old != d {
			s.violate("S3: honest validator %d signed two headers for round %d", h.Author, h.Round)
		}
		s.headers[k] = d
	case m.Vote != nil:
		v := m.Vote
		k := [3]uint64{uint64(v.Voter), uint64(v.Author), v.Round}
		if old, ok := s.votes[k]; ok && old != v.HeaderDigest {
			s.violate("S3: honest validator %d voted twice for author %d round %d", v.Voter, v.Author, v.Round)
		}
		s.votes[k] = v.HeaderDigest
	}
}

// signsHonestly: the faulty validator runs honest code when its only fault
// is a wiped disk, and then it must not equivocate either (the amnesia
// guard).
func (s *sim) signsHonestly(v uint32) bool { return int(v) != s.faulty || len(s.byz) == 0 }

func (s *sim) onCommitted(sl *slot, c consensus.Committed) {
	if !s.honest(sl) {
		return
	}
	// A sub-DAG is named by its anchor and the digests of its certificates
	// in order: a core that committed a certificate twice (say, restored
	// without its committed set) would emit the same blocks, since the
	// ordering layer ignores acks of released ids, but not the same
	// sub-DAGs.
	h := sha256.New()
	h.Write(c.Anchor[:])
	for _, cert := range c.Certs {
		d := s.comm.Digest(&cert.Header)
		h.Write(d[:])
	}
	var sub consensus.Digest
	h.Sum(sub[:0])
	sl.subs = append(sl.subs, sub)
	i := len(sl.subs) - 1
	if uint64(len(sl.subs)) != c.Index {
		s.violate("S1: validator %d sub-DAG index %d after %d", sl.idx, c.Index, i)
	}
	if i < len(s.refSubs) {
		if s.refSubs[i] != sub {
			s.violate("S1: validator %d sub-DAG %d (anchor %x) differs from the others'", sl.idx, c.Index, c.Anchor[:4])
		}
	} else {
		s.refSubs = append(s.refSubs, sub)
		s.note("commit %d anchor %x (%d certs) by %d", c.Index, c.Anchor[:4], len(c.Certs), sl.idx)
	}
	s.res.Commits = max(s.res.Commits, c.Index)
	for _, cert := range c.Certs {
		h := &cert.Header
		// A Byzantine author (a twin) may chain its certificates as it
		// likes; the clamp is what keeps its acks harmless.
		if last, ok := sl.authorRound[h.Author]; ok && h.Round <= last && s.signsHonestly(h.Author) {
			s.violate("order: validator %d commits %d's round %d after its round %d", sl.idx, h.Author, h.Round, last)
		}
		sl.authorRound[h.Author] = h.Round
		if int(h.Author) == s.faulty {
			continue
		}
		for _, a := range h.Acks {
			r, ok := s.honestAck[a.TxID]
			if !ok {
				r = [2]int64{a.TRecv, a.TRecv}
			}
			s.honestAck[a.TxID] = [2]int64{min(r[0], a.TRecv), max(r[1], a.TRecv)}
		}
	}
}

func (s *sim) onReleased(sl *slot, b *order.Block) {
	if !s.honest(sl) {
		return
	}
	sl.blocks = append(sl.blocks, b)
	id := b.ID()
	h := int(b.Height) - 1
	if h != len(sl.blocks)-1 {
		s.violate("S1: validator %d block height %d after %d blocks", sl.idx, b.Height, len(sl.blocks)-1)
	}
	first := h >= len(s.refBlocks)
	if first {
		s.refBlocks = append(s.refBlocks, id)
	} else if s.refBlocks[h] != id {
		s.violate("S1: validator %d block %d is %x, others %x", sl.idx, b.Height, id[:4], s.refBlocks[h][:4])
	}
	s.execute(sl, b)
	if s.cfg.Restore {
		s.checkOrderingState(sl, h)
	}
	if b.Watermark < sl.lastB {
		s.violate("S7: validator %d watermark %d < %d", sl.idx, b.Watermark, sl.lastB)
	}
	sl.lastB = b.Watermark
	for _, tx := range b.Txs {
		if sl.log[tx.ID] {
			s.violate("S5: validator %d released %x twice", sl.idx, tx.ID[:4])
		}
		sl.log[tx.ID] = true
		if sl.lastTx != nil && !order.Less(*sl.lastTx, tx) {
			s.violate("S6: validator %d log not increasing at %x", sl.idx, tx.ID[:4])
		}
		t := tx
		sl.lastTx = &t
		r, ok := s.honestAck[tx.ID]
		if !ok || tx.TS < r[0] || tx.TS > r[1] {
			s.violate("S8: validator %d ts %d of %x outside honest acks %v", sl.idx, tx.TS, tx.ID[:4], r)
		}
		if first {
			// S9: a tx whose every committed honest ack precedes every
			// honest ack of an already released tx cannot come after it.
			if r[1] < s.maxMinAck {
				s.violate("S9: %x released after a tx all of whose honest acks are later", tx.ID[:4])
			}
			s.maxMinAck = max(s.maxMinAck, r[0])
			if i, ok := s.txIndex[tx.ID]; ok && !s.txs[i].released {
				s.txs[i].released = true
				s.res.Released++
				s.res.Latencies = append(s.res.Latencies, s.now-s.txs[i].submitted)
			}
		}
	}
}

// checkOrderingState checks that every honest node exports the same
// ordering state after block h+1: it is what checkpoint votes sign, and a
// node restored from another's state continues from it.
func (s *sim) checkOrderingState(sl *slot, h int) {
	if sl.state == nil || sl.state.Height != uint64(h+1) {
		s.violate("S1: validator %d released block %d without its ordering state", sl.idx, h+1)
		return
	}
	d := sl.state.Hash()
	switch {
	case h == len(s.refOrder):
		s.refOrder = append(s.refOrder, d)
	case h > len(s.refOrder):
		// A synced node ahead of the checker's record cannot happen: it
		// restored from a state some honest node released.
		s.violate("S1: validator %d ordering state %d before %d", sl.idx, h+1, len(s.refOrder))
	case s.refOrder[h] != d:
		s.violate("S1: validator %d ordering state after block %d is %x, others %x", sl.idx, h+1, d[:4], s.refOrder[h][:4])
	}
}

// finish runs the liveness checks (L1-L4) once the calm period is over
// and settle has let lagging honest nodes catch up.
func (s *sim) finish() {
	for _, sl := range s.slots {
		if sl.core == nil {
			continue
		}
		if s.honest(sl) {
			s.res.Rounds = max(s.res.Rounds, sl.core.Round())
		}
		if sl.up {
			sl.verifies += sl.core.Stats().Verifies
		}
		s.res.Verifies += sl.verifies
		if s.honest(sl) {
			s.res.LeaderWaits += sl.core.Stats().LeaderWaits
		}
		if s.honest(sl) && sl.core.Stats().Conflicts > 0 {
			s.violate("S4: validator %d saw %d conflicting certificates", sl.idx, sl.core.Stats().Conflicts)
		}
	}
	if s.cfg.CalmTime < 2*Second {
		return // too short to demand liveness
	}
	for _, sl := range s.slots {
		if !s.honest(sl) {
			continue
		}
		// Judged against the end's highest values after settle gave a
		// lagging node a bounded time to catch up; nodes that went on
		// committing meanwhile are not a target moving away.
		grace := settleResends * s.comm.Params.ResendInterval / Millisecond
		if len(sl.subs) < s.l3Subs {
			s.violate("L3: validator %d committed %d sub-DAGs, others %d at the end and %d ms later", sl.idx, len(sl.subs), s.l3Subs, grace)
		}
		if len(sl.blocks) < s.l3Height {
			s.violate("L3: validator %d at height %d, others %d at the end and %d ms later", sl.idx, len(sl.blocks), s.l3Height, grace)
		}
		p := s.comm.Params
		bounds := map[string]int{"dag": s.n*(int(p.GCDepth)+2*64) + 1, "pending": p.MaxPending, "missing": p.MaxPending,
			"waiting": s.n * 64, "voted": s.n * (int(p.GCDepth) + 2*64)}
		for k, v := range sl.core.Sizes() {
			if b, ok := bounds[k]; ok && v > b {
				s.violate("L4: validator %d %s holds %d > %d", sl.idx, k, v, b)
			}
		}
	}
	if s.calmCommits() < 3 {
		s.violate("L1: only %d sub-DAGs committed after the faults stopped", s.calmCommits())
	}
	for i := range s.txs {
		if len(s.txs[i].seenBy) > 0 {
			s.res.Seen++
		}
	}
	for i := range s.txs {
		tx := &s.txs[i]
		if len(tx.seenBy) > 0 && !tx.released {
			s.violate("L2: tx %d (%x) seen by honest %v not released", i, tx.id[:4], keys(tx.seenBy))
			break
		}
	}
}

func (s *sim) calmCommits() int { return len(s.refSubs) - s.calmSubs }

func keys(m map[uint32]bool) []uint32 {
	var out []uint32
	for k := uint32(0); k < 64; k++ {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}

// String renders the result as one line.
func (r *Result) String() string {
	return fmt.Sprintf("seed %d: commits %d rounds %d txs %d/%d msgs %d verifies %d leader-waits %d violations %d",
		r.Seed, r.Commits, r.Rounds, r.Released, r.Submitted, r.Messages, r.Verifies, r.LeaderWaits, len(r.Violations))
}

// execute runs an honest validator's block through the executor, once per
// height of its state, and checks S2 against the first root seen at that
// height.
func (s *sim) execute(sl *slot, b *order.Block) {
	if s.cfg.Executor == nil || b.Height <= sl.executed {
		return // a restarted core re-emits blocks its state already holds
	}
	if b.Height != sl.executed+1 {
		s.violate("S2: validator %d state at height %d given block %d", sl.idx, sl.executed, b.Height)
		return
	}
	root, err := s.cfg.Executor.Execute(int(sl.idx), b)
	if err != nil {
		s.violate("S2: validator %d block %d: %v", sl.idx, b.Height, err)
		return
	}
	sl.executed = b.Height
	h := int(b.Height) - 1
	if h >= len(s.refRoots) {
		s.refRoots = append(s.refRoots, root)
		s.res.Executed = len(s.refRoots)
	} else if s.refRoots[h] != root {
		s.violate("S2: validator %d root %x at height %d, others %x", sl.idx, root[:4], b.Height, s.refRoots[h][:4])
	}
}
