package exec

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestMergeAgainstReference checks merge with 1 to 8 parts against a map
// that applies every write in block order, on blocks large enough to be
// split (keys often rewritten, across parts too, and deleted), with about
// half the keys numbered in the block's table and the others written
// without a slot (as under a declared prefix). Every other seed writes
// each key from one transaction at most, and merges as disjoint (the
// first pass split over ranges of transactions too). The block's events
// must be the receipts' in block order. Half the seeds of each kind merge
// on a crew of one helper.
func TestMergeAgainstReference(t *testing.T) {
	// 12 seeds: fewer left a slot range's last slot unwritten in every
	// disjoint block with more than one range, where the counts of the
	// first pass must put it in the right range.
	for seed := range uint64(seeds(t, 12)) {
		disjoint := seed%2 == 1
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 2000 + rng.IntN(3000)
		keys := 1 + rng.IntN(4*n)
		randKey := func() string { return key(TokenModule, []byte{byte(rng.IntN(keys)), byte(rng.IntN(keys) >> 8)}) }
		var slotted []string
		for range keys / 2 {
			slotted = append(slotted, randKey())
		}
		tab := tableOf(slotted)
		outs := newTxOutcomes(n)
		model := map[string][]byte{}
		writer := map[string]int{}
		var events []types.Event // every receipt's, in block order
		for i := range n {
			outs.receipts[i] = types.Receipt{GasUsed: uint64(i)}
			for range rng.IntN(3) {
				e := types.Event{Topic: "t", Data: []byte{byte(i), byte(i >> 8), byte(rng.IntN(256))}}
				outs.receipts[i].Events = append(outs.receipts[i].Events, e)
				events = append(events, e)
			}
			o := &overlay{tab: tab}
			for range rng.IntN(4) {
				k := randKey()
				if w, ok := writer[k]; disjoint && ok && w != i {
					continue
				}
				writer[k] = i
				var v []byte
				if rng.IntN(5) > 0 {
					v = []byte{byte(i), byte(i >> 8), byte(rng.IntN(256))}
				}
				o.set(tab.slotOf(k), k, -1, v)
				model[k] = v
			}
			outs.writes[i] = o.writes
		}
		want := slices.Sorted(func(yield func(string) bool) {
			for k := range model {
				if !yield(k) {
					return
				}
			}
		})
		x := New(nil, Options{})
		for parts := 1; parts <= 8; parts++ {
			// From 2 parts on, every other seed with a helper, as a
			// block's crew merges (the first pass's parts that make the
			// result's arrays run beside its ranges).
			if parts > 1 && seed%4 < 2 {
				tab.sc.crew = newCrew(1)
			}
			res := x.merge(outs, tab, parts, disjoint)
			tab.sc.crew.stop()
			tab.sc.crew = nil
			if len(res.Writes) != len(want) {
				t.Fatalf("seed %d, %d parts: %d writes, want %d", seed, parts, len(res.Writes), len(want))
			}
			for i, w := range res.Writes {
				k := splitKey(want[i])
				if w.Key.Module != k.Module || !bytes.Equal(w.Key.Key, k.Key) {
					t.Fatalf("seed %d, %d parts: write %d is %x, want %x", seed, parts, i, w.Key.Key, k.Key)
				}
				if v := model[want[i]]; !bytes.Equal(w.Value, v) || (len(v) == 0) != (w.Value == nil) {
					t.Fatalf("seed %d, %d parts: %x = %x, want %x", seed, parts, k.Key, w.Value, v)
				}
			}
			if wantGas := uint64(n) * uint64(n-1) / 2; res.GasUsed != wantGas || len(res.Receipts) != n {
				t.Fatalf("seed %d, %d parts: gas %d, %d receipts", seed, parts, res.GasUsed, len(res.Receipts))
			}
			if !reflect.DeepEqual(res.Events, events) {
				t.Fatalf("seed %d, %d parts: %d events differ from the receipts' %d in block order", seed, parts, len(res.Events), len(events))
			}
		}
	}
}

// tableOf returns an access table numbering keys (as one transaction's
// exact writes would), for tests of what uses slots.
func tableOf(keys []string) *accessTable {
	tx := &types.Tx{}
	for _, k := range keys {
		sk := splitKey(k)
		tx.Body.Access = append(tx.Body.Access, types.Access{Module: sk.Module, Key: sk.Key, Mode: types.Write})
	}
	return newAccessTable([]*types.Tx{tx}, []types.Address{{}}, 1)
}

// writesOf turns a map of writes into pending writes without slots.
func writesOf(m map[string][]byte) []write {
	var ws []write
	for k, v := range m {
		ws = append(ws, write{slot: -1, e: -1, k: k, v: v})
	}
	return ws
}
