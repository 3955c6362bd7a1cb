package types

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits on proofs; they bound the work Verify does for a hostile proof.
const (
	// StateValueMax is the largest value a state key may hold.
	StateValueMax = 1 << 20
	// ProofEntriesMax is the most keys one (multi-key) proof may cover.
	ProofEntriesMax = 1024
)

// Proof errors. Verify wraps one of them with detail; test with errors.Is.
var (
	ErrProofMalformed  = errors.New("types: malformed proof")
	ErrProofDepth      = errors.New("types: proof deeper than 256 levels")
	ErrProofOrder      = errors.New("types: proof entries not strictly sorted by key path")
	ErrProofBitmap     = errors.New("types: proof bitmap does not match its siblings")
	ErrProofSiblings   = errors.New("types: proof has missing or unused siblings")
	ErrProofNonMinimal = errors.New("types: proof describes a subtree that should have collapsed")
	ErrProofPath       = errors.New("types: proof leaf is not on the key's path")
	ErrProofRoot       = errors.New("types: proof does not lead to the root")
)

// Proof shows that each of its entries' keys holds the entry's value (or is
// absent) in the state whose root is Root. It covers one or more keys; the
// siblings that several keys share are listed once.
//
// Layout: entries are sorted by key path. Walking the binary tree from the
// root, the verifier splits the entries by the bit of each depth. Where all
// remaining entries go one way, the other side is a sibling: one bit of
// Bitmap says whether it is non-empty, and a non-empty sibling is the next
// 32 bytes of Siblings. Bits and siblings are consumed in post-order
// (deepest first), so a single-key proof lists its siblings bottom-up. An
// entry ends at Depth, where the key's path meets its own leaf (inclusion),
// an empty subtree, or a different leaf (Other) whose path shares the first
// Depth bits (non-inclusion).
type Proof struct {
	_        struct{} `cbor:",toarray"`
	Height   uint64
	Root     Root
	Entries  []ProofEntry
	Bitmap   []byte
	Siblings []byte // concatenated 32-byte hashes
}

// ProofEntry is one key of a Proof.
type ProofEntry struct {
	_     struct{} `cbor:",toarray"`
	Key   StateKey
	Value []byte // nil when the key is absent; an empty value does not exist
	Depth uint16
	Other *ProofLeaf // for non-inclusion by a different leaf on the path
}

// ProofLeaf is a leaf named by its key path and value hash.
type ProofLeaf struct {
	_         struct{} `cbor:",toarray"`
	KeyPath   Hash
	ValueHash Hash
}

// Present reports whether the entry proves inclusion.
func (e *ProofEntry) Present() bool { return e.Value != nil }

// DecodeProof reads a proof in canonical CBOR. It does not verify it.
func DecodeProof(data []byte) (*Proof, error) {
	var p Proof
	if err := Decode(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProofMalformed, err)
	}
	return &p, nil
}

// Verify checks p against root, which the caller trusts (for example from a
// checkpoint certificate). It returns nil only if every entry's value (or
// absence) is what the state with that root holds, and the proof is in its
// one canonical form: no unused siblings or bitmap bits, no zero siblings,
// no subtree that the tree would have collapsed, depth at most 256.
func Verify(root Root, p *Proof) error {
	if p == nil {
		return fmt.Errorf("%w: nil", ErrProofMalformed)
	}
	if p.Root != root {
		return fmt.Errorf("%w: proof names root %s, want %s", ErrProofRoot, p.Root, root)
	}
	n := len(p.Entries)
	if n == 0 || n > ProofEntriesMax {
		return fmt.Errorf("%w: %d entries (1..%d)", ErrProofMalformed, n, ProofEntriesMax)
	}
	if p.Bitmap == nil || p.Siblings == nil {
		// nil and empty encode differently; one form keeps proofs canonical.
		return fmt.Errorf("%w: nil bitmap or siblings", ErrProofMalformed)
	}
	if len(p.Siblings)%HashLen != 0 {
		return fmt.Errorf("%w: siblings length %d", ErrProofSiblings, len(p.Siblings))
	}
	v := verifier{p: p, kps: make([]Hash, n)}
	for i := range p.Entries {
		e := &p.Entries[i]
		if err := checkEntry(e); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		v.kps[i] = KeyPath(e.Key)
		if i > 0 && bytes.Compare(v.kps[i-1][:], v.kps[i][:]) >= 0 {
			return fmt.Errorf("%w: entry %d", ErrProofOrder, i)
		}
		if e.Other != nil {
			if e.Other.KeyPath == v.kps[i] {
				return fmt.Errorf("%w: entry %d: other leaf is the key itself", ErrProofMalformed, i)
			}
			if commonPrefix(e.Other.KeyPath, v.kps[i]) < int(e.Depth) {
				return fmt.Errorf("%w: entry %d", ErrProofPath, i)
			}
		}
	}
	_, got, err := v.walk(0, n, 0)
	if err != nil {
		return err
	}
	if v.sib*HashLen != len(p.Siblings) {
		return fmt.Errorf("%w: %d of %d siblings used", ErrProofSiblings, v.sib, len(p.Siblings)/HashLen)
	}
	if len(p.Bitmap) != (v.slot+7)/8 {
		return fmt.Errorf("%w: %d bitmap bytes for %d slots", ErrProofBitmap, len(p.Bitmap), v.slot)
	}
	if v.slot%8 != 0 && p.Bitmap[len(p.Bitmap)-1]&(0xff>>(v.slot%8)) != 0 {
		return fmt.Errorf("%w: trailing bitmap bits set", ErrProofBitmap)
	}
	if Root(got) != root {
		return fmt.Errorf("%w: computed %s", ErrProofRoot, got)
	}
	return nil
}

func checkEntry(e *ProofEntry) error {
	switch {
	case e.Key.Key == nil:
		return fmt.Errorf("%w: nil key bytes (use an empty slice)", ErrProofMalformed)
	case len(e.Key.Key) > StateKeyMax:
		return fmt.Errorf("%w: key of %d bytes", ErrProofMalformed, len(e.Key.Key))
	case len(e.Value) > StateValueMax:
		return fmt.Errorf("%w: value of %d bytes", ErrProofMalformed, len(e.Value))
	case e.Value != nil && len(e.Value) == 0:
		return fmt.Errorf("%w: empty value (absent keys carry no value)", ErrProofMalformed)
	case e.Depth > KeyPathDepth:
		return fmt.Errorf("%w: depth %d", ErrProofDepth, e.Depth)
	case e.Value != nil && e.Other != nil:
		return fmt.Errorf("%w: inclusion entry with another leaf", ErrProofMalformed)
	}
	return nil
}

func commonPrefix(a, b Hash) int {
	for i := 0; i < KeyPathDepth; i++ {
		if a.Bit(i) != b.Bit(i) {
			return i
		}
	}
	return KeyPathDepth
}

type verifier struct {
	p    *Proof
	kps  []Hash
	slot int // bitmap bits consumed
	sib  int // siblings consumed
}

// terminal returns the subtree an entry ends at.
func (v *verifier) terminal(i int) (NodeKind, Hash) {
	e := &v.p.Entries[i]
	switch {
	case e.Value != nil:
		return KindLeaf, LeafHash(v.kps[i], ValueHash(e.Value))
	case e.Other != nil:
		return KindLeaf, LeafHash(e.Other.KeyPath, e.Other.ValueHash)
	}
	return KindEmpty, EmptyHash
}

// walk recomputes the subtree at depth that holds entries[lo:hi], which
// share their first depth key path bits.
func (v *verifier) walk(lo, hi, depth int) (NodeKind, Hash, error) {
	ends := 0
	for i := lo; i < hi; i++ {
		if int(v.p.Entries[i].Depth) == depth {
			ends++
		}
	}
	if ends > 0 {
		// Entries ending here end at the same subtree; several can only
		// share an empty slot or one leaf.
		if ends != hi-lo {
			return 0, EmptyHash, fmt.Errorf("%w: entries end at different depths inside one subtree at depth %d", ErrProofMalformed, depth)
		}
		k, h := v.terminal(lo)
		for i := lo + 1; i < hi; i++ {
			if k2, h2 := v.terminal(i); k2 != k || h2 != h {
				return 0, EmptyHash, fmt.Errorf("%w: entries disagree on the subtree at depth %d", ErrProofMalformed, depth)
			}
		}
		return k, h, nil
	}
	if depth >= KeyPathDepth {
		return 0, EmptyHash, fmt.Errorf("%w: path runs past depth %d", ErrProofDepth, KeyPathDepth)
	}
	mid := lo
	for mid < hi && v.kps[mid].Bit(depth) == 0 {
		mid++
	}
	if lo < mid && mid < hi {
		lk, lh, err := v.walk(lo, mid, depth+1)
		if err != nil {
			return 0, EmptyHash, err
		}
		rk, rh, err := v.walk(mid, hi, depth+1)
		if err != nil {
			return 0, EmptyHash, err
		}
		if lk != KindInternal && rk != KindInternal && (lk == KindEmpty || rk == KindEmpty) {
			return 0, EmptyHash, fmt.Errorf("%w: at depth %d", ErrProofNonMinimal, depth)
		}
		k, h := Combine(lk, lh, rk, rh)
		return k, h, nil
	}
	ck, ch, err := v.walk(lo, hi, depth+1)
	if err != nil {
		return 0, EmptyHash, err
	}
	sk, sh, err := v.sibling()
	if err != nil {
		return 0, EmptyHash, err
	}
	if sk == KindEmpty && ck != KindInternal {
		return 0, EmptyHash, fmt.Errorf("%w: lone subtree beside an empty sibling at depth %d", ErrProofNonMinimal, depth)
	}
	var k NodeKind
	var h Hash
	if mid == hi { // all entries went left
		k, h = Combine(ck, ch, sk, sh)
	} else {
		k, h = Combine(sk, sh, ck, ch)
	}
	return k, h, nil
}

// sibling consumes the next bitmap bit and, when it is set, the next
// sibling hash. A non-empty sibling's kind is not known to the verifier;
// KindInternal makes Combine hash it without collapsing.
func (v *verifier) sibling() (NodeKind, Hash, error) {
	i := v.slot
	if i/8 >= len(v.p.Bitmap) {
		return 0, EmptyHash, fmt.Errorf("%w: bitmap too short", ErrProofBitmap)
	}
	v.slot++
	if v.p.Bitmap[i/8]>>(7-uint(i%8))&1 == 0 {
		return KindEmpty, EmptyHash, nil
	}
	off := v.sib * HashLen
	if off+HashLen > len(v.p.Siblings) {
		return 0, EmptyHash, fmt.Errorf("%w: bitmap names more siblings than given", ErrProofSiblings)
	}
	v.sib++
	var h Hash
	copy(h[:], v.p.Siblings[off:off+HashLen])
	if h == EmptyHash {
		return 0, EmptyHash, fmt.Errorf("%w: zero sibling marked present", ErrProofBitmap)
	}
	return KindInternal, h, nil
}

// ProofBuilder collects bitmap bits and siblings in the order Verify reads
// them; the state store fills it while walking its tree.
type ProofBuilder struct {
	bits     int
	bitmap   []byte
	siblings []byte
}

// AddSibling records the next sibling slot.
func (b *ProofBuilder) AddSibling(h Hash) {
	if b.bits%8 == 0 {
		b.bitmap = append(b.bitmap, 0)
	}
	if h != EmptyHash {
		b.bitmap[b.bits/8] |= 0x80 >> uint(b.bits%8)
		b.siblings = append(b.siblings, h[:]...)
	}
	b.bits++
}

// Finish stores the collected bitmap and siblings into p.
func (b *ProofBuilder) Finish(p *Proof) {
	p.Bitmap, p.Siblings = b.bitmap, b.siblings
	if p.Bitmap == nil {
		p.Bitmap = []byte{}
	}
	if p.Siblings == nil {
		p.Siblings = []byte{}
	}
}
