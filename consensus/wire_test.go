package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func sampleHeader(c *Committee, s []Signer) *Header {
	h := &Header{Round: 2, Author: 1, Time: 1_700_000_000_000_000_000, SelfParent: Digest{1}, SelfParentRound: 1,
		Parents: []Digest{{2}, {3}, {4}}, Acks: []Ack{{TxID: txidN(1), TRecv: 1_699_999_999_000_000_000}}}
	c.SignHeader(s[1], h)
	return h
}

func sampleCert(c *Committee, s []Signer) *Certificate {
	h := sampleHeader(c, s)
	d := c.Digest(h)
	cert := &Certificate{Header: *h}
	for v := uint32(0); v < 3; v++ {
		vote := c.SignVote(s[v], h, d, v)
		cert.Signers = append(cert.Signers, v)
		cert.Sigs = append(cert.Sigs, vote.Sig)
	}
	return cert
}

func TestMessageRoundTrip(t *testing.T) {
	c, s := testCommittee(t, 4)
	h := sampleHeader(c, s)
	vote := c.SignVote(s[2], h, c.Digest(h), 2)
	cp := &CheckpointVote{Height: 7, BlockID: [32]byte{9}, Signer: 3}
	c.SignCheckpoint(s[3], cp)
	for _, m := range []*Message{{Header: h}, {Vote: &vote}, {Cert: sampleCert(c, s)}, {Checkpoint: cp}} {
		b := EncodeMessage(m)
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("decode %T: %v", m, err)
		}
		if !bytes.Equal(EncodeMessage(got), b) {
			t.Fatalf("round trip changed the bytes")
		}
	}
	if _, err := c.CheckHeader(h); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckVote(&vote); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckCheckpointVote(cp); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckCertificate(sampleCert(c, s)); err != nil {
		t.Fatal(err)
	}
}

// TestChecksRejectBadMessages: each broken rule gives its sentinel.
func TestChecksRejectBadMessages(t *testing.T) {
	c, s := testCommittee(t, 4)
	other, _ := NewCommittee("other-chain", 0, c.Validators, c.Params, nil)
	nextEpoch, _ := NewCommittee("test", 1, c.Validators, c.Params, nil)
	cases := []struct {
		name string
		mut  func(cert *Certificate) *Committee
		want error
	}{
		{"header sig", func(x *Certificate) *Committee { x.Header.Sig[0] ^= 1; return c }, ErrBadSignature},
		{"vote sig", func(x *Certificate) *Committee { x.Sigs[1][0] ^= 1; return c }, ErrBadSignature},
		{"changed field", func(x *Certificate) *Committee { x.Header.Time++; return c }, ErrBadSignature},
		{"other chain", func(x *Certificate) *Committee { return other }, ErrBadSignature},
		{"other epoch", func(x *Certificate) *Committee { return nextEpoch }, ErrBadSignature},
		{"unknown author", func(x *Certificate) *Committee { x.Header.Author = 9; return c }, ErrUnknown},
		{"round 0", func(x *Certificate) *Committee { x.Header.Round = 0; return c }, ErrMalformed},
		{"self parent without round", func(x *Certificate) *Committee { x.Header.SelfParentRound = 0; return c }, ErrMalformed},
		{"self parent round without self parent", func(x *Certificate) *Committee {
			x.Header.SelfParent = Digest{}
			return c
		}, ErrMalformed},
		{"self parent round not below round", func(x *Certificate) *Committee { x.Header.SelfParentRound = 2; return c }, ErrMalformed},
		{"too many parents", func(x *Certificate) *Committee {
			x.Header.Parents = make([]Digest, 5)
			return c
		}, ErrTooLarge},
		{"below quorum", func(x *Certificate) *Committee {
			x.Signers, x.Sigs = x.Signers[:2], x.Sigs[:2]
			return c
		}, ErrNoQuorum},
		{"duplicate signer", func(x *Certificate) *Committee { x.Signers[1] = 0; return c }, ErrMalformed},
		{"unknown signer", func(x *Certificate) *Committee { x.Signers[2] = 7; return c }, ErrUnknown},
		{"sigs mismatch", func(x *Certificate) *Committee { x.Sigs = x.Sigs[:2]; return c }, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := sampleCert(c, s)
			cc := tc.mut(cert)
			_, err := cc.CheckCertificate(cert)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			// Ed25519 checks a certificate's signatures in one batch; a
			// Verifier without VerifyAll checks them one by one. Both
			// must give the same error.
			single := *cc
			single.Verifier = oneByOne{Ed25519{}}
			if _, err2 := single.CheckCertificate(cert); fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Fatalf("batch: %v; one by one: %v", err, err2)
			}
		})
	}
	cert := sampleCert(c, s)
	if _, err := c.CheckCertificate(cert); err != nil {
		t.Fatalf("valid certificate: %v", err)
	}
	// A vote signature is not a header signature (domain separation).
	h := sampleHeader(c, s)
	v := c.SignVote(s[1], h, c.Digest(h), 1)
	h.Sig = v.Sig
	if _, err := c.CheckHeader(h); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("vote signature accepted as header signature: %v", err)
	}
	big := make([]byte, MaxMessageBytes+1)
	if _, err := DecodeMessage(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := DecodeMessage(EncodeMessage(&Message{})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty message: %v", err)
	}
	two := EncodeMessage(&Message{Header: h, Vote: &v})
	if _, err := DecodeMessage(two); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two payloads: %v", err)
	}
	if _, err := DecodeMessage(append(EncodeMessage(&Message{Header: h}), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestNewCommitteeQuorums(t *testing.T) {
	c, _ := testCommittee(t, 4)
	if c.W() != 4 || c.F() != 1 || c.Q() != 3 {
		t.Fatalf("W F Q = %d %d %d", c.W(), c.F(), c.Q())
	}
	vals := append([]Validator(nil), c.Validators...)
	vals[0].Weight = 0
	if _, err := NewCommittee("x", 0, vals, c.Params, nil); !errors.Is(err, ErrBadParams) {
		t.Fatalf("zero weight: %v", err)
	}
	p := c.Params
	p.MaxAcks = MaxAcksLimit + 1
	if _, err := NewCommittee("x", 0, c.Validators, p, nil); !errors.Is(err, ErrBadParams) {
		t.Fatalf("max acks over limit: %v", err)
	}
	if _, err := NewCommittee("x", 0, nil, c.Params, nil); !errors.Is(err, ErrBadParams) {
		t.Fatalf("no validators: %v", err)
	}
}

// FuzzDecodeMessage: any input decodes to a message that re-encodes to the
// same bytes, or gives an error; it never panics. Checks on a decoded
// message never panic either.
func FuzzDecodeMessage(f *testing.F) {
	c, s := testCommittee(f, 4)
	h := sampleHeader(c, s)
	v := c.SignVote(s[2], h, c.Digest(h), 2)
	for _, m := range []*Message{{Header: h}, {Vote: &v}, {Cert: sampleCert(c, s)}} {
		f.Add(EncodeMessage(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !bytes.Equal(EncodeMessage(m), b) {
			t.Fatal("decoded message re-encodes differently")
		}
		switch {
		case m.Header != nil:
			_, _ = c.CheckHeader(m.Header)
		case m.Vote != nil:
			_ = c.CheckVote(m.Vote)
		case m.Cert != nil:
			_, _ = c.CheckCertificate(m.Cert)
		case m.Checkpoint != nil:
			_ = c.CheckCheckpointVote(m.Checkpoint)
		}
	})
}

// TestWriteFuzzCorpus keeps the checked-in corpora in sync with the seeds
// of the fuzz targets when run with KAIROS_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("KAIROS_WRITE_CORPUS") == "" {
		t.Skip("set KAIROS_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	c, s := testCommittee(t, 4)
	h := sampleHeader(c, s)
	v := c.SignVote(s[2], h, c.Digest(h), 2)
	corpora := map[string]map[string][]byte{
		"FuzzDecodeMessage": {
			"header": EncodeMessage(&Message{Header: h}),
			"vote":   EncodeMessage(&Message{Vote: &v}),
			"cert":   EncodeMessage(&Message{Cert: sampleCert(c, s)}),
		},
		"FuzzDecodeRecord": {
			"own":  EncodeRecord(&Record{Own: h}),
			"cert": EncodeRecord(&Record{Cert: sampleCert(c, s)}),
			"vote": EncodeRecord(&Record{Vote: &VoteRecord{Author: 1, Round: 2, Digest: Digest{3}}}),
		},
	}
	corpora["FuzzDecodeMessageFast"] = fastCorpus()
	for target, files := range corpora {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			body := "go test fuzz v1\n[]byte(" + quote(b) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func quote(b []byte) string {
	var out bytes.Buffer
	out.WriteByte('"')
	for _, x := range b {
		out.WriteString("\\x")
		out.WriteByte("0123456789abcdef"[x>>4])
		out.WriteByte("0123456789abcdef"[x&15])
	}
	out.WriteByte('"')
	return out.String()
}

// oneByOne hides a Verifier's BatchVerifier.
type oneByOne struct{ v Verifier }

func (o oneByOne) Verify(pub, msg, sig []byte) bool { return o.v.Verify(pub, msg, sig) }

// TestDigestStreamed: Digest streams the acks into the hash; it must give
// the signing hash of the whole encoding (the reference) for every ack
// count's head form and every integer form of a receive time, with and
// without a signature, with nil and empty ack lists.
func TestDigestStreamed(t *testing.T) {
	c, _ := testCommittee(t, 4)
	ref := func(h *Header) Digest {
		u := *h
		u.Sig = nil
		return Digest(c.signingHash(tagHeader, types.MustEncode(&u)))
	}
	times := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -24, -25, -256, -257, -65537, math.MinInt64, 1_700_000_000_000_000_000}
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	for _, n := range []int{-1, 0, 1, 2, 23, 24, 25, 255, 256, 257, 65535, 65536} {
		h := &Header{Round: rng.Uint64(), Author: 3, Time: int64(rng.Uint64() >> 1), SelfParentRound: 7,
			Parents: []Digest{{1}, {2}, {3}}}
		fill(h.SelfParent[:])
		if n >= 0 {
			h.Acks = make([]Ack, n)
		}
		for i := range h.Acks {
			fill(h.Acks[i].TxID[:])
			h.Acks[i].TRecv = times[(i+n)%len(times)]
		}
		for _, sig := range [][]byte{nil, make([]byte, 64)} {
			h.Sig = sig
			if got, want := c.Digest(h), ref(h); got != want {
				t.Fatalf("%d acks, sig %d bytes: streamed digest %x, whole encoding %x", n, len(sig), got, want)
			}
		}
	}
}

// BenchmarkDigest compares Digest with the signing hash of the whole
// encoding (what Digest did before) on a header of 1 000 acks.
func BenchmarkDigest(b *testing.B) {
	c, _ := testCommittee(b, 4)
	h := &Header{Round: 9, Author: 1, Time: 1_700_000_000_000_000_000, Parents: []Digest{{1}, {2}, {3}}, Acks: make([]Ack, 1000)}
	for i := range h.Acks {
		h.Acks[i] = Ack{TxID: txidN(i), TRecv: 1_699_999_999_000_000_000 + int64(i)}
	}
	b.Run("impl=encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u := *h
			u.Sig = nil
			c.signingHash(tagHeader, types.MustEncode(&u))
		}
	})
	b.Run("impl=streamed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Digest(h)
		}
	})
}
