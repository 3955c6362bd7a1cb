package consensus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/types"
)

// Digest identifies a header (and so its certificate): the sha2-256 of the
// domain-separated canonical bytes that the author signs.
type Digest [32]byte

// TxID identifies a transaction; Ack is a receive-time report. Both are the
// ordering layer's types, so committed headers feed it without copying.
type (
	TxID = order.TxID
	Ack  = order.Ack
)

// Header is a validator's proposal for one round.
type Header struct {
	_          struct{} `cbor:",toarray"`
	Round      uint64
	Author     uint32
	Time       int64  // unix ns, strictly greater than the author's previous header
	SelfParent Digest // the author's previous certificate; zero if it has none
	// SelfParentRound is SelfParent's round (0 with no self parent). It
	// lets a receiver below whose gc round the self parent lies insert the
	// certificate without it, and everyone else wait for it: the
	// self-parent link is a DAG edge (see doc.go).
	SelfParentRound uint64
	Parents         []Digest // certificates of Round-1 with weight >= Q (none in round 1)
	Acks            []Ack    // each in (SelfParent.Time, Time]
	Sig             []byte
}

// Vote is a validator's signature on a header it checked.
type Vote struct {
	_            struct{} `cbor:",toarray"`
	HeaderDigest Digest
	Round        uint64
	Author       uint32
	Voter        uint32
	Sig          []byte
}

// Certificate is a header with votes of weight >= Q. Signers are ascending
// and distinct; Sigs[i] is the vote signature of Signers[i].
type Certificate struct {
	_       struct{} `cbor:",toarray"`
	Header  Header
	Signers []uint32
	Sigs    [][]byte
}

// CheckpointVote signs the result of executing a block; >= Q matching votes
// form a checkpoint certificate.
type CheckpointVote struct {
	_                 struct{} `cbor:",toarray"`
	Height            uint64
	BlockID           [32]byte
	StateRoot         types.Root
	OrderingStateHash [32]byte
	Signer            uint32
	Sig               []byte
}

// Domain tags: one per signed message kind, so a signature on one kind can
// never be replayed as another.
const (
	tagHeader     = "kairos/consensus/header/v1"
	tagVote       = "kairos/consensus/vote/v1"
	tagCheckpoint = "kairos/consensus/checkpoint/v1"
)

// Errors returned when checking messages. Each is wrapped with detail.
var (
	ErrMalformed    = errors.New("consensus: malformed message")
	ErrTooLarge     = errors.New("consensus: message over limit")
	ErrUnknown      = errors.New("consensus: unknown validator")
	ErrBadSignature = errors.New("consensus: bad signature")
	ErrNoQuorum     = errors.New("consensus: signers below quorum")
	ErrBadParams    = errors.New("consensus: bad committee or params")
)

// signingHash is sha256(tag ‖ 0 ‖ len(chain) ‖ chain ‖ epoch ‖ body).
func (c *Committee) signingHash(tag string, body []byte) [32]byte {
	h := c.signingHasher(tag)
	h.Write(body)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// signingHasher returns a sha256 fed with signingHash's prefix, to be fed
// the body.
func (c *Committee) signingHasher(tag string) hash.Hash {
	h := sha256.New()
	h.Write([]byte(tag))
	h.Write([]byte{0})
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(c.ChainID)))
	h.Write(n[:])
	h.Write([]byte(c.ChainID))
	binary.BigEndian.PutUint64(n[:], c.Epoch)
	h.Write(n[:])
	return h
}

// Digest returns the header's identity (its signing hash, without Sig).
//
// Every header is digested by each validator when it votes, when its
// certificate arrives and when it is checked, and its acks (up to MaxAcks)
// are almost all of its encoding; the reflecting encoder spent more on them
// than sha256 did. So the header is encoded with an empty ack list, and
// the hash is fed the bytes before it, the acks encoded here and the bytes
// after it: the same bytes as the whole encoding, so the same digest
// (TestDigestStreamed compares them; a field added to Header after Acks
// or to Ack breaks this, and the test).
func (c *Committee) Digest(h *Header) Digest {
	u := *h
	u.Sig = nil
	if len(h.Acks) == 0 {
		return Digest(c.signingHash(tagHeader, types.MustEncode(&u)))
	}
	u.Acks = []Ack{}
	enc := types.MustEncode(&u)
	// Acks is the last field but Sig, which ends the encoding.
	cut := len(enc) - len(nilSigEnc) - len(emptyArray)
	hs := c.signingHasher(tagHeader)
	hs.Write(enc[:cut])
	// The acks go to the hash in pieces of up to ackChunk bytes.
	buf := types.AppendHead(make([]byte, 0, ackChunk), 4, uint64(len(h.Acks)))
	for _, a := range h.Acks {
		if len(buf) > ackChunk-ackEncMax {
			hs.Write(buf)
			buf = buf[:0]
		}
		buf = appendAck(buf, a)
	}
	hs.Write(buf)
	hs.Write(enc[cut+len(emptyArray):])
	var d Digest
	hs.Sum(d[:0])
	return d
}

// nilSigEnc and emptyArray are the canonical encodings of a nil signature
// and of an empty ack list.
var (
	nilSigEnc  = types.MustEncode([]byte(nil))
	emptyArray = types.MustEncode([]Ack{})
)

// ackEncMax is the longest encoding of an Ack: an array head, a 32-byte
// string with its 2-byte head and a 9-byte integer.
const ackEncMax = 1 + 2 + 32 + 9

// ackChunk is the size of the buffer Digest encodes acks into.
const ackChunk = 4096

// appendAck appends a's canonical encoding ([TxID, TRecv]).
func appendAck(b []byte, a Ack) []byte {
	b = types.AppendHead(b, 4, 2)
	b = types.AppendHead(b, 2, uint64(len(a.TxID)))
	b = append(b, a.TxID[:]...)
	return types.AppendInt(b, a.TRecv)
}

func (c *Committee) voteHash(d Digest, round uint64, author, voter uint32) [32]byte {
	return c.signingHash(tagVote, types.MustEncode(&Vote{HeaderDigest: d, Round: round, Author: author, Voter: voter}))
}

func (c *Committee) checkpointHash(v *CheckpointVote) [32]byte {
	u := *v
	u.Sig = nil
	return c.signingHash(tagCheckpoint, types.MustEncode(&u))
}

// Signer produces signatures with a validator's private key.
type Signer interface {
	Sign(msg []byte) []byte
}

// Verifier checks signatures; ed25519 in production. The simulator may
// substitute a cheaper scheme with the same accept/reject behaviour for
// keys it controls (see RATIONALE.md).
type Verifier interface {
	Verify(pub, msg, sig []byte) bool
}

// BatchVerifier is an optional extension of a Verifier, found by type
// assertion: it checks several signatures at once and reports whether all
// are valid, with the verdict Verify would give on each.
type BatchVerifier interface {
	VerifyAll(pubs, msgs, sigs [][]byte) bool
}

// Ed25519 is the production Verifier: the chain's one signature rule,
// types.VerifySignature (ZIP-215), which transactions follow too.
type Ed25519 struct{}

// Verify implements Verifier.
func (Ed25519) Verify(pub, msg, sig []byte) bool { return types.VerifySignature(pub, msg, sig) }

// VerifyAll implements BatchVerifier with a types.SigBatch (the
// certificate's vote signatures are checked together).
func (Ed25519) VerifyAll(pubs, msgs, sigs [][]byte) bool {
	b := types.NewSigBatch(len(pubs))
	for i := range pubs {
		b.Add(pubs[i], msgs[i], sigs[i])
	}
	for _, ok := range b.Verify() {
		if !ok {
			return false
		}
	}
	return true
}

// Ed25519Signer signs with an ed25519 private key.
type Ed25519Signer ed25519.PrivateKey

// Sign implements Signer.
func (k Ed25519Signer) Sign(msg []byte) []byte { return ed25519.Sign(ed25519.PrivateKey(k), msg) }

// SignHeader fills h.Sig.
func (c *Committee) SignHeader(s Signer, h *Header) {
	d := c.Digest(h)
	h.Sig = s.Sign(d[:])
}

// SignVote returns the vote of voter for header h.
func (c *Committee) SignVote(s Signer, h *Header, d Digest, voter uint32) Vote {
	m := c.voteHash(d, h.Round, h.Author, voter)
	return Vote{HeaderDigest: d, Round: h.Round, Author: h.Author, Voter: voter, Sig: s.Sign(m[:])}
}

// SignCheckpoint fills v.Sig.
func (c *Committee) SignCheckpoint(s Signer, v *CheckpointVote) {
	m := c.checkpointHash(v)
	v.Sig = s.Sign(m[:])
}

// CheckHeader checks a header's shape, limits and signature (rule 1 of
// consensus.md and the static part of rules 2 and 4). It counts one
// signature verification.
func (c *Committee) CheckHeader(h *Header) (Digest, error) {
	d := c.Digest(h)
	return d, c.checkHeader(h, d)
}

// checkHeaderShape is checkHeader without the signature.
func (c *Committee) checkHeaderShape(h *Header) error {
	n := len(c.Validators)
	switch {
	case int(h.Author) >= n:
		return fmt.Errorf("%w: header author %d of %d", ErrUnknown, h.Author, n)
	case h.Round < 1:
		return fmt.Errorf("%w: header round 0", ErrMalformed)
	case len(h.Parents) > n:
		return fmt.Errorf("%w: %d parents for %d validators", ErrTooLarge, len(h.Parents), n)
	case len(h.Acks) > c.Params.MaxAcks:
		return fmt.Errorf("%w: %d acks, limit %d", ErrTooLarge, len(h.Acks), c.Params.MaxAcks)
	case h.Round == 1 && (len(h.Parents) > 0 || h.SelfParent != Digest{}):
		return fmt.Errorf("%w: round 1 header with parents", ErrMalformed)
	case (h.SelfParent == Digest{}) != (h.SelfParentRound == 0) || h.SelfParentRound >= h.Round:
		return fmt.Errorf("%w: self parent round %d in round %d", ErrMalformed, h.SelfParentRound, h.Round)
	}
	return nil
}

func (c *Committee) checkHeader(h *Header, d Digest) error {
	if err := c.checkHeaderShape(h); err != nil {
		return err
	}
	c.verifies++
	if !c.Verifier.Verify(c.Validators[h.Author].Key, d[:], h.Sig) {
		return fmt.Errorf("%w: header %d/%d", ErrBadSignature, h.Round, h.Author)
	}
	return nil
}

// CheckVote checks a vote's signature.
func (c *Committee) CheckVote(v *Vote) error {
	if int(v.Voter) >= len(c.Validators) || int(v.Author) >= len(c.Validators) {
		return fmt.Errorf("%w: vote by %d on %d", ErrUnknown, v.Voter, v.Author)
	}
	m := c.voteHash(v.HeaderDigest, v.Round, v.Author, v.Voter)
	c.verifies++
	if !c.Verifier.Verify(c.Validators[v.Voter].Key, m[:], v.Sig) {
		return fmt.Errorf("%w: vote by %d on %d/%d", ErrBadSignature, v.Voter, v.Round, v.Author)
	}
	return nil
}

// CheckCertificate checks a certificate: the header, then signers distinct,
// ascending, known, of weight >= Q, each signature valid. A certificate is
// self-verifying, so it may come from any peer.
func (c *Committee) CheckCertificate(cert *Certificate) (Digest, error) {
	d := c.Digest(&cert.Header)
	return d, c.checkCertificate(cert, d)
}

// checkCertificate is CheckCertificate for a digest already computed.
func (c *Committee) checkCertificate(cert *Certificate, d Digest) error {
	if err := c.checkHeaderShape(&cert.Header); err != nil {
		return err
	}
	if len(cert.Signers) != len(cert.Sigs) {
		return fmt.Errorf("%w: %d signers, %d sigs", ErrMalformed, len(cert.Signers), len(cert.Sigs))
	}
	var w uint64
	for i, s := range cert.Signers {
		if int(s) >= len(c.Validators) {
			return fmt.Errorf("%w: signer %d", ErrUnknown, s)
		}
		if i > 0 && s <= cert.Signers[i-1] {
			return fmt.Errorf("%w: signers not ascending", ErrMalformed)
		}
		w += c.Validators[s].Weight
	}
	if w < c.q {
		return fmt.Errorf("%w: weight %d < %d", ErrNoQuorum, w, c.q)
	}
	h := &cert.Header
	msgs := make([][]byte, len(cert.Signers))
	for i, s := range cert.Signers {
		m := c.voteHash(d, h.Round, h.Author, s)
		msgs[i] = m[:]
	}
	if bv, ok := c.Verifier.(BatchVerifier); ok {
		// All valid, the common case: the header's and the votes'
		// signatures in one batch. Otherwise the checks below find the
		// first bad one, as without a batch.
		keys := [][]byte{c.Validators[h.Author].Key}
		for _, s := range cert.Signers {
			keys = append(keys, c.Validators[s].Key)
		}
		c.verifies += uint64(len(keys))
		if bv.VerifyAll(keys, append([][]byte{d[:]}, msgs...), append([][]byte{h.Sig}, cert.Sigs...)) {
			return nil
		}
	}
	c.verifies++
	if !c.Verifier.Verify(c.Validators[h.Author].Key, d[:], h.Sig) {
		return fmt.Errorf("%w: header %d/%d", ErrBadSignature, h.Round, h.Author)
	}
	for i, s := range cert.Signers {
		c.verifies++
		if !c.Verifier.Verify(c.Validators[s].Key, msgs[i], cert.Sigs[i]) {
			return fmt.Errorf("%w: certificate %d/%d signer %d", ErrBadSignature, h.Round, h.Author, s)
		}
	}
	return nil
}

// CheckCheckpointVote checks a checkpoint vote's signature.
func (c *Committee) CheckCheckpointVote(v *CheckpointVote) error {
	if int(v.Signer) >= len(c.Validators) {
		return fmt.Errorf("%w: checkpoint signer %d", ErrUnknown, v.Signer)
	}
	m := c.checkpointHash(v)
	c.verifies++
	if !c.Verifier.Verify(c.Validators[v.Signer].Key, m[:], v.Sig) {
		return fmt.Errorf("%w: checkpoint vote by %d", ErrBadSignature, v.Signer)
	}
	return nil
}

// Message is the one envelope peers exchange: exactly one field is set.
type Message struct {
	_          struct{} `cbor:",toarray"`
	Header     *Header
	Vote       *Vote
	Cert       *Certificate
	Checkpoint *CheckpointVote
}

// MaxMessageBytes bounds one encoded Message: a header with MaxAcksLimit
// acks (about 45 bytes each) plus signatures fits with room to spare.
const MaxMessageBytes = 1 << 20

// EncodeMessage returns the canonical bytes of m.
func EncodeMessage(m *Message) []byte { return types.MustEncode(m) }

// DecodeMessage decodes and shape-checks one message (not its signatures).
// The canonical form is read directly (see wiredecode.go); anything else
// goes to types.Decode.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessageBytes)
	}
	m, ok := decodeMessageFast(b)
	if !ok {
		m = new(Message)
		if err := types.Decode(b, m); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	set := 0
	for _, p := range []bool{m.Header != nil, m.Vote != nil, m.Cert != nil, m.Checkpoint != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("%w: %d payloads in one message", ErrMalformed, set)
	}
	return m, nil
}
