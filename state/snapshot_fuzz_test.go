package state

import (
	"bytes"
	"context"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/kairos-network/kairos/types"
)

// FuzzChunkImport feeds arbitrary bytes to an importer of a fixed snapshot.
// Nothing may panic, and whatever is accepted must be exactly one of the
// snapshot's real chunks: the range proof leaves no other choice. The
// direct chunk reader must agree with types.Decode on every input.
func FuzzChunkImport(f *testing.F) {
	leaves := randomLeaves(11, 24)
	m, chunks := build(f, leaves, 5)
	for _, c := range chunks {
		f.Add(c)
	}
	f.Add([]byte{})
	f.Add([]byte{0x87, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		sameDecode(t, b)
		ctx := context.Background()
		im, err := NewImporter(ctx, dssync.MutexWrap(ds.NewMapDatastore()), m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := im.Add(ctx, b); err != nil {
			if len(im.Missing()) != len(chunks) {
				t.Fatal("a rejected chunk was staged")
			}
			return
		}
		var c Chunk
		if err := types.Decode(b, &c); err != nil {
			t.Fatalf("accepted bytes do not decode: %v", err)
		}
		if !bytes.Equal(b, chunks[c.Index]) {
			t.Fatalf("accepted a chunk %d that is not the exported one", c.Index)
		}
	})
}

// FuzzDecodeManifest feeds arbitrary bytes to the manifest decoder, which
// reads what a peer sends. Nothing may panic; an accepted manifest must be
// self-consistent and be the canonical encoding of itself.
func FuzzDecodeManifest(f *testing.F) {
	for _, per := range []int{1, 5, 100} {
		m, _ := build(f, randomLeaves(12, 24), per)
		f.Add(types.MustEncode(m))
	}
	m, _ := build(f, nil, 4)
	f.Add(types.MustEncode(m))
	f.Add([]byte{0x84, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted a manifest that does not validate: %v", err)
		}
		again, err := EncodeManifest(m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes are not the canonical encoding (%v)", err)
		}
	})
}
