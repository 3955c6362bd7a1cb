package host

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// TestWriteBufferProperty drives the frame write buffers (put, merge of a
// callee that ended normally, drop of one that failed, lookup through the
// stack, pending snapshots, the final sorted write set) with random
// operations and checks every answer against a dumb model: a stack of
// maps. 40 keys per module push a frame's buffer past writeScanMax, so
// both the scanned and the indexed buffer are exercised, and runs are
// reused through the pool as Run reuses them.
func TestWriteBufferProperty(t *testing.T) {
	type val struct {
		v       string
		deleted bool
	}
	mods := []types.Address{{1}, {2}}
	base := MemState{}
	var keys [][]byte
	for i := range 40 {
		keys = append(keys, fmt.Appendf(nil, "k%02d", i))
	}
	for i, k := range keys[:10] {
		base.Set(mods[i%2], k, []byte("base"))
	}
	rng := rand.New(rand.NewPCG(3, 3))
	scratch := make([]byte, 64) // keys and values alias it, like guest memory
	for round := range 30 {
		r := runs.Get().(*run)
		r.tx = &Tx{State: base}
		var model []map[string]val // per frame: module ‖ key → change
		push := func() {
			if len(r.frames) == len(r.spare) {
				r.spare = append(r.spare, new(frame))
			}
			f := r.spare[len(r.frames)]
			f.reset()
			f.run, f.self = r, mods[rng.IntN(len(mods))]
			r.frames = append(r.frames, f)
			model = append(model, map[string]val{})
		}
		push()
		for step := range 300 {
			top := r.frames[len(r.frames)-1]
			k := keys[rng.IntN(len(keys))]
			mk := string(top.self[:]) + string(k)
			switch op := rng.IntN(20); {
			case op < 8:
				v := fmt.Sprint("v", round, step)
				if rng.IntN(8) == 0 {
					v = "" // an empty value is not a delete
				}
				n := copy(scratch, k)
				m := copy(scratch[n:], v)
				top.put(scratch[:n], scratch[n:n+m], false)
				model[len(model)-1][mk] = val{v: v}
			case op < 11:
				top.put(append(scratch[:0], k...), nil, true)
				model[len(model)-1][mk] = val{deleted: true}
			case op < 13 && len(r.frames) < CallDepthMax:
				push()
			case op < 15 && len(r.frames) > 1:
				r.frames = r.frames[:len(r.frames)-1]
				callee := model[len(model)-1]
				model = model[:len(model)-1]
				if rng.IntN(3) > 0 { // ended normally
					r.frames[len(r.frames)-1].merge(top)
					maps.Copy(model[len(model)-1], callee)
				}
			case op < 17:
				prefix := k[:rng.IntN(3)]
				var want []string
				seen := map[string]bool{}
				for i := len(model) - 1; i >= 0; i-- {
					for mk, v := range model[i] {
						if seen[mk] || mk[:addressLen] != string(top.self[:]) || !bytes.HasPrefix([]byte(mk[addressLen:]), prefix) {
							continue
						}
						seen[mk] = true
						want = append(want, fmt.Sprintf("%s=%q/%v", mk[addressLen:], v.v, v.deleted))
					}
				}
				slices.Sort(want)
				var got []string
				for _, p := range top.pending(prefix) {
					got = append(got, fmt.Sprintf("%s=%q/%v", p.key, p.val, p.deleted))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d step %d: pending %q:\ngot  %v\nwant %v", round, step, prefix, got, want)
				}
			}
			scratch[0], scratch[1] = '!', '!' // the guest reuses its memory
			for _, k := range keys {
				want, inModel := val{}, false
				for i := len(model) - 1; i >= 0 && !inModel; i-- {
					want, inModel = model[i][string(top.self[:])+string(k)]
				}
				if !inModel {
					v, ok, _ := base.Get(top.self, k)
					want = val{v: string(v), deleted: !ok}
				}
				v, ok := top.lookup(k)
				if got := (val{v: string(v), deleted: !ok}); got != want {
					t.Fatalf("round %d step %d: lookup %s: got %+v, want %+v", round, step, k, got, want)
				}
			}
		}
		bottom := r.frames[0]
		var want []string
		for mk, v := range model[0] {
			want = append(want, fmt.Sprintf("%x/%s=%q/%v", mk[:1], mk[addressLen:], v.v, v.deleted))
		}
		slices.Sort(want) // the module's first byte orders the test modules
		var got []string
		for _, w := range bottom.sortedWrites() {
			if !w.Deleted && w.Value == nil || w.Deleted && w.Value != nil {
				t.Fatalf("round %d: write %s: value %v with deleted %v", round, w.Key, w.Value, w.Deleted)
			}
			got = append(got, fmt.Sprintf("%x/%s=%q/%v", w.Module[:1], w.Key, w.Value, w.Deleted))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: writes:\ngot  %v\nwant %v", round, got, want)
		}
		r.release()
	}
}
