package types

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A reference tree and single-key prover written from the definition,
// independent of the state store's physical nodes.
type refLeaf struct {
	key   StateKey
	kp    Hash
	value []byte
}

func refLeaves(n int) []refLeaf {
	ls := make([]refLeaf, n)
	for i := range ls {
		k := StateKey{Key: []byte(fmt.Sprintf("key-%d", i))}
		ls[i] = refLeaf{key: k, kp: KeyPath(k), value: []byte(fmt.Sprintf("value-%d", i))}
	}
	sort.Slice(ls, func(i, j int) bool { return bytes.Compare(ls[i].kp[:], ls[j].kp[:]) < 0 })
	return ls
}

func refHash(ls []refLeaf, depth int) Hash {
	switch len(ls) {
	case 0:
		return EmptyHash
	case 1:
		return LeafHash(ls[0].kp, ValueHash(ls[0].value))
	}
	mid := sort.Search(len(ls), func(i int) bool { return ls[i].kp.Bit(depth) == 1 })
	return InternalHash(refHash(ls[:mid], depth+1), refHash(ls[mid:], depth+1))
}

func refProve(ls []refLeaf, k StateKey) *Proof {
	kp := KeyPath(k)
	e := ProofEntry{Key: StateKey{Module: k.Module, Key: append([]byte{}, k.Key...)}}
	var sibs []Hash // top-down
	sub, depth := ls, 0
	for len(sub) > 1 {
		mid := sort.Search(len(sub), func(i int) bool { return sub[i].kp.Bit(depth) == 1 })
		if kp.Bit(depth) == 0 {
			sibs = append(sibs, refHash(sub[mid:], depth+1))
			sub = sub[:mid]
		} else {
			sibs = append(sibs, refHash(sub[:mid], depth+1))
			sub = sub[mid:]
		}
		depth++
	}
	e.Depth = uint16(depth)
	if len(sub) == 1 {
		if sub[0].kp == kp {
			e.Value = sub[0].value
		} else {
			e.Other = &ProofLeaf{KeyPath: sub[0].kp, ValueHash: ValueHash(sub[0].value)}
		}
	}
	p := &Proof{Root: Root(refHash(ls, 0)), Entries: []ProofEntry{e}, Bitmap: []byte{}, Siblings: []byte{}}
	for i := range sibs {
		h := sibs[len(sibs)-1-i] // bottom-up
		if i%8 == 0 {
			p.Bitmap = append(p.Bitmap, 0)
		}
		if h != EmptyHash {
			p.Bitmap[i/8] |= 0x80 >> (i % 8)
			p.Siblings = append(p.Siblings, h[:]...)
		}
	}
	return p
}

func TestVerifyReferenceProofs(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 17, 200} {
		ls := refLeaves(n)
		root := Root(refHash(ls, 0))
		for i := 0; i < n+5; i++ {
			k := StateKey{Key: []byte(fmt.Sprintf("key-%d", i))}
			p := refProve(ls, k)
			if err := Verify(root, p); err != nil {
				t.Fatalf("n=%d key %d: %v", n, i, err)
			}
			if p.Entries[0].Present() != (i < n) {
				t.Fatalf("n=%d key %d: presence %v", n, i, p.Entries[0].Present())
			}
			q, err := DecodeProof(MustEncode(p))
			if err != nil || Verify(root, q) != nil {
				t.Fatalf("round trip: %v", err)
			}
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	ls := refLeaves(40)
	root := Root(refHash(ls, 0))
	in := refProve(ls, ls[7].key)                            // inclusion
	other := refProve(ls, StateKey{Key: []byte("absent-1")}) // some non-inclusion
	if err := Verify(root, in); err != nil || Verify(root, other) != nil {
		t.Fatalf("valid proofs rejected: %v %v", err, Verify(root, other))
	}
	clone := func(p *Proof) *Proof {
		q, err := DecodeProof(MustEncode(p))
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	cases := []struct {
		name string
		f    func(p *Proof)
		want error
	}{
		{"nil bitmap", func(p *Proof) { p.Bitmap = nil }, ErrProofMalformed},
		{"no entries", func(p *Proof) { p.Entries = nil }, ErrProofMalformed},
		{"too many entries", func(p *Proof) { p.Entries = make([]ProofEntry, ProofEntriesMax+1) }, ErrProofMalformed},
		{"depth 257", func(p *Proof) { p.Entries[0].Depth = 257 }, ErrProofDepth},
		{"short sibling", func(p *Proof) { p.Siblings = p.Siblings[:len(p.Siblings)-1] }, ErrProofSiblings},
		{"unused sibling", func(p *Proof) { p.Siblings = append(p.Siblings, bytes.Repeat([]byte{1}, 32)...) }, ErrProofSiblings},
		{"dropped sibling", func(p *Proof) { p.Siblings = p.Siblings[32:] }, ErrProofSiblings},
		{"extra bitmap byte", func(p *Proof) { p.Bitmap = append(p.Bitmap, 0) }, ErrProofBitmap},
		{"trailing bitmap bit", func(p *Proof) { p.Bitmap[len(p.Bitmap)-1] |= 1 }, ErrProofBitmap},
		{"zero sibling", func(p *Proof) { copy(p.Siblings, make([]byte, 32)) }, ErrProofBitmap},
		{"wrong root", func(p *Proof) { p.Root[0] ^= 1 }, ErrProofRoot},
		{"other value", func(p *Proof) { p.Entries[0].Value = []byte("nope") }, ErrProofRoot},
		{"empty value", func(p *Proof) { p.Entries[0].Value = []byte{} }, ErrProofMalformed},
		{"nil key", func(p *Proof) { p.Entries[0].Key.Key = nil }, ErrProofMalformed},
		{"inclusion with other", func(p *Proof) { p.Entries[0].Other = &ProofLeaf{} }, ErrProofMalformed},
		{"other is the key", func(p *Proof) {
			kp := KeyPath(p.Entries[0].Key)
			p.Entries[0].Value, p.Entries[0].Other = nil, &ProofLeaf{KeyPath: kp}
		}, ErrProofMalformed},
		{"other off the path", func(p *Proof) {
			kp := KeyPath(p.Entries[0].Key)
			kp[0] ^= 0x80
			p.Entries[0].Value, p.Entries[0].Other = nil, &ProofLeaf{KeyPath: kp}
		}, ErrProofPath},
		{"unsorted entries", func(p *Proof) {
			e := p.Entries[0]
			p.Entries = []ProofEntry{e, e}
		}, ErrProofOrder},
		{"lone leaf beside empty", func(p *Proof) {
			// Claim the leaf one level deeper with an empty sibling: the
			// tree would have collapsed that.
			p.Entries[0].Depth++
			p.Bitmap = append([]byte{0}, p.Bitmap...)
			shiftBitmapRight(p)
		}, ErrProofNonMinimal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := clone(in)
			c.f(p)
			if err := Verify(root, p); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if err := Verify(root, nil); !errors.Is(err, ErrProofMalformed) {
		t.Fatalf("nil proof: %v", err)
	}
}

// shiftBitmapRight inserts a zero bit at the front of the bitmap (the
// bitmap got a new leading byte of zeros; this re-packs it to one new bit).
func shiftBitmapRight(p *Proof) {
	bits := (len(p.Bitmap)-1)*8 + 1
	old := p.Bitmap[1:]
	nb := make([]byte, (bits+7)/8)
	for i := 0; i < (len(old))*8; i++ {
		if old[i/8]&(0x80>>(i%8)) != 0 {
			nb[(i+1)/8] |= 0x80 >> ((i + 1) % 8)
		}
	}
	p.Bitmap = nb
}

// FuzzVerify decodes arbitrary bytes as a proof and verifies it against a
// fixed reference tree. It must never panic, and whatever verifies must
// tell the truth about the tree.
func FuzzVerify(f *testing.F) {
	ls := refLeaves(12)
	root := Root(refHash(ls, 0))
	truth := map[string][]byte{}
	for _, l := range ls {
		truth[string(l.key.Module[:])+string(l.key.Key)] = l.value
	}
	for _, k := range []string{"key-0", "key-5", "key-99", "zzz"} {
		f.Add(MustEncode(refProve(ls, StateKey{Key: []byte(k)})))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeProof(data)
		if err != nil {
			return
		}
		if Verify(root, p) != nil {
			return
		}
		for _, e := range p.Entries {
			if want := truth[string(e.Key.Module[:])+string(e.Key.Key)]; !bytes.Equal(e.Value, want) {
				t.Fatalf("verified a false claim: %s = %x, tree has %x", e.Key, e.Value, want)
			}
		}
	})
}

// TestCorpusProofsVerify: the checked-in corpus holds multi-key proofs made
// by the state store over the FuzzVerify tree; they must verify against the
// reference root, which ties the store's prover to this package's
// definition.
func TestCorpusProofsVerify(t *testing.T) {
	root := Root(refHash(refLeaves(12), 0))
	files, err := filepath.Glob("testdata/fuzz/FuzzVerify/state-multi-*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		lit := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
		data, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatal(err)
		}
		p, err := DecodeProof([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(root, p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
