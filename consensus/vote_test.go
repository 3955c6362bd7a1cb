package consensus

import "testing"

const t0 = int64(1_700_000_000_000_000_000)

// certFor builds a certificate signed by validators 0..Q-1.
func certFor(c *Committee, s []Signer, h Header) *Certificate {
	c.SignHeader(s[h.Author], &h)
	d := c.Digest(&h)
	cert := &Certificate{Header: h}
	for v := uint32(0); uint64(v) < c.Q(); v++ {
		cert.Signers = append(cert.Signers, v)
		cert.Sigs = append(cert.Sigs, c.SignVote(s[v], &h, d, v).Sig)
	}
	return cert
}

// readyCore returns validator 0's core, started on an empty disk at t0,
// with round-1 certificates of validators 1..3 inserted.
func readyCore(t *testing.T) (*Core, *Committee, []Signer, []*Certificate) {
	c, s := testCommittee(t, 4)
	core, err := New(Config{Committee: c, Me: 0, Signer: s[0]})
	if err != nil {
		t.Fatal(err)
	}
	core.Step(Start{Now: t0})
	core.Step(FetchResult{Now: t0, HasOwnRound: true})
	var r1 []*Certificate
	for a := uint32(1); a < 4; a++ {
		cert := certFor(c, s, Header{Round: 1, Author: a, Time: t0 + int64(a)})
		r1 = append(r1, cert)
		core.Step(MsgIn{Now: t0, From: a, Msg: &Message{Cert: cert}})
	}
	return core, c, s, r1
}

func digests(c *Committee, certs []*Certificate) []Digest {
	var ds []Digest
	for _, x := range certs {
		ds = append(ds, c.Digest(&x.Header))
	}
	return ds
}

// votes returns the votes sent by a step, and checks that every vote is
// preceded by a synced Persist of it (rule 5), in this step or an earlier
// one recorded in persisted.
func votes(t *testing.T, acts []Action, persisted map[Digest]bool) []*Vote {
	t.Helper()
	var out []*Vote
	for _, a := range acts {
		switch a := a.(type) {
		case Persist:
			if a.Rec.Vote != nil && a.Sync {
				persisted[a.Rec.Vote.Digest] = true
			}
		case Send:
			if v := a.Msg.Vote; v != nil {
				if !persisted[v.HeaderDigest] {
					t.Fatalf("vote sent before it was persisted")
				}
				out = append(out, v)
			}
		}
	}
	return out
}

func TestVotingRules(t *testing.T) {
	ms := int64(1e6)
	tx := txidN(42)
	cases := []struct {
		name    string
		mut     func(h *Header, c *Committee, r1 []*Certificate)
		now     int64
		seeTx   bool
		vote    bool
		invalid bool
	}{
		{name: "valid", seeTx: true, vote: true},
		{name: "future time waits", now: -200 * ms, seeTx: true},
		{name: "within skew votes", now: -60 * ms, seeTx: true, vote: true},
		{name: "ack not after self parent", seeTx: true, invalid: true, mut: func(h *Header, c *Committee, r1 []*Certificate) {
			h.Acks[0].TRecv = r1[0].Header.Time
		}},
		{name: "ack after header time", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, _ []*Certificate) {
			h.Acks[0].TRecv = h.Time + 1
		}},
		{name: "duplicate ack", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, _ []*Certificate) {
			h.Acks = append(h.Acks, h.Acks[0])
		}},
		{name: "payload not held", seeTx: false},
		{name: "parents below quorum", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, _ []*Certificate) {
			h.Parents = h.Parents[:2]
		}},
		{name: "duplicate parent author", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, _ []*Certificate) {
			h.Parents[2] = h.Parents[1]
		}},
		{name: "time not after self parent", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, r1 []*Certificate) {
			h.Time = r1[0].Header.Time
			h.Acks = nil
		}},
		{name: "wrong self parent", seeTx: true, invalid: true, mut: func(h *Header, c *Committee, r1 []*Certificate) {
			h.SelfParent = c.Digest(&r1[1].Header)
		}},
		{name: "missing self parent", seeTx: true, invalid: true, mut: func(h *Header, _ *Committee, _ []*Certificate) {
			h.SelfParent, h.SelfParentRound = Digest{}, 0
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, c, s, r1 := readyCore(t)
			h := Header{Round: 2, Author: 1, Time: t0 + 100*ms, SelfParent: c.Digest(&r1[0].Header), SelfParentRound: 1,
				Parents: digests(c, r1), Acks: []Ack{{TxID: tx, TRecv: t0 + 50*ms}}}
			if tc.mut != nil {
				tc.mut(&h, c, r1)
			}
			c.SignHeader(s[1], &h)
			now := h.Time + tc.now
			if tc.seeTx {
				core.Step(TxSeen{Now: now, ID: tx})
			}
			before := core.Stats().Invalid
			acts := core.Step(MsgIn{Now: now, From: 1, Msg: &Message{Header: &h}})
			got := votes(t, acts, map[Digest]bool{})
			if (len(got) == 1) != tc.vote {
				t.Fatalf("voted %d times, want vote=%v (stats %+v)", len(got), tc.vote, core.Stats())
			}
			if inv := core.Stats().Invalid > before; inv != tc.invalid {
				t.Fatalf("invalid=%v want %v (%s)", inv, tc.invalid, core.Stats().LastReject)
			}
			if tc.vote && got[0].HeaderDigest != c.Digest(&h) {
				t.Fatal("vote for another digest")
			}
		})
	}
}

// TestVoteLifecycle: delayed votes happen later, missing payloads are
// fetched, a header is voted once, an equivocating second header never.
func TestVoteLifecycle(t *testing.T) {
	ms := int64(1e6)
	core, c, s, r1 := readyCore(t)
	tx := txidN(7)
	h := Header{Round: 2, Author: 1, Time: t0 + 500*ms, SelfParent: c.Digest(&r1[0].Header), SelfParentRound: 1,
		Parents: digests(c, r1), Acks: []Ack{{TxID: tx, TRecv: t0 + 400*ms}}}
	c.SignHeader(s[1], &h)
	p := map[Digest]bool{}
	acts := core.Step(MsgIn{Now: t0 + 300*ms, From: 1, Msg: &Message{Header: &h}})
	if len(votes(t, acts, p)) != 0 {
		t.Fatal("voted on a header 200ms in the future")
	}
	var fetched bool
	acts = core.Step(Tick{Now: t0 + 450*ms})
	for _, a := range acts {
		if f, ok := a.(Fetch); ok && len(f.Txs) == 1 && f.Txs[0] == tx {
			fetched = true
		}
	}
	if !fetched || len(votes(t, acts, p)) != 0 {
		t.Fatalf("want a payload fetch and no vote, got %v", acts)
	}
	acts = core.Step(FetchResult{Now: t0 + 460*ms, Txs: []TxID{tx}})
	if v := votes(t, acts, p); len(v) != 1 {
		t.Fatalf("no vote after the payload arrived: %v", acts)
	}
	// The same header again: the same vote again (the author may have lost it).
	if v := votes(t, core.Step(MsgIn{Now: t0 + 470*ms, From: 1, Msg: &Message{Header: &h}}), p); len(v) != 1 {
		t.Fatal("no re-sent vote")
	}
	// Another header for (1, 2): never.
	h2 := h
	h2.Time++
	h2.Sig = nil
	c.SignHeader(s[1], &h2)
	if v := votes(t, core.Step(MsgIn{Now: t0 + 480*ms, From: 1, Msg: &Message{Header: &h2}}), p); len(v) != 0 {
		t.Fatal("voted for an equivocating header")
	}
	// A header with a missing parent asks for it.
	h3 := Header{Round: 2, Author: 2, Time: t0 + 480*ms, SelfParent: c.Digest(&r1[1].Header), SelfParentRound: 1,
		Parents: []Digest{c.Digest(&r1[0].Header), c.Digest(&r1[1].Header), {9}}}
	c.SignHeader(s[2], &h3)
	acts = core.Step(MsgIn{Now: t0 + 490*ms, From: 2, Msg: &Message{Header: &h3}})
	var asked bool
	for _, a := range acts {
		if f, ok := a.(Fetch); ok && len(f.Digests) == 1 && f.Digests[0] == (Digest{9}) {
			asked = true
		}
	}
	if !asked {
		t.Fatalf("missing parent not fetched: %v", acts)
	}
}

// TestExecutedPayloadsAreHeldNotAcked: a payload the node reports as
// executed lets the core vote for a header that acks it, but the core's
// own headers never ack it, while a payload seen normally is acked.
func TestExecutedPayloadsAreHeldNotAcked(t *testing.T) {
	ms := int64(1e6)
	core, c, s, r1 := readyCore(t)
	done, fresh := txidN(7), txidN(8)
	h := Header{Round: 2, Author: 1, Time: t0 + 10*ms, SelfParent: c.Digest(&r1[0].Header), SelfParentRound: 1,
		Parents: digests(c, r1), Acks: []Ack{{TxID: done, TRecv: t0 + 5*ms}}}
	c.SignHeader(s[1], &h)
	p := map[Digest]bool{}
	if v := votes(t, core.Step(MsgIn{Now: t0 + 20*ms, From: 1, Msg: &Message{Header: &h}}), p); len(v) != 0 {
		t.Fatal("voted without the payload")
	}
	if v := votes(t, core.Step(FetchResult{Now: t0 + 21*ms, Executed: []TxID{done}}), p); len(v) != 1 {
		t.Fatal("no vote once the executed payload was held")
	}
	core.Step(TxSeen{Now: t0 + 22*ms, ID: fresh})
	var own []*Header
	for now := t0 + 23*ms; now < t0+2000*ms && len(own) == 0; now += 5 * ms {
		for _, a := range core.Step(Tick{Now: now}) {
			if b, ok := a.(Broadcast); ok && b.Msg.Header != nil && b.Msg.Header.Author == 0 {
				own = append(own, b.Msg.Header)
			}
		}
	}
	if len(own) == 0 {
		t.Fatal("no own header within 2 s")
	}
	var acked []TxID
	for _, a := range own[0].Acks {
		acked = append(acked, a.TxID)
	}
	if len(acked) != 1 || acked[0] != fresh {
		t.Fatalf("own header acks %x, want only the fresh payload %x", acked, fresh)
	}
}
