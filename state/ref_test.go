package state

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// refRoot is the dumb reference: the binary sparse Merkle root computed
// straight from the definition, recursively over leaves sorted by key path.
// It shares nothing with the store but the three hash primitives.
func refRoot(m map[string][]byte) types.Root {
	type leaf struct{ kp, vh types.Hash }
	leaves := make([]leaf, 0, len(m))
	for k, v := range m {
		leaves = append(leaves, leaf{types.KeyPath(splitKey(k)), types.ValueHash(v)})
	}
	sort.Slice(leaves, func(i, j int) bool { return bytes.Compare(leaves[i].kp[:], leaves[j].kp[:]) < 0 })
	var rec func(ls []leaf, depth int) types.Hash
	rec = func(ls []leaf, depth int) types.Hash {
		switch len(ls) {
		case 0:
			return types.EmptyHash
		case 1:
			return types.LeafHash(ls[0].kp, ls[0].vh)
		}
		mid := sort.Search(len(ls), func(i int) bool { return ls[i].kp.Bit(depth) == 1 })
		return types.InternalHash(rec(ls[:mid], depth+1), rec(ls[mid:], depth+1))
	}
	return types.Root(rec(leaves, 0))
}

// Model keys are strings: the module followed by the key bytes, so a Go map
// can hold them.
func modelKey(k types.StateKey) string { return string(k.Module[:]) + string(k.Key) }

func splitKey(s string) types.StateKey {
	var k types.StateKey
	copy(k.Module[:], s)
	k.Key = []byte(s[types.AddressLen:])
	return k
}

// randKey draws from a small key space so that updates and deletes hit
// existing keys often.
func randKey(r *rand.Rand, space int) types.StateKey {
	var k types.StateKey
	k.Module[0] = byte(r.IntN(3))
	k.Key = []byte(fmt.Sprintf("k%d", r.IntN(space)))
	return k
}

func randValue(r *rand.Rand) []byte {
	if r.IntN(5) == 0 {
		return nil // delete
	}
	v := make([]byte, 1+r.IntN(40))
	for i := range v {
		v[i] = byte(r.IntN(4)) // few distinct values: A -> B -> A happens
	}
	return v
}

func mustCommit(t testing.TB, s *Store, h uint64, ws []Write) types.Root {
	t.Helper()
	root, err := s.Commit(context.Background(), h, ws)
	if err != nil {
		t.Fatalf("commit %d: %v", h, err)
	}
	return root
}

func TestRootMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s, err := OpenMemory(Options{})
	if err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{}
	for h := uint64(1); h <= 40; h++ {
		var ws []Write
		seen := map[string]bool{}
		for i := 0; i < r.IntN(60); i++ {
			k := randKey(r, 50)
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
		if want := refRoot(model); root != want {
			t.Fatalf("height %d: root %s, reference %s", h, root, want)
		}
	}
}
