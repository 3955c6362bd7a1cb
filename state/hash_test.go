package state

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kairos-network/kairos/types"
)

// refSub is the dumb reference for a node's binary subtrees: heap position
// i (1..31) of the slots a, by plain recursion, nothing kept or skipped.
func refSub(a *[fanout]slot, i int) (types.NodeKind, types.Hash) {
	if i >= fanout {
		return a[i-fanout].treeKind(), a[i-fanout].h
	}
	lk, lh := refSub(a, 2*i)
	rk, rh := refSub(a, 2*i+1)
	return types.Combine(lk, lh, rk, rh)
}

// randSlots fills a with a random node's slots: dense, sparse (a bottom
// node of a large tree holds two or three leaves) or a single child, so
// that every top position is empty, a lone leaf or internal in some cases.
func randSlots(r *rand.Rand, a *[fanout]slot) {
	*a = [fanout]slot{}
	fill := []int{16, 3, 1, 17}[r.IntN(4)]
	for i := range a {
		if fill == 17 {
			a[i] = randFull(r) // a full node
		} else if r.IntN(16) < fill {
			a[i] = randSlot(r)
		}
	}
	if c, last := occupied(a); c == 0 || c == 1 && a[last].kind == slotLeaf {
		a[r.IntN(fanout)] = slot{kind: slotChild, h: randHash(r), born: 1}
	}
}

func randHash(r *rand.Rand) (h types.Hash) {
	for i := range h {
		h[i] = byte(r.Uint32())
	}
	return h
}

// randLeaf is the leaf data of a random value hash and key.
func randLeaf(r *rand.Rand) string {
	return leafData(randHash(r), types.StateKey{Key: []byte{byte(r.Uint32()), byte(r.Uint32())}})
}

// randFull is randSlot never empty.
func randFull(r *rand.Rand) slot {
	if r.IntN(2) == 0 {
		return slot{kind: slotLeaf, h: randHash(r), leaf: randLeaf(r), born: 1}
	}
	return slot{kind: slotChild, h: randHash(r), born: 1}
}

func randSlot(r *rand.Rand) slot {
	switch r.IntN(3) {
	case 0:
		return slot{}
	case 1:
		return slot{kind: slotLeaf, h: randHash(r), leaf: randLeaf(r), born: 1}
	}
	return slot{kind: slotChild, h: randHash(r), born: 1}
}

// checkSubs compares every position of n with the reference of its slots.
func checkSubs(t *testing.T, n *node, what string) {
	t.Helper()
	a := n.all()
	if _, h := refSub(&a, 1); n.id != h {
		t.Fatalf("%s: id %s, reference %s", what, n.id, h)
	}
	for i := 1; i < 2*fanout; i++ {
		k, h := n.sub(i)
		if rk, rh := refSub(&a, i); k != rk || h != rh {
			t.Fatalf("%s: position %d is (%v, %s), reference (%v, %s)", what, i, k, h, rk, rh)
		}
	}
}

// TestHashChangedAgainstReference: a node updated from another rehashes
// only the top positions above its changed slots and takes the rest from
// the old node's kept hashes. Over chains of random updates (one slot to
// all of them, slots emptied, turned from leaf to child and back, a
// changed mask with extra bits, an old node read from the datastore with
// no kept hashes) the id and every binary subtree must equal the plain
// recursion over the new slots, and the kept positions must be exactly the
// internal ones.
func TestHashChangedAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 2))
	for range 300 {
		var a [fanout]slot
		randSlots(r, &a)
		n := newNode(1, &a, nil, allSlots, nil)
		checkSubs(t, n, "new subtree")
		checkKept(t, n, &a)
		// changed accumulates over the rounds that make no node, whose
		// changes the next node still has against n.
		var changed uint16
		for gen := range 12 {
			prev := n
			if gen%5 == 4 {
				// As read from the datastore: nothing kept yet.
				prev = makeNode(1, &a, nil)
				prev.id = n.id
			}
			full := r.IntN(3) != 0 // a full node mostly stays full
			for range 1 + r.IntN([]int{1, 3, fanout}[r.IntN(3)]) {
				s := r.IntN(fanout)
				if full {
					a[s] = randFull(r)
				} else {
					a[s] = randSlot(r)
				}
				changed |= 1 << s
			}
			if c, last := occupied(&a); c == 0 || c == 1 && a[last].kind == slotLeaf {
				continue // finish makes no node of these
			}
			if r.IntN(4) == 0 {
				changed |= uint16(r.Uint32()) // a superset does no harm
			}
			n = newNode(1, &a, prev, changed, nil)
			changed = 0
			checkSubs(t, n, "updated")
			checkKept(t, n, &a)
		}
	}
}

// checkKept compares the top positions n kept with the reference of its
// slots a: 1..topLen-1 for a node of topKeepMin slots or more, none below.
func checkKept(t *testing.T, n *node, a *[fanout]slot) {
	t.Helper()
	c, _ := occupied(a)
	want := 0
	if c >= topKeepMin {
		want = topLen
	}
	kt := n.top()
	if want == 0 {
		if kt != nil {
			t.Fatalf("a node of %d slots kept %d positions", c, kt.end()-1)
		}
		return
	}
	if kt == nil || kt.end() != want {
		t.Fatalf("a node of %d slots kept %v, want positions 1..%d", c, kt, want-1)
	}
	for i := 1; i < want; i++ {
		k, h := refSub(a, i)
		if (kt.mask()&(1<<i) != 0) != (k == types.KindInternal) || kt.hash(i) != h {
			t.Fatalf("kept position %d (mask %016b, %s), reference (%v, %s)", i, kt.mask(), kt.hash(i), k, h)
		}
	}
}

// TestSubComputesInnerHashesOnce: a node read from the datastore has no
// inner hashes; proofs on several goroutines at once compute them (-race
// checks the publication), and every answer matches the reference.
func TestSubComputesInnerHashesOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	var a [fanout]slot
	for i := range a {
		a[i] = slot{kind: slotLeaf, h: randHash(r), leaf: randLeaf(r), born: 1}
	}
	a[3] = slot{}
	a[9] = slot{kind: slotChild, h: randHash(r), born: 1}
	n := makeNode(1, &a, nil)
	_, n.id = refSub(&a, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 1; i < 2*fanout; i++ {
				n.sub(i)
			}
		})
	}
	wg.Wait()
	if n.inner.Load() == nil {
		t.Fatal("sub kept no hashes")
	}
	checkSubs(t, n, "decoded")
}
