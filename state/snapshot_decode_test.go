package state

import (
	"bytes"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// sameDecode checks that decodeChunk and types.Decode agree on b: both
// refuse it, or both accept it as the same chunk (compared by its canonical
// encoding, which tells a nil slice from an empty one), which EncodeChunk
// encodes as types.Encode does. It reports whether the direct reader took b
// itself.
func sameDecode(t testing.TB, b []byte) (fast bool) {
	t.Helper()
	var ref Chunk
	refErr := types.Decode(b, &ref)
	got, err := decodeChunk(b)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("decodeChunk: %v, types.Decode: %v (input %x)", err, refErr, b)
	}
	f, ok := decodeChunkFast(b)
	if ok && refErr != nil {
		t.Fatalf("the direct reader accepted what types.Decode refuses (%v): %x", refErr, b)
	}
	if err != nil {
		return ok
	}
	want := types.MustEncode(&ref)
	if g, _ := EncodeChunk(&ref); !bytes.Equal(g, want) {
		t.Fatalf("EncodeChunk gives %x, types.Encode %x", g, want)
	}
	if g := types.MustEncode(got); !bytes.Equal(g, want) {
		t.Fatalf("decodeChunk gives %x, types.Decode %x", g, want)
	}
	if ok && !bytes.Equal(types.MustEncode(f), want) {
		t.Fatalf("the direct reader gives another chunk than types.Decode")
	}
	return ok
}

// TestDecodeChunkMatchesDecode compares the direct chunk reader with
// types.Decode, and EncodeChunk with types.Encode, on exported chunks, on chunks with nil and empty slices, and
// on damaged or non-canonical variants: the same verdict and the same
// chunk every time, and the canonical chunks read directly.
func TestDecodeChunkMatchesDecode(t *testing.T) {
	_, chunks := build(t, randomLeaves(3, 40), 7)
	var c Chunk
	if err := types.Decode(chunks[1], &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Proof) == 0 || len(c.Leaves) < 2 {
		t.Fatalf("chunk 1 has %d leaves and %d proof nodes", len(c.Leaves), len(c.Proof))
	}
	variant := func(f func(c *Chunk)) []byte {
		v := c
		v.Leaves = append([]SnapshotLeaf(nil), c.Leaves...)
		v.Proof = append([]ProofNode(nil), c.Proof...)
		f(&v)
		return types.MustEncode(&v)
	}
	canonical := map[string][]byte{
		"no proof (null)":    variant(func(c *Chunk) { c.Proof = nil }),
		"empty proof":        variant(func(c *Chunk) { c.Proof = []ProofNode{} }),
		"no leaves (null)":   variant(func(c *Chunk) { c.Leaves = nil }),
		"nil key and value":  variant(func(c *Chunk) { c.Leaves[0].Key.Key, c.Leaves[0].Value = nil, nil }),
		"empty key":          variant(func(c *Chunk) { c.Leaves[0].Key.Key = []byte{} }),
		"large index":        variant(func(c *Chunk) { c.Index, c.Height = 1<<32-1, 1<<64-1 }),
		"proof kind 255":     variant(func(c *Chunk) { c.Proof[0].Kind = 255 }),
		"24-byte key (head)": variant(func(c *Chunk) { c.Leaves[0].Key.Key = bytes.Repeat([]byte{'k'}, 24) }),
	}
	for i, b := range chunks {
		canonical[string(rune('a'+i))+" exported"] = b
	}
	for name, b := range canonical {
		if !sameDecode(t, b) {
			t.Fatalf("%s: the direct reader did not take a canonical chunk", name)
		}
	}
	b := chunks[1]
	start := bytes.Index(b, append([]byte{0x58, 0x20}, c.Start[:]...))
	if start < 0 {
		t.Fatal("no start hash in the chunk")
	}
	damaged := map[string][]byte{
		"empty":            {},
		"trailing byte":    append(bytes.Clone(b), 0),
		"truncated":        b[:len(b)-1],
		"long array head":  append([]byte{0x98, 0x06}, b[1:]...),
		"tagged":           append([]byte{0xd8, 0x18}, b...),
		"short start hash": append(append(bytes.Clone(b[:start]), 0x58, 0x1f), b[start+3:]...),
		"text start hash":  append(append(bytes.Clone(b[:start]), 0x78, 0x20), b[start+2:]...),
		"five items":       append([]byte{0x85}, b[1:]...),
		"indefinite array": append([]byte{0x9f}, b[1:]...),
		"huge leaf count":  append(bytes.Clone(b[:start+2+2*34]), 0x9b, 0, 0, 0, 1, 0, 0, 0, 0),
	}
	for name, b := range damaged {
		if sameDecode(t, b) {
			t.Fatalf("%s: the direct reader took a non-canonical chunk", name)
		}
	}
}
