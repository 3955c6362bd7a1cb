package state

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// longRun reports whether the bigger randomized runs are wanted
// (KAIROS_LONG=1, used by a longer make target); the default keeps the
// suite within the make test budget.
func longRun() bool { return os.Getenv("KAIROS_LONG") != "" }

func seeds() int {
	if n, err := strconv.Atoi(os.Getenv("KAIROS_SEEDS")); err == nil && n > 0 {
		return n
	}
	if longRun() {
		return 200
	}
	return 8
}

// model is the reference: a map per version.
type model struct {
	versions []map[string][]byte // index = height
	roots    []types.Root
}

func newModel() *model {
	return &model{versions: []map[string][]byte{{}}, roots: []types.Root{types.EmptyRoot}}
}

func (m *model) apply(ws []Write) map[string][]byte {
	next := make(map[string][]byte, len(m.versions[len(m.versions)-1]))
	for k, v := range m.versions[len(m.versions)-1] {
		next[k] = v
	}
	for _, w := range ws {
		if len(w.Value) == 0 {
			delete(next, modelKey(w.Key))
		} else {
			next[modelKey(w.Key)] = w.Value
		}
	}
	m.versions = append(m.versions, next)
	return next
}

// randWrites returns up to n writes on distinct keys.
func randWrites(r *rand.Rand, n, space int) []Write {
	var ws []Write
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		k := randKey(r, space)
		if seen[modelKey(k)] {
			continue
		}
		seen[modelKey(k)] = true
		ws = append(ws, Write{Key: k, Value: randValue(r)})
	}
	return ws
}

// TestModel runs random operations (commit, latest and historical reads,
// iteration, proofs, tampered proofs, pruning with a changing K) against the
// map-backed model, then audits the store.
func TestModel(t *testing.T) {
	for seed := 0; seed < seeds(); seed++ {
		t.Run(strconv.Itoa(seed), func(t *testing.T) { runModel(t, uint64(seed)) })
	}
}

// TestModelPebble runs the model on pebble (in memory), whose history
// reads, history pruning and export differ from the memory store's.
func TestModelPebble(t *testing.T) {
	for seed := 0; seed < max(2, seeds()/4); seed++ {
		t.Run(strconv.Itoa(seed), func(t *testing.T) { runModelOn(t, uint64(seed), true) })
	}
}

func runModel(t *testing.T, seed uint64) { runModelOn(t, seed, false) }

func runModelOn(t *testing.T, seed uint64, onPebble bool) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 99))
	opts := Options{KeepVersions: uint64(1 + r.IntN(6)), CacheBytes: 1 << 16, PruneChunk: 1 + r.IntN(8)}
	var s *Store
	if onPebble {
		s = OpenOnFSStore(t, vfs.NewMem(), opts)
	} else {
		var err error
		if s, err = OpenMemory(opts); err != nil {
			t.Fatal(err)
		}
	}
	m := newModel()
	heights := 30
	if longRun() {
		heights = 120
	}
	for h := uint64(1); h <= uint64(heights); h++ {
		ws := randWrites(r, r.IntN(40), 60)
		want := m.apply(ws)
		root := mustCommit(t, s, h, ws)
		m.roots = append(m.roots, root)
		if ref := refRoot(want); root != ref {
			t.Fatalf("height %d: root %s, reference %s", h, root, ref)
		}
		// Latest reads through the flat index.
		for i := 0; i < 10; i++ {
			k := randKey(r, 60)
			got, err := s.Get(ctx, k)
			if err != nil || !bytes.Equal(got, want[modelKey(k)]) {
				t.Fatalf("Get(%s) = %x, %v; model %x", k, got, err, want[modelKey(k)])
			}
		}
		checkIterate(t, s, want)
		// A historical version: readable and provable iff retained.
		old := uint64(r.IntN(int(h) + 1))
		v, err := s.View(ctx, old)
		if old < s.MinVersion() {
			if !errors.Is(err, ErrPruned) {
				t.Fatalf("View(%d) below min %d: %v", old, s.MinVersion(), err)
			}
		} else {
			if err != nil {
				t.Fatalf("View(%d): %v", old, err)
			}
			checkView(t, r, v, m.versions[old], m.roots[old])
			v.Close()
		}
		if r.IntN(4) == 0 {
			if r.IntN(5) == 0 {
				s.opts.KeepVersions = uint64(1 + r.IntN(6)) // K changes on a live store
			}
			if _, err := s.Prune(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Fatalf("audit: %d leaked, %d missing, %d index mismatches", len(rep.Leaked), len(rep.Missing), rep.IndexMismatch)
	}
}

func checkIterate(t *testing.T, s *Store, want map[string][]byte) {
	t.Helper()
	var mod types.Address
	mod[0] = 1
	var prev []byte
	n := 0
	err := s.Iterate(context.Background(), mod, []byte("k1"), func(k, v []byte) error {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Fatalf("iteration out of order: %q then %q", prev, k)
		}
		prev = append([]byte{}, k...)
		if !bytes.Equal(want[string(mod[:])+string(k)], v) {
			t.Fatalf("iterated %q = %x, model %x", k, v, want[string(mod[:])+string(k)])
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for k := range want {
		if sk := splitKey(k); sk.Module == mod && bytes.HasPrefix(sk.Key, []byte("k1")) {
			c++
		}
	}
	if c != n {
		t.Fatalf("iterated %d keys, model has %d", n, c)
	}
}

// checkView reads and proves random keys of a view against the model
// version, and checks that tampered proofs fail.
func checkView(t *testing.T, r *rand.Rand, v *View, want map[string][]byte, root types.Root) {
	t.Helper()
	ctx := context.Background()
	if v.Root() != root {
		t.Fatalf("view %d root %s, committed %s", v.Height(), v.Root(), root)
	}
	var keys []types.StateKey
	seen := map[string]bool{}
	for i := 0; i < 1+r.IntN(5); i++ {
		k := randKey(r, 70)
		if seen[modelKey(k)] {
			continue
		}
		seen[modelKey(k)] = true
		keys = append(keys, k)
		got, err := v.Get(ctx, k)
		if err != nil || !bytes.Equal(got, want[modelKey(k)]) {
			t.Fatalf("view %d Get(%s) = %x, %v; model %x", v.Height(), k, got, err, want[modelKey(k)])
		}
	}
	p, err := v.Prove(ctx, keys...)
	if err != nil {
		t.Fatal(err)
	}
	if err := types.Verify(root, p); err != nil {
		t.Fatalf("view %d: valid proof rejected: %v", v.Height(), err)
	}
	for _, e := range p.Entries {
		if !bytes.Equal(e.Value, want[modelKey(e.Key)]) {
			t.Fatalf("proof says %s = %x, model %x", e.Key, e.Value, want[modelKey(e.Key)])
		}
	}
	checkTampered(t, root, p, want)

	var prev types.Hash
	n := 0
	err = v.Leaves(ctx, func(kp types.Hash, k types.StateKey, val []byte) error {
		if n > 0 && bytes.Compare(prev[:], kp[:]) >= 0 {
			t.Fatalf("leaves out of key path order")
		}
		if kp != types.KeyPath(k) || !bytes.Equal(val, want[modelKey(k)]) {
			t.Fatalf("leaf %s = %x, model %x", k, val, want[modelKey(k)])
		}
		prev, n = kp, n+1
		return nil
	})
	if err != nil || n != len(want) {
		t.Fatalf("walked %d leaves, model has %d: %v", n, len(want), err)
	}
}

// checkTampered flips every byte of the encoded proof (except the height,
// which the root does not cover: clients compare it with their
// certificate), drops and adds a sibling, and changes values; each variant
// must fail to decode or to verify, unless what it claims is true (a flipped
// key byte can name another key that is absent on the same empty path).
func checkTampered(t *testing.T, root types.Root, p *types.Proof, want map[string][]byte) {
	t.Helper()
	enc := types.MustEncode(p)
	heightLen := len(types.MustEncode(p.Height))
	for i := range enc {
		if i >= 1 && i < 1+heightLen {
			continue
		}
		bad := bytes.Clone(enc)
		bad[i] ^= 0x01
		q, err := types.DecodeProof(bad)
		if err != nil {
			continue
		}
		if types.Verify(root, q) == nil && !proofTrue(q, want) {
			t.Fatalf("proof with byte %d flipped verifies a false claim", i)
		}
	}
	mutate := func(name string, f func(q *types.Proof) bool) {
		q, err := types.DecodeProof(enc)
		if err != nil {
			t.Fatal(err)
		}
		if f(q) && types.Verify(root, q) == nil && !proofTrue(q, want) {
			t.Fatalf("tampered proof (%s) verifies", name)
		}
	}
	mutate("drop sibling", func(q *types.Proof) bool {
		if len(q.Siblings) == 0 {
			return false
		}
		q.Siblings = q.Siblings[:len(q.Siblings)-types.HashLen]
		return true
	})
	mutate("add sibling", func(q *types.Proof) bool {
		q.Siblings = append(q.Siblings, bytes.Repeat([]byte{7}, types.HashLen)...)
		return true
	})
	mutate("add bitmap byte", func(q *types.Proof) bool {
		q.Bitmap = append(q.Bitmap, 0)
		return true
	})
	mutate("change value", func(q *types.Proof) bool {
		e := &q.Entries[0]
		if e.Value == nil {
			e.Value, e.Other = []byte{9}, nil
		} else {
			e.Value = append(bytes.Clone(e.Value), 1)
		}
		return true
	})
	mutate("claim absent", func(q *types.Proof) bool {
		if q.Entries[0].Value == nil {
			return false
		}
		q.Entries[0].Value = nil
		return true
	})
	mutate("deeper", func(q *types.Proof) bool {
		q.Entries[0].Depth++
		return true
	})
	mutate("depth 257", func(q *types.Proof) bool {
		q.Entries[0].Depth = types.KeyPathDepth + 1
		return true
	})
}

// proofTrue reports whether every entry of q agrees with the model.
func proofTrue(q *types.Proof, want map[string][]byte) bool {
	for _, e := range q.Entries {
		if !bytes.Equal(e.Value, want[modelKey(e.Key)]) {
			return false
		}
	}
	return true
}
