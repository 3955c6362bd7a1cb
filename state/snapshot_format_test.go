package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// leafMap turns chunk leaves into the model map of ref_test.go, so the
// snapshot tests share its dumb reference root.
func leafMap(leaves []SnapshotLeaf) map[string][]byte {
	m := make(map[string][]byte, len(leaves))
	for _, l := range leaves {
		m[modelKey(l.Key)] = l.Value
	}
	return m
}

// randomLeaves returns n distinct leaves sorted by key path.
func randomLeaves(seed uint64, n int) []SnapshotLeaf {
	r := rand.New(rand.NewPCG(seed, 99))
	out := make([]SnapshotLeaf, n)
	for i := range out {
		k := make([]byte, 8)
		binary.BigEndian.PutUint64(k, uint64(i))
		v := make([]byte, 1+r.IntN(40))
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		out[i] = SnapshotLeaf{Key: types.StateKey{Module: types.Address{byte(i % 3)}, Key: k}, Value: v}
	}
	sortLeaves(out)
	return out
}

func sortLeaves(ls []SnapshotLeaf) {
	sort.Slice(ls, func(a, b int) bool {
		pa, pb := types.KeyPath(ls[a].Key), types.KeyPath(ls[b].Key)
		return bytes.Compare(pa[:], pb[:]) < 0
	})
}

func build(t testing.TB, leaves []SnapshotLeaf, per int) (*Manifest, [][]byte) {
	t.Helper()
	var chunks [][]byte
	m, err := buildSnapshot(7, refRoot(leafMap(leaves)), leaves, per, func(i int, b []byte) error {
		if i != len(chunks) {
			return fmt.Errorf("chunk %d emitted out of order", i)
		}
		chunks = append(chunks, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, chunks
}

func TestSnapshotChunksVerifyAndCover(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 17, 600} {
		for _, per := range []int{1, 2, 5, 64, SnapshotChunkLeavesDefault} {
			leaves := randomLeaves(uint64(n), n)
			m, chunks := build(t, leaves, per)
			mb, err := EncodeManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeManifest(mb); err != nil {
				t.Fatalf("n=%d per=%d: manifest: %v", n, per, err)
			}
			var got []SnapshotLeaf
			for i, b := range chunks {
				c, err := VerifyChunk(m, b)
				if err != nil {
					t.Fatalf("n=%d per=%d chunk %d: %v", n, per, i, err)
				}
				got = append(got, c.Leaves...)
			}
			if len(got) != n {
				t.Fatalf("n=%d per=%d: chunks hold %d leaves", n, per, len(got))
			}
			for i := range got {
				if !bytes.Equal(got[i].Value, leaves[i].Value) || !bytes.Equal(got[i].Key.Key, leaves[i].Key.Key) {
					t.Fatalf("n=%d per=%d: leaf %d differs", n, per, i)
				}
			}
		}
	}
}

func TestSnapshotRefusesWrongRoot(t *testing.T) {
	leaves := randomLeaves(1, 10)
	_, err := buildSnapshot(1, types.Root{1}, leaves, 4, func(int, []byte) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

// rechunk re-encodes a modified chunk and updates its manifest hash, so the
// check under test is the one that has to catch the change.
func rechunk(t *testing.T, m *Manifest, c *Chunk) []byte {
	t.Helper()
	b, err := EncodeChunk(c)
	if err != nil {
		t.Fatal(err)
	}
	m.Chunks[c.Index].Hash = sha256.Sum256(b)
	return b
}

func TestSnapshotChunkRejections(t *testing.T) {
	leaves := randomLeaves(3, 40)
	other := randomLeaves(4, 40)
	cases := []struct {
		name   string
		mutate func(m *Manifest, c *Chunk, chunks [][]byte) []byte
		want   error
	}{
		{"empty chunk claiming leaves", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Leaves = nil
			return rechunk(t, m, c)
		}, ErrChunkEmpty},
		{"unsorted leaves", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Leaves[0], c.Leaves[1] = c.Leaves[1], c.Leaves[0]
			return rechunk(t, m, c)
		}, ErrChunkUnsorted},
		{"leaf outside the range", func(m *Manifest, c *Chunk, chunks [][]byte) []byte {
			var next Chunk
			if err := types.Decode(chunks[c.Index+1], &next); err != nil {
				t.Fatal(err)
			}
			c.Leaves[len(c.Leaves)-1] = next.Leaves[0]
			return rechunk(t, m, c)
		}, ErrChunkOutOfRange},
		{"changed value", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Leaves[2].Value = append([]byte{}, 'x')
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"dropped leaf", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Leaves = c.Leaves[1:]
			m.Chunks[c.Index].Leaves--
			m.Leaves--
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"proof of a different root", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			m.Root = refRoot(leafMap(other))
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"short proof", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Proof = c.Proof[1:]
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"unused proof node", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Proof = append(c.Proof, ProofNode{})
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"bad proof node kind", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Proof[0].Kind = 9
			return rechunk(t, m, c)
		}, ErrChunkProof},
		{"moved bounds", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.End = incKeyPath(c.End)
			return rechunk(t, m, c)
		}, ErrChunkBounds},
		{"leaf count differs from manifest", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			m.Chunks[c.Index].Leaves++
			return rechunk(t, m, c)
		}, ErrSnapshotLeafCount},
		{"wrong index", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Index = 99
			b, _ := EncodeChunk(c)
			return b
		}, ErrChunkUnknown},
		{"wrong height", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			c.Height++
			return rechunk(t, m, c)
		}, ErrChunkUnknown},
		{"hash not in manifest", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			b := rechunk(t, m, c)
			m.Chunks[c.Index].Hash[0] ^= 1
			return b
		}, ErrChunkHash},
		{"trailing bytes", func(m *Manifest, c *Chunk, _ [][]byte) []byte {
			return append(rechunk(t, m, c), 0)
		}, ErrChunkMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, chunks := build(t, leaves, 8)
			var c Chunk
			if err := types.Decode(chunks[1], &c); err != nil {
				t.Fatal(err)
			}
			b := tc.mutate(m, &c, chunks)
			if _, err := VerifyChunk(m, b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSnapshotManifestRejections(t *testing.T) {
	leaves := randomLeaves(5, 30)
	cases := []struct {
		name   string
		mutate func(m *Manifest)
		want   error
	}{
		{"gap", func(m *Manifest) { m.Chunks[1].Start = incKeyPath(m.Chunks[1].Start) }, ErrSnapshotGap},
		{"overlap", func(m *Manifest) { m.Chunks[2].Start = m.Chunks[1].End }, ErrSnapshotOverlap},
		{"missing last chunk", func(m *Manifest) { m.Chunks = m.Chunks[:len(m.Chunks)-1] }, ErrSnapshotGap},
		{"chunk after the end", func(m *Manifest) {
			m.Chunks = append(m.Chunks, ChunkRef{Start: maxKeyPath, End: maxKeyPath})
		}, ErrSnapshotOverlap},
		{"leaf total", func(m *Manifest) { m.Leaves++ }, ErrSnapshotLeafCount},
		{"no chunks", func(m *Manifest) { m.Chunks = nil }, ErrSnapshotManifest},
		{"inverted range", func(m *Manifest) { m.Chunks[1].End = m.Chunks[0].End }, ErrSnapshotManifest},
		{"empty root with leaves", func(m *Manifest) { m.Root = types.EmptyRoot }, ErrSnapshotLeafCount},
		{"too many leaves in a chunk", func(m *Manifest) { m.Chunks[0].Leaves = SnapshotChunkLeavesMax + 1 }, ErrSnapshotManifest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := build(t, leaves, 8)
			tc.mutate(m)
			b, err := EncodeManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeManifest(b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := DecodeManifest([]byte{0xff}); !errors.Is(err, ErrSnapshotManifest) {
		t.Fatalf("garbage manifest: got %v", err)
	}
}
