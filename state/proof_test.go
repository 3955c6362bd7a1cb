package state

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/kairos-network/kairos/types"
)

func TestProveVerifyAgainstModel(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	s, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{}
	for h := uint64(1); h <= 20; h++ {
		var ws []Write
		seen := map[string]bool{}
		for i := 0; i < 40; i++ {
			k := randKey(r, 80)
			if seen[modelKey(k)] {
				continue
			}
			seen[modelKey(k)] = true
			v := randValue(r)
			ws = append(ws, Write{Key: k, Value: v})
			if v == nil {
				delete(model, modelKey(k))
			} else {
				model[modelKey(k)] = v
			}
		}
		root := mustCommit(t, s, h, ws)
		var keys []types.StateKey
		for i := 0; i < 1+r.IntN(6); i++ {
			k := randKey(r, 100)
			dup := false
			for _, o := range keys {
				dup = dup || modelKey(o) == modelKey(k)
			}
			if !dup {
				keys = append(keys, k)
			}
		}
		p, err := s.Prove(ctx, h, keys...)
		if err != nil {
			t.Fatal(err)
		}
		if err := types.Verify(root, p); err != nil {
			t.Fatalf("height %d: %v", h, err)
		}
		for _, e := range p.Entries {
			if want := model[modelKey(e.Key)]; string(e.Value) != string(want) {
				t.Fatalf("proof value %x, model %x", e.Value, want)
			}
		}
	}
}

// TestMultiProofSharesSiblings: one proof of many keys carries fewer
// siblings than the single-key proofs together, and each key's single
// proof agrees with the multi-key one.
func TestMultiProofSharesSiblings(t *testing.T) {
	ctx := context.Background()
	s, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(12, 12))
	root := mustCommit(t, s, 1, randWrites(r, 2000, 3000))
	var keys []types.StateKey
	for i := 0; i < 64; i++ {
		keys = append(keys, types.StateKey{Key: []byte{byte(i), 'x'}})
	}
	multi, err := s.Prove(ctx, 1, keys...)
	if err != nil || types.Verify(root, multi) != nil {
		t.Fatalf("multi proof: %v", err)
	}
	single := 0
	for _, k := range keys {
		p, err := s.Prove(ctx, 1, k)
		if err != nil || types.Verify(root, p) != nil {
			t.Fatalf("single proof: %v", err)
		}
		single += len(p.Siblings)
		if !bytes.Equal(p.Entries[0].Value, multi.Entries[indexOf(multi, k)].Value) {
			t.Fatalf("single and multi proofs disagree on %s", k)
		}
	}
	if len(multi.Siblings) >= single {
		t.Fatalf("multi proof has %d sibling bytes, singles %d", len(multi.Siblings), single)
	}
}
