package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kairos-network/kairos/types"
)

// kvTestKeys returns flat index keys of every shape pebble may compare on
// a versioned store: records (prefix and version), prefixes alone (the
// seek keys of latest reads), module and key prefixes without kvEnd (the
// bounds of Iterate), and keys of other namespaces.
func kvTestKeys(r *rand.Rand, t *moduleTable) [][]byte {
	var keys [][]byte
	for range 300 {
		k := types.StateKey{Key: randKeyBytes(r, r.IntN(6))}
		k.Module[0] = byte(r.IntN(2))
		p, ok := t.appendKVKey(nil, k)
		if !ok {
			continue
		}
		keys = append(keys, bytes.Clone(p), appendKVVersion(bytes.Clone(p), r.Uint64N(1<<20)), append(bytes.Clone(p), kvEnd...))
		if r.IntN(4) == 0 {
			// Versions whose bytes hold kvEnd themselves.
			keys = append(keys, appendKVVersion(bytes.Clone(p), ^uint64(0x0001_0000)), appendKVVersion(bytes.Clone(p), ^uint64(1)))
		}
	}
	return append(keys, []byte(nsKV), nsEnd(nsKV), []byte(nsNode), []byte("/kairos/latest"), nil)
}

// TestKVComparerContract checks kvSplit and kvImmediateSuccessor against
// pebble's Comparer contract over keys of every shape: byte order is the
// order of the prefixes, then of the suffixes; a prefix sorts before the
// keys it is the prefix of; a prefix's immediate successor is a prefix
// above every key of that prefix and below every greater prefix.
func TestKVComparerContract(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	mods := &moduleTable{max: ModuleIDsMax, versioned: true}
	mods.view.Store(&moduleView{ids: map[string]uint64{string(make([]byte, types.AddressLen)): 1}})
	keys := kvTestKeys(r, mods)
	split := kvComparer.Split
	for _, a := range keys {
		pa, sa := a[:split(a)], a[split(a):]
		if len(sa) > 0 && bytes.Compare(pa, a) >= 0 {
			t.Fatalf("prefix %q of %q does not sort before it", pa, a)
		}
		if len(sa) > 0 && split(sa) != len(sa) {
			t.Fatalf("suffix %q of %q splits", sa, a)
		}
		for _, b := range keys {
			pb, sb := b[:split(b)], b[split(b):]
			want := bytes.Compare(pa, pb)
			if want == 0 {
				want = bytes.Compare(sa, sb)
			}
			if got := kvComparer.Compare(a, b); got != want {
				t.Fatalf("Compare(%q, %q) = %d; by prefix, then suffix %d", a, b, got, want)
			}
		}
		if len(sa) > 0 || len(a) == 0 {
			continue
		}
		succ := kvComparer.ImmediateSuccessor(nil, a)
		if split(succ) != len(succ) || bytes.Compare(a, succ) >= 0 {
			t.Fatalf("ImmediateSuccessor(%q) = %q: not a prefix above it", a, succ)
		}
		for _, b := range keys {
			pb := b[:split(b)]
			if bytes.Equal(pb, a) && bytes.Compare(b, succ) >= 0 {
				t.Fatalf("ImmediateSuccessor(%q) = %q: not above %q, of that prefix", a, succ, b)
			}
			if bytes.Compare(pb, a) > 0 && bytes.Compare(pb, succ) < 0 {
				t.Fatalf("ImmediateSuccessor(%q) = %q: prefix %q between", a, succ, pb)
			}
		}
	}
}

// kvRecords returns the versions of k's flat index records on a versioned
// store, newest first, and their values (empty: a marker).
func kvRecords(t *testing.T, s *Store, k types.StateKey) ([]uint64, [][]byte) {
	t.Helper()
	p, ok := s.modules.appendKVKey(nil, k)
	if !ok {
		return nil, nil
	}
	p = append(p, kvEnd...)
	it, err := s.pdb.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var vs []uint64
	var vals [][]byte
	for ok := it.SeekGE(p); ok && bytes.HasPrefix(it.Key(), p); ok = it.Next() {
		if len(it.Key()) != len(p)+8 {
			t.Fatalf("record %q of %s: not a version after the prefix", it.Key(), k)
		}
		vs = append(vs, ^binary.BigEndian.Uint64(it.Key()[len(p):]))
		vals = append(vals, bytes.Clone(it.Value()))
	}
	return vs, vals
}

// TestVersionedPruneKeepsWhatRetainedVersionsRead writes a few keys over
// many versions (deletions and re-creations, A → B → A) with pruning after
// every commit, and checks after each one that a key's records are exactly
// those the retained versions read: every record above the prune progress
// P, and the newest at or below P if it holds a value (a marker at or below
// P goes, and so does everything it or a value superseded).
func TestVersionedPruneKeepsWhatRetainedVersionsRead(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(8, 9))
	for _, k := range []uint64{1, 2, 5} {
		s := OpenOnFSStoreVersioned(t, vfs.NewMem(), Options{KeepVersions: k, PruneChunk: 3})
		keys := []types.StateKey{key("a"), key("b"), key("c"), key("d")}
		written := map[string]map[uint64][]byte{} // key → version → value (nil: deleted)
		live := map[string]bool{}
		for h := uint64(1); h <= 40; h++ {
			var ws []Write
			for _, sk := range keys {
				if r.IntN(2) == 0 {
					continue
				}
				var v []byte
				if !live[string(sk.Key)] || r.IntN(3) > 0 {
					v = []byte{'A' + byte(r.IntN(2))} // A → B → A comes back often
				}
				if v == nil && !live[string(sk.Key)] {
					continue // deleting an absent key changes nothing
				}
				ws = append(ws, Write{Key: sk, Value: v})
			}
			mustCommit(t, s, h, ws)
			for _, w := range ws {
				// A write of the value the key holds changes nothing.
				vs := written[string(w.Key.Key)]
				if vs == nil {
					vs = map[uint64][]byte{}
					written[string(w.Key.Key)] = vs
				}
				last, lastV := uint64(0), []byte(nil)
				for d, v := range vs {
					if d >= last {
						last, lastV = d, v
					}
				}
				if !bytes.Equal(lastV, w.Value) {
					vs[h] = w.Value
				}
				live[string(w.Key.Key)] = w.Value != nil
			}
			st, err := s.Prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			p := st.Min
			for _, sk := range keys {
				var want []uint64
				var wantVals [][]byte
				vs := written[string(sk.Key)]
				ds := make([]uint64, 0, len(vs))
				for d := range vs {
					ds = append(ds, d)
				}
				slices.Sort(ds)
				slices.Reverse(ds)
				for _, d := range ds {
					if d > p {
						want, wantVals = append(want, d), append(wantVals, vs[d])
						continue
					}
					if vs[d] != nil {
						want, wantVals = append(want, d), append(wantVals, vs[d])
					}
					break
				}
				got, gotVals := kvRecords(t, s, sk)
				if !slices.Equal(got, want) || !slices.EqualFunc(gotVals, wantVals, func(a, b []byte) bool { return bytes.Equal(a, b) }) {
					t.Fatalf("K=%d, version %d (pruned to %d): %s has records %v %q; want %v %q", k, h, p, sk, got, gotVals, want, wantVals)
				}
			}
		}
		auditClean(t, s)
	}
}

// TestVersionedFormatRefused opens a store of each flat index layout as
// the other: pebble refuses the comparer, which is ErrFormat.
func TestVersionedFormatRefused(t *testing.T) {
	for _, versioned := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "db")
		s, err := OpenPebble(dir, Options{versionedIndex: versioned})
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, 1, []Write{{Key: key("a"), Value: []byte("A")}})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenPebble(dir, Options{versionedIndex: !versioned}); !errors.Is(err, ErrFormat) {
			if err == nil {
				s.Close()
			}
			t.Fatalf("versioned=%v opened as %v: %v, want ErrFormat", versioned, !versioned, err)
		}
	}
}

// TestVersionedOldReads reads a key written by every version at versions
// far below its latest write, and a key written once: each read finds the
// newest record at or below its version.
func TestVersionedOldReads(t *testing.T) {
	ctx := context.Background()
	s := OpenOnFSStoreVersioned(t, vfs.NewMem(), Options{})
	for h := uint64(1); h <= 300; h++ {
		ws := []Write{{Key: key("hot"), Value: binary.BigEndian.AppendUint64(nil, h)}}
		if h == 1 {
			ws = append(ws, Write{Key: key("cold"), Value: []byte("cold")})
		}
		mustCommit(t, s, h, ws)
	}
	for _, h := range []uint64{1, 2, 150, 299, 300} {
		v, err := s.View(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Get(ctx, key("hot"))
		if err != nil || !bytes.Equal(got, binary.BigEndian.AppendUint64(nil, h)) {
			t.Fatalf("hot at %d: %x, %v", h, got, err)
		}
		if got, err := v.Get(ctx, key("cold")); err != nil || string(got) != "cold" {
			t.Fatalf("cold at %d: %q, %v", h, got, err)
		}
		v.Close()
	}
}
