package host

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestIteratorMergeProperty checks the merge of a State iterator with a
// snapshot of buffered writes against a dumb model: apply the writes to a
// copy of the map, keep the keys under the prefix, sort.
func TestIteratorMergeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var m types.Address
	keys := []string{"a", "ab", "abc", "abd", "b", "ba", "bb", "c"}
	for round := range 500 {
		base := MemState{}
		model := map[string]string{}
		for _, k := range keys {
			if rng.IntN(2) == 0 {
				v := fmt.Sprint("base", k)
				base.Set(m, []byte(k), []byte(v))
				model[k] = v
			}
		}
		var overlay []kv
		for _, k := range keys {
			switch rng.IntN(3) {
			case 0:
				overlay = append(overlay, kv{key: []byte(k), deleted: true})
				delete(model, k)
			case 1:
				v := fmt.Sprint("new", k, round)
				overlay = append(overlay, kv{key: []byte(k), val: []byte(v)})
				model[k] = v
			}
		}
		prefix := []byte(keys[rng.IntN(len(keys))][:rng.IntN(2)])
		var want []string
		for k, v := range model {
			if bytes.HasPrefix([]byte(k), prefix) {
				want = append(want, k+"="+v)
			}
		}
		slices.Sort(want)
		var pending []kv
		for _, o := range overlay {
			if bytes.HasPrefix(o.key, prefix) {
				pending = append(pending, o)
			}
		}
		bi, _ := base.Iterate(m, prefix)
		it := &iterator{base: bi, overlay: pending}
		var got []string
		for {
			ok, err := it.advance()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, string(it.key)+"="+string(it.val))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d prefix %q:\ngot  %v\nwant %v", round, prefix, got, want)
		}
	}
}
