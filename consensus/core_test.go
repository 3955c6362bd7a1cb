package consensus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// testCommittee returns n equal-weight validators with deterministic keys.
func testCommittee(t testing.TB, n int) (*Committee, []Signer) {
	t.Helper()
	vals := make([]Validator, n)
	signers := make([]Signer, n)
	for i := range vals {
		seed := sha256.Sum256([]byte(fmt.Sprintf("validator-%d", i)))
		k := ed25519.NewKeyFromSeed(seed[:])
		vals[i] = Validator{Key: k.Public().(ed25519.PublicKey), Weight: 1}
		signers[i] = Ed25519Signer(k)
	}
	c, err := NewCommittee("test", 0, vals, DefaultParams(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, signers
}

func txidN(i int) TxID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// randomDAG builds a certified DAG of the given rounds: each round some
// validators are missing (crashed or slow), each header names a random
// quorum of the previous round, and acks a few transactions.
func randomDAG(t testing.TB, c *Committee, signers []Signer, r *rand.Rand, rounds int) []*Certificate {
	n := len(signers)
	var all []*Certificate
	prev := map[uint32]Digest{}
	last := map[uint32]*Certificate{}
	for round := uint64(1); round <= uint64(rounds); round++ {
		cur := map[uint32]Digest{}
		// At most F absent per round keeps a quorum.
		absent := map[uint32]bool{}
		for k := r.IntN(int(c.F()) + 1); k > 0; k-- {
			absent[uint32(r.IntN(n))] = true
		}
		for a := uint32(0); a < uint32(n); a++ {
			if absent[a] {
				continue
			}
			h := Header{Round: round, Author: a, Time: int64(round)*1000 + int64(a)}
			if p := last[a]; p != nil {
				h.SelfParent, h.SelfParentRound = c.Digest(&p.Header), p.Header.Round
			}
			if round > 1 {
				keys := make([]uint32, 0, len(prev))
				for k := uint32(0); k < uint32(n); k++ {
					if _, ok := prev[k]; ok {
						keys = append(keys, k)
					}
				}
				r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
				take := int(c.Q()) + r.IntN(len(keys)-int(c.Q())+1)
				keys = keys[:take]
				for k := uint32(0); k < uint32(n); k++ {
					for _, x := range keys {
						if x == k {
							h.Parents = append(h.Parents, prev[k])
						}
					}
				}
			}
			// Every present validator acks this round's transactions.
			for k := 0; k < 3; k++ {
				h.Acks = append(h.Acks, Ack{TxID: txidN(int(round)*3 + k), TRecv: h.Time - int64(r.IntN(500))})
			}
			c.SignHeader(signers[a], &h)
			d := c.Digest(&h)
			cert := &Certificate{Header: h}
			for s := uint32(0); s < uint32(n) && uint64(len(cert.Signers)) < c.Q(); s++ {
				v := c.SignVote(signers[s], &h, d, s)
				cert.Signers = append(cert.Signers, s)
				cert.Sigs = append(cert.Sigs, v.Sig)
			}
			cur[a] = d
			last[a] = cert
			all = append(all, cert)
		}
		prev = cur
	}
	return all
}

// feed inserts certificates in the given order and returns a trace of the
// committed sub-DAGs and released blocks.
func feed(t testing.TB, c *Committee, signers []Signer, certs []*Certificate) []string {
	core, err := New(Config{Committee: c, Me: 0, Signer: signers[0]})
	if err != nil {
		t.Fatal(err)
	}
	var trace []string
	for _, cert := range certs {
		for _, a := range core.Step(MsgIn{Now: 0, From: 1, Msg: &Message{Cert: cert}}) {
			switch a := a.(type) {
			case Committed:
				s := fmt.Sprintf("sub %d anchor %x:", a.Index, a.Anchor[:4])
				for _, x := range a.Certs {
					s += fmt.Sprintf(" %d/%d", x.Header.Round, x.Header.Author)
				}
				trace = append(trace, s)
			case Released:
				id := a.Block.ID()
				trace = append(trace, fmt.Sprintf("block %d %x %d txs", a.Block.Height, id[:4], len(a.Block.Txs)))
			}
		}
	}
	return trace
}

// TestCommitDeterministicUnderPermutations: random DAGs with absent and
// slow validators, inserted in many orders (out-of-order certificates wait
// for their parents), give identical commit sequences and blocks (S10).
func TestCommitDeterministicUnderPermutations(t *testing.T) {
	c, signers := testCommittee(t, 4)
	for seed := uint64(0); seed < 6; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		certs := randomDAG(t, c, signers, r, 24)
		want := feed(t, c, signers, certs)
		blocks := 0
		for _, l := range want {
			if strings.HasPrefix(l, "block") {
				blocks++
			}
		}
		if len(want) < 3 || blocks == 0 {
			t.Fatalf("seed %d: only %d commits in causal order: the DAG does not exercise the rule", seed, len(want))
		}
		for perm := 0; perm < 8; perm++ {
			p := append([]*Certificate(nil), certs...)
			r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			got := feed(t, c, signers, p)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d perm %d: trace differs\n got %v\nwant %v", seed, perm, got, want)
			}
		}
	}
}

// feedWithRestarts is feed with the core restarted from its persisted
// records at random points. Replay re-emits commits and blocks from the
// start; they must equal what was emitted before (idempotent replay).
func feedWithRestarts(t testing.TB, c *Committee, signers []Signer, certs []*Certificate, r *rand.Rand) []string {
	var recs []Record
	var trace []string
	pos := 0 // entries of trace the current incarnation has re-emitted
	newCore := func() *Core {
		core, err := New(Config{Committee: c, Me: 0, Signer: signers[0], Records: append([]Record(nil), recs...)})
		if err != nil {
			t.Fatal(err)
		}
		pos = 0
		return core
	}
	record := func(acts []Action) {
		for _, a := range acts {
			var s string
			switch a := a.(type) {
			case Persist:
				recs = append(recs, a.Rec)
				continue
			case Committed:
				s = fmt.Sprintf("sub %d anchor %x: %d certs", a.Index, a.Anchor[:4], len(a.Certs))
			case Released:
				id := a.Block.ID()
				s = fmt.Sprintf("block %d %x %d txs", a.Block.Height, id[:4], len(a.Block.Txs))
			default:
				continue
			}
			if pos < len(trace) {
				if trace[pos] != s {
					t.Fatalf("replay after restart emitted %q, before %q", s, trace[pos])
				}
			} else {
				trace = append(trace, s)
			}
			pos++
		}
	}
	core := newCore()
	record(core.Step(Start{}))
	for i, cert := range certs {
		if r.IntN(10) == 0 {
			core = newCore()
			record(core.Step(Start{}))
			// Certificates that waited for parents were not persisted: a
			// restarted node fetches them again from peers.
			for _, old := range certs[:i] {
				record(core.Step(MsgIn{From: 1, Msg: &Message{Cert: old}}))
			}
		}
		record(core.Step(MsgIn{From: 1, Msg: &Message{Cert: cert}}))
	}
	return trace
}

// TestCommitDeterministicWithRestarts (S10 with restarts): the same
// certificates in any order, with restarts from disk in between, give the
// same commits and blocks as a causal insertion without restarts.
func TestCommitDeterministicWithRestarts(t *testing.T) {
	c, signers := testCommittee(t, 4)
	for seed := uint64(0); seed < 4; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		certs := randomDAG(t, c, signers, r, 20)
		want := feedWithRestarts(t, c, signers, certs, rand.New(rand.NewPCG(1, 1)))
		if len(want) < 3 {
			t.Fatalf("seed %d: only %d entries", seed, len(want))
		}
		for perm := 0; perm < 4; perm++ {
			p := append([]*Certificate(nil), certs...)
			r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			got := feedWithRestarts(t, c, signers, p, r)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d perm %d: trace differs\n got %v\nwant %v", seed, perm, got, want)
			}
		}
	}
}

// buildDAG certifies rounds 1..rounds of validators for which present
// holds; each header names the round-1 certificates of the authors that
// parents returns (nil = every certificate of round-1) and its author's
// previous certificate as self parent.
func buildDAG(c *Committee, s []Signer, rounds uint64, present func(r uint64, a uint32) bool, parents func(r uint64, a uint32) []uint32) []*Certificate {
	last := map[uint32]*Certificate{}
	prev := map[uint32]Digest{}
	var certs []*Certificate
	for r := uint64(1); r <= rounds; r++ {
		cur := map[uint32]Digest{}
		for a := uint32(0); a < uint32(len(s)); a++ {
			if !present(r, a) {
				continue
			}
			h := Header{Round: r, Author: a, Time: int64(r)*1000 + int64(a)}
			if p := last[a]; p != nil {
				h.SelfParent, h.SelfParentRound = c.Digest(&p.Header), p.Header.Round
			}
			if r > 1 {
				ps := parents(r, a)
				if ps == nil {
					for p := uint32(0); p < uint32(len(s)); p++ {
						if _, ok := prev[p]; ok {
							ps = append(ps, p)
						}
					}
				}
				for _, p := range ps {
					h.Parents = append(h.Parents, prev[p])
				}
			}
			cert := certFor(c, s, h)
			cur[a] = c.Digest(&cert.Header)
			last[a] = cert
			certs = append(certs, cert)
		}
		prev = cur
	}
	return certs
}

// TestAuthorCommitsInRoundOrder: validator 4's round-2 certificate is a
// parent of only one round-3 certificate, which no round-4 certificate
// names; its round-3 certificate (self parent: the round-2 one) is in the
// anchor of round 4's history. Following parents alone, the anchor of round
// 4 would commit 4's round-3 certificate and the anchor of round 6 its
// round-2 one later; with the self parent as an edge both commit together,
// in round order.
func TestAuthorCommitsInRoundOrder(t *testing.T) {
	c, s := testCommittee(t, 5) // F=1, Q=4; leaders: r2→1, r4→2, r6→3
	special := map[uint64]map[uint32][]uint32{
		3: {0: {0, 1, 2, 3}, 1: {0, 1, 2, 3}, 2: {0, 1, 2, 3}, 3: {0, 1, 2, 4}, 4: {0, 1, 2, 3}},
		4: {0: {0, 1, 2, 4}, 1: {0, 1, 2, 4}, 2: {0, 1, 2, 4}, 3: {0, 1, 2, 3}, 4: {0, 1, 2, 4}},
	}
	certs := buildDAG(c, s, 7, func(uint64, uint32) bool { return true },
		func(r uint64, a uint32) []uint32 { return special[r][a] })
	core, err := New(Config{Committee: c, Me: 0, Signer: s[0]})
	if err != nil {
		t.Fatal(err)
	}
	committed := map[uint32]uint64{} // author → highest committed round
	subs := 0
	for _, cert := range certs {
		for _, a := range core.Step(MsgIn{Now: 0, From: 1, Msg: &Message{Cert: cert}}) {
			com, ok := a.(Committed)
			if !ok {
				continue
			}
			subs++
			for _, x := range com.Certs {
				h := &x.Header
				if h.Round <= committed[h.Author] {
					t.Fatalf("sub-DAG %d commits %d's round %d after its round %d", com.Index, h.Author, h.Round, committed[h.Author])
				}
				committed[h.Author] = h.Round
			}
		}
	}
	if subs < 3 || committed[4] < 3 {
		t.Fatalf("%d sub-DAGs, validator 4 up to round %d: the DAG does not reach the case", subs, committed[4])
	}
}

// TestFarSelfParent: validator 3 certifies round 1 (a certificate no one
// names), is away, then names that certificate as self parent. A node that
// never saw it must insert and commit the new certificate without it, and
// commit exactly what a node that did see it commits: back at round 30 the
// self parent is more than GCDepth/2 rounds old (no edge, nobody need keep
// it); back at round 71 it is also below the gc round.
func TestFarSelfParent(t *testing.T) {
	c, s := testCommittee(t, 4)
	for _, back := range []uint64{30, 71} {
		certs := buildDAG(c, s, back+19, func(r uint64, a uint32) bool { return a != 3 || r == 1 || r >= back },
			func(r uint64, a uint32) []uint32 {
				if r == 2 {
					return []uint32{0, 1, 2}
				}
				return nil
			})
		if certs[3].Header.Author != 3 || certs[3].Header.Round != 1 {
			t.Fatal("unexpected DAG layout")
		}
		want := feed(t, c, s, certs)
		without := append(append([]*Certificate(nil), certs[:3]...), certs[4:]...)
		got := feed(t, c, s, without)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("back at %d: commits differ without the old self parent\n got %v\nwant %v", back, got, want)
		}
		if !strings.Contains(fmt.Sprint(got), fmt.Sprintf(" %d/3", back)) {
			t.Fatalf("back at %d: validator 3's certificate was not committed: %v", back, got)
		}
	}
}

// TestMissingForgottenAtGC: a header naming parents that do not exist
// makes the core fetch them; once the gc round passes the header, the
// digests leave the missing set (else a Byzantine validator could fill it
// and stop the fetches that liveness needs).
func TestMissingForgottenAtGC(t *testing.T) {
	c, s := testCommittee(t, 4)
	core, err := New(Config{Committee: c, Me: 0, Signer: s[0]})
	if err != nil {
		t.Fatal(err)
	}
	core.Step(Start{Now: t0})
	core.Step(FetchResult{Now: t0, HasOwnRound: true})
	h := Header{Round: 2, Author: 1, Time: t0, Parents: []Digest{{7}, {8}, {9}}}
	c.SignHeader(s[1], &h)
	core.Step(MsgIn{Now: t0, From: 1, Msg: &Message{Header: &h}})
	if n := core.Sizes()["missing"]; n != 3 {
		t.Fatalf("missing %d digests after the header, want 3", n)
	}
	for _, cert := range buildDAG(c, s, 70, func(uint64, uint32) bool { return true }, func(uint64, uint32) []uint32 { return nil }) {
		core.Step(MsgIn{Now: t0, From: 2, Msg: &Message{Cert: cert}})
	}
	if n := core.Sizes()["dag"]; n >= 70*4 {
		t.Fatalf("dag holds %d certificates: no gc happened", n)
	}
	if n := core.Sizes()["missing"]; n != 0 {
		t.Fatalf("missing %d digests after gc: %v", n, core)
	}
}
