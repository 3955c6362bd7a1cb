package consensus

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeRecord: persisted records decode to what re-encodes to the same
// bytes, or to an error; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	c, s := testCommittee(f, 4)
	h := sampleHeader(c, s)
	for _, r := range []*Record{{Own: h}, {Cert: sampleCert(c, s)}, {Vote: &VoteRecord{Author: 1, Round: 2, Digest: Digest{3}}}} {
		f.Add(EncodeRecord(r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !bytes.Equal(EncodeRecord(r), b) {
			t.Fatal("decoded record re-encodes differently")
		}
	})
}

// FuzzCoreStep feeds arbitrary bytes, as messages from a peer, to a ready
// core: whatever decodes must be handled without a panic, and a message
// that fails its checks changes nothing but the counters.
func FuzzCoreStep(f *testing.F) {
	c, s := testCommittee(f, 4)
	h := sampleHeader(c, s)
	v := c.SignVote(s[2], h, c.Digest(h), 2)
	for _, m := range []*Message{{Header: h}, {Vote: &v}, {Cert: sampleCert(c, s)}} {
		f.Add(EncodeMessage(m), int64(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, dt int64) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		core, err := New(Config{Committee: c, Me: 0, Signer: s[0]})
		if err != nil {
			t.Fatal(err)
		}
		core.Step(Start{Now: t0})
		core.Step(FetchResult{Now: t0, HasOwnRound: true})
		core.Step(MsgIn{Now: t0 + dt%int64(1e12), From: 1, Msg: m})
		core.Step(Tick{Now: t0 + 1e12})
	})
}

// FuzzDecodeOrderingState: an ordering state from a peer decodes to one
// that re-encodes to the same bytes and that a core accepts, or to an error
// of a known class; never a panic.
func FuzzDecodeOrderingState(f *testing.F) {
	c, s := testCommittee(f, 4)
	f.Add(sampleOrderingState(c).Encode())
	st := sampleOrderingState(c)
	st.Committed = nil
	f.Add(st.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := c.DecodeOrderingState(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !bytes.Equal(st.Encode(), b) {
			t.Fatal("decoded state re-encodes differently")
		}
		if _, err := New(Config{Committee: c, Me: 0, Signer: s[0], Restore: st}); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("restore: unexpected error class: %v", err)
		}
	})
}
