package state

import (
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
			ws = append(ws, Write{k, v})
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
