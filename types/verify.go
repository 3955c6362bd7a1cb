package types

import (
	"fmt"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// The signature rule of the chain. Every signature that consensus depends
// on (transactions, headers, votes, certificates, checkpoint votes) is
// checked by VerifySignature or a SigBatch, never by another ed25519
// implementation: validators must accept exactly the same signatures, or a
// crafted one would split them.
//
// The rule is ZIP-215: cofactored verification, S must be canonical
// (S < ℓ), A and R may be non-canonical encodings or of small order. Its
// point is that single and batch verification accept exactly the same
// set, so a node may check a group of signatures together (about 14 µs a
// signature in batches of 16 or more against 23 µs alone and 35 µs with the
// standard library here) without ever disagreeing with a node that checks
// them one by one. Every signature crypto/ed25519's Sign produces passes.
// See RATIONALE.md, "Why ZIP-215 signatures, checked in batches?". Both
// check with the signers' expanded public keys, cached (verify_keys.go).
var verifyOptions = &voi.Options{Verify: voi.VerifyOptionsZIP_215}

// Sizes of the signature scheme's keys and signatures.
const (
	PublicKeySize = voi.PublicKeySize
	SignatureSize = voi.SignatureSize
)

// VerifySignature reports whether sig is pub's signature of msg under the
// chain's rule. Keys and signatures of the wrong length are invalid.
func VerifySignature(pub, msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	k, cached := keys.get(pub)
	if k == nil {
		return false
	}
	ok := voi.VerifyExpandedWithOptions(k, msg, sig, verifyOptions)
	if ok && !cached {
		keys.put(k)
	}
	return ok
}

// SigBatch checks several signatures at once under the same rule as
// VerifySignature, with the same result for each. The batch equation is
// randomized (crypto/rand): a batch holding a bad signature satisfies it
// with probability at most 2^-128, and a batch that fails it is checked
// one signature at a time, so randomness never decides a verdict. A SigBatch is not
// safe for concurrent use; it keeps references to the added slices until
// Verify returns.
type SigBatch struct {
	v     *voi.BatchVerifier
	items []sigItem
}

type sigItem struct{ pub, msg, sig []byte }

// NewSigBatch returns an empty batch with room for n signatures.
func NewSigBatch(n int) *SigBatch {
	return &SigBatch{items: make([]sigItem, 0, n)}
}

// Add queues pub's signature sig of msg.
func (b *SigBatch) Add(pub, msg, sig []byte) {
	b.items = append(b.items, sigItem{pub, msg, sig})
}

// Len returns how many signatures are queued.
func (b *SigBatch) Len() int { return len(b.items) }

// Verify checks the queued signatures and empties the batch: ok[i] is
// whether the i-th added signature is valid.
func (b *SigBatch) Verify() (ok []bool) {
	items := b.items
	b.items = b.items[:0]
	ok = make([]bool, len(items))
	if len(items) < minBatch {
		for i, it := range items {
			ok[i] = VerifySignature(it.pub, it.msg, it.sig)
		}
		return ok
	}
	// Look every key up first: a key that is no point (or a signature of
	// the wrong length) fails at once instead of making voi check the whole
	// batch one by one.
	exp := make([]*voi.ExpandedPublicKey, len(items))
	cached := make([]bool, len(items))
	var live []int
	for i, it := range items {
		if len(it.sig) == SignatureSize {
			exp[i], cached[i] = keys.get(it.pub)
		}
		if exp[i] != nil {
			live = append(live, i)
		}
	}
	// voi multiplies by the keys' tables below 94 signatures and uses
	// Pippenger's method (with the decompressed keys) from there on, which
	// costs no more per signature: checking a large batch in parts did not
	// pay (BenchmarkVerify).
	b.verifyLive(items, exp, live, ok)
	for i, k := range exp {
		if ok[i] && !cached[i] {
			keys.put(k)
		}
	}
	return ok
}

// verifyLive checks the signatures items[i] for i in idx, under the
// expanded keys exp[i], and sets ok[i].
func (b *SigBatch) verifyLive(items []sigItem, exp []*voi.ExpandedPublicKey, idx []int, ok []bool) {
	if len(idx) < minBatch {
		for _, i := range idx {
			ok[i] = voi.VerifyExpandedWithOptions(exp[i], items[i].msg, items[i].sig, verifyOptions)
		}
		return
	}
	if b.v == nil {
		b.v = voi.NewBatchVerifierWithCapacity(len(idx))
	}
	b.v.Reset()
	for _, i := range idx {
		b.v.AddExpandedWithOptions(exp[i], items[i].msg, items[i].sig, verifyOptions)
	}
	_, valid := b.v.Verify(nil)
	for k, i := range idx {
		ok[i] = valid[k]
	}
	b.v.Reset()
}

// minBatch is the smallest group worth a batch check: below it the batch's
// setup costs more than it saves.
const minBatch = 4

// DecodedTx is one outcome of DecodeTxs: the transaction and its id, or
// why it was refused.
type DecodedTx struct {
	Tx    *Tx
	ID    Hash
	Err   error
	Known bool // the caller's known returned Tx: not decoded or checked again
}

// DecodeTxs is DecodeTx for each of raws, with the signatures of those
// that pass every other check verified in one batch. out[i] is the outcome
// of raws[i], with the same error DecodeTx would return. known, if not
// nil, is asked about each payload before it is decoded, with the id its
// bytes would have: when the caller holds exactly these bytes as a valid
// transaction, it returns that transaction, and a payload whose validity
// window still holds at now is neither decoded nor checked again (every
// other rule is a property of the bytes and the chain's parameters).
func DecodeTxs(raws [][]byte, chainID string, now int64, lim TxLimits, known func(id Hash, raw []byte) *Tx) []DecodedTx {
	return decodeTxs(raws, chainID, &now, lim, known)
}

// DecodeBodies is DecodeTxs with each transaction checked at its own
// ValidUntil, i.e. without the validity window: a block's executor decides
// expiry at the block time, so a body it needs is valid or invalid whatever
// the local clock says. out[i] has the error DecodeTx(raws[i], chainID,
// ValidUntil, lim) would return.
func DecodeBodies(raws [][]byte, chainID string, lim TxLimits) []DecodedTx {
	return decodeTxs(raws, chainID, nil, lim, nil)
}

// decodeTxs is DecodeTxs at now, or at each transaction's ValidUntil when
// now is nil.
func decodeTxs(raws [][]byte, chainID string, now *int64, lim TxLimits, known func(id Hash, raw []byte) *Tx) []DecodedTx {
	out := make([]DecodedTx, len(raws))
	batch := NewSigBatch(len(raws))
	idx := make([]int, 0, len(raws))
	for i, data := range raws {
		id, shaped := encodedID(data)
		if shaped && known != nil && now != nil {
			if tx := known(id, data); tx != nil && tx.Body.checkWindow(*now, lim) == nil {
				out[i] = DecodedTx{Tx: tx, ID: id, Known: true}
				continue
			}
		}
		tx, err := decodeUnsigned(data, chainID, now, lim)
		if err != nil {
			out[i].Err = err
			continue
		}
		if !shaped || len(tx.Sig) != SignatureSize {
			id = tx.ID() // as idOfEncoding
		}
		out[i].Tx, out[i].ID = tx, id
		batch.Add(tx.Body.Sender, out[i].ID[:], tx.Sig)
		idx = append(idx, i)
	}
	for k, ok := range batch.Verify() {
		if !ok {
			i := idx[k]
			out[i] = DecodedTx{Err: fmt.Errorf("%w: does not verify", ErrTxSignature)}
		}
	}
	return out
}
