package state

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"

	"github.com/kairos-network/kairos/types"
)

// randKeyBytes draws bytes biased towards the escaped ones and their
// neighbours, where an escaping bug would show.
func randKeyBytes(r *rand.Rand, n int) []byte {
	alphabet := []byte{0, escDot, escSlash, '-', '.', '/', '0', 0xff}
	b := make([]byte, n)
	for i := range b {
		if r.IntN(2) == 0 {
			b[i] = alphabet[r.IntN(len(alphabet))]
		} else {
			b[i] = byte(r.IntN(256))
		}
	}
	return b
}

func randStateKey(r *rand.Rand) types.StateKey {
	var k types.StateKey
	copy(k.Module[:], randKeyBytes(r, types.AddressLen))
	if r.IntN(4) == 0 { // share modules often so that keys decide the order
		k.Module = types.Address{'/', '.'}
	}
	k.Key = randKeyBytes(r, r.IntN(6))
	return k
}

// kvTestTable is a full table of 300 modules, so that their ids' uvarints
// are one and two bytes long and ids 46 and 47 ('.' and '/') are escaped;
// any other module is inline. kvTestModule(i) has id i+1.
func kvTestTable() *moduleTable {
	t := newModuleTable(300)
	for i := range 300 {
		t.assign([]types.Address{kvTestModule(i)})
	}
	return t
}

func kvTestModule(i int) types.Address { return types.Address{0xaa, byte(i >> 8), byte(i)} }

// mustKVKey is t's kvKey of k, for a module that has entries.
func mustKVKey(tb testing.TB, t *moduleTable, k types.StateKey) ds.Key {
	tb.Helper()
	key, ok := t.kvKey(k)
	if !ok {
		tb.Fatalf("module of %s has no flat index entries", k)
	}
	return key
}

// The flat index must sort a module's keys like their bytes, keep each
// module's keys in one range under its prefix that holds no other
// module's key, and parse back to the (module, key) it encodes: in a
// store's table (ids of every uvarint length, inline modules past its
// limit) and with no table (all inline). The reference is bytes.Compare on
// the raw key bytes, and a module's range is checked against the first
// key of its own module and the first of the other.
func TestKVKeyRoundTripAndOrder(t *testing.T) {
	for name, tab := range map[string]*moduleTable{"ids": kvTestTable(), "no table": nil} {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			randKey := func() types.StateKey {
				k := randStateKey(r)
				if r.IntN(2) == 0 {
					k.Module = kvTestModule(r.IntN(300))
				}
				return k
			}
			for range 20000 {
				a, b := randKey(), randKey()
				ka, kb := mustKVKey(t, tab, a).String(), mustKVKey(t, tab, b).String()
				for _, k := range []types.StateKey{a, b} {
					s := mustKVKey(t, tab, k).String()
					got, err := tab.parseKVKey(s)
					if err != nil || got.Module != k.Module || !bytes.Equal(got.Key, k.Key) {
						t.Fatalf("parse(%q) = %v, %v; want %v", s, got, err, k)
					}
					if p, ok := tab.kvModulePrefix(k.Module); !ok || !strings.HasPrefix(s, p+"/") {
						t.Fatalf("%q is not under its module prefix", s)
					}
				}
				if a.Module == b.Module {
					if got, want := strings.Compare(ka, kb), bytes.Compare(a.Key, b.Key); got != want {
						t.Fatalf("order of %v, %v: %d, want %d", a, b, got, want)
					}
					continue
				}
				pa, _ := tab.kvModulePrefix(a.Module)
				pb, _ := tab.kvModulePrefix(b.Module)
				if strings.HasPrefix(kb, pa+"/") || strings.HasPrefix(ka, pb+"/") {
					t.Fatalf("%q and %q: one is under the other's module prefix", ka, kb)
				}
				// Any two keys of different modules compare like the
				// modules' empty keys: no key falls inside another
				// module's range.
				ea := mustKVKey(t, tab, types.StateKey{Module: a.Module}).String()
				eb := mustKVKey(t, tab, types.StateKey{Module: b.Module}).String()
				if got, want := strings.Compare(ka, kb), strings.Compare(ea, eb); got != want {
					t.Fatalf("order of %q, %q: %d, their modules' %d", ka, kb, got, want)
				}
			}
		})
	}
}

// A module without an id has no flat index keys while the table has ids
// left; once it is full, it is named inline. Every id's segment is its
// uvarint, escaped.
func TestKVKeyModuleSegments(t *testing.T) {
	tab := newModuleTable(200)
	m := types.Address{7}
	if _, ok := tab.kvKey(types.StateKey{Module: m}); ok {
		t.Fatal("a module without an id has a key while ids are left")
	}
	for i := range 200 {
		tab.assign([]types.Address{kvTestModule(i)})
	}
	if k := mustKVKey(t, tab, types.StateKey{Module: m}).String(); k != nsKV+string([]byte{moduleInline, 7})+strings.Repeat("\x00", types.AddressLen-1)+"/k" {
		t.Fatalf("inline key %q", k)
	}
	for _, c := range []struct {
		i   int
		seg string
	}{{0, "\x01"}, {45, ".\x01"}, {46, ".\x02"}, {126, "\x7f"}, {127, "\x80\x01"}, {199, "\xc8\x01"}} {
		if k := mustKVKey(t, tab, types.StateKey{Module: kvTestModule(c.i)}).String(); k != nsKV+c.seg+"/k" {
			t.Errorf("id %d: key %q, want segment %q", c.i+1, k, c.seg)
		}
	}
}

// randBorn returns a version with bytes that need escaping now and then.
func randBorn(r *rand.Rand) uint64 {
	switch r.IntN(3) {
	case 0:
		return r.Uint64N(1 << 20)
	case 1:
		return 0x2e2f0000 | r.Uint64N(1<<16) // '.' and '/' bytes
	}
	return r.Uint64()
}

func TestNodeKeyRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		want := nodeRef{born: randBorn(r), id: types.Hash(randKeyBytes(r, types.HashLen))}
		s := nodeKey(want.born, want.id).String()
		if strings.Count(s, "/") != strings.Count(nsNode, "/")+1 {
			t.Fatalf("%q has a '/' inside the born or the id", s)
		}
		if !strings.HasPrefix(s, nodeVersionPrefix(want.born)+"/") {
			t.Fatalf("%q is not under its version prefix", s)
		}
		got, err := parseNodeKey(s[len(nsNode):])
		if err != nil || got != want {
			t.Fatalf("parse(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}

// TestNodeKeyOrder checks what the layout is for: node keys sort by born
// first, then by id, so each version's records follow all older ones.
func TestNodeKeyOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		a := nodeRef{born: randBorn(r), id: types.Hash(randKeyBytes(r, types.HashLen))}
		b := nodeRef{born: randBorn(r), id: types.Hash(randKeyBytes(r, types.HashLen))}
		if r.IntN(4) == 0 {
			b.born = a.born
		}
		want := cmp.Compare(a.born, b.born)
		if want == 0 {
			want = bytes.Compare(a.id[:], b.id[:])
		}
		if got := strings.Compare(nodeKey(a.born, a.id).String(), nodeKey(b.born, b.id).String()); got != want {
			t.Fatalf("order of %v, %v = %d; want %d", a, b, got, want)
		}
	}
}

// TestHistKeyRoundTripAndOrder checks what the history's layout is for:
// keys sort by key path first, then by version, every key of a path is
// under appendHistPath(path) and no other path's is, and parseHistKey
// inverts histKey. Paths are drawn from few values near the escaped bytes,
// so that equal paths and paths differing in an escaped byte are common.
func TestHistKeyRoundTripAndOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	type ref struct {
		kp types.Hash
		d  uint64
	}
	draw := func() ref {
		var kp types.Hash
		copy(kp[:], randKeyBytes(r, types.HashLen))
		kp[0], kp[1] = byte(r.IntN(2)), "./-0"[r.IntN(4)]
		return ref{kp, randBorn(r)}
	}
	for range 5000 {
		a, b := draw(), draw()
		if r.IntN(3) == 0 {
			b.kp = a.kp
		}
		ka, kb := histKey(a.kp, a.d).String(), histKey(b.kp, b.d).String()
		want := bytes.Compare(a.kp[:], b.kp[:])
		if want == 0 {
			want = cmp.Compare(a.d, b.d)
		}
		if got := strings.Compare(ka, kb); got != want {
			t.Fatalf("order of %v, %v = %d; want %d", a, b, got, want)
		}
		pa := string(appendHistPath(nil, a.kp))
		if !strings.HasPrefix(ka, pa) || strings.HasPrefix(kb, pa) != (a.kp == b.kp) {
			t.Fatalf("path prefix %q: %q, %q", pa, ka, kb)
		}
		kp, d, err := parseHistKey(ka[len(nsHist):])
		if err != nil || kp != a.kp || d != a.d {
			t.Fatalf("parse(%q) = %x, %d, %v; want %v", ka, kp, d, err, a)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	tab := kvTestTable()
	mod := "\x00" + strings.Repeat("m", types.AddressLen) // inline
	m3 := kvTestModule(3)
	for _, s := range []string{
		nsKV + mod,                           // no key part
		nsKV + mod + "/x",                    // wrong separator
		nsKV + mod[:types.AddressLen] + "/k", // inline module too short
		nsKV + mod + "/k.",                   // dangling escape
		nsKV + mod + "/k.\x03",               // unknown escape
		nsKV + mod + "/ka/b",                 // raw '/' in the key
		nsKV + mod + ".\x01/k",               // inline module too long
		"/kairos/x/" + mod + "/k",            // wrong namespace
		nsKV + "/k",                          // no module
		nsKV + "\x80/k",                      // truncated uvarint
		nsKV + "\x81\x00/k",                  // id 1 in two bytes
		nsKV + "\xad\x02/k",                  // id 301: not in the table
		nsKV + "\x00" + string(m3[:]) + "/k", // inline, but the module has an id
	} {
		if _, err := tab.parseKVKey(s); err == nil {
			t.Errorf("parseKVKey(%q) accepted", s)
		}
	}
	if _, err := tab.parseKVKey(nsKV + "\x00" + strings.Repeat("m", types.AddressLen-2) + ".\x02.\x01/ka"); err != nil {
		t.Errorf("escaped module rejected: %v", err)
	}
	if _, err := newModuleTable(300).parseKVKey(nsKV + mod + "/k"); err == nil {
		t.Error("inline module accepted while the table has ids left")
	}
	if _, err := tab.parseKVKey(nsKV + "\xad\x02/k"); !errors.Is(err, ErrCorrupt) || !errors.Is(err, errModuleID) {
		t.Errorf("unknown id: %v", err)
	}
	for _, s := range []string{"", strings.Repeat("a", types.HashLen-1), strings.Repeat("a", types.HashLen+1), strings.Repeat("a", types.HashLen-1) + "."} {
		if _, err := parseNodeKey(s); err == nil {
			t.Errorf("parseNodeKey(%q) accepted", s)
		}
	}
	path := strings.Repeat("p", types.HashLen)
	for _, s := range []string{
		path,                                // no version
		path + "/" + "1234567",              // version too short
		path + "/" + "123456789",            // version too long
		path + "12345678",                   // no separator
		path[1:] + "/12345678",              // path too short
		path + "/1234567.",                  // dangling escape
		strings.Repeat("8", 8) + "/" + path, // format 3's order
	} {
		if _, _, err := parseHistKey(s); err == nil {
			t.Errorf("parseHistKey(%q) accepted", s)
		}
	}
}

// FuzzParseHistKey: any string parses to a (key path, version) whose key
// is that string, or is rejected; never a panic.
func FuzzParseHistKey(f *testing.F) {
	f.Add(histKey(types.Hash{'.', '/', 1}, 0x2e2f).String()[len(nsHist):])
	f.Add(strings.Repeat("p", types.HashLen) + "/12345678")
	f.Fuzz(func(t *testing.T, s string) {
		kp, d, err := parseHistKey(s)
		if err != nil {
			return
		}
		if back := histKey(kp, d).String()[len(nsHist):]; back != s {
			t.Fatalf("parse(%q) = %x, %d, which encodes to %q", s, kp, d, back)
		}
	})
}

// FuzzParseKVKey: any string parses to a key that encodes back to it, or
// is rejected; never a panic.
func FuzzParseKVKey(f *testing.F) {
	tab := kvTestTable()
	f.Add(mustKVKey(f, tab, types.StateKey{Module: types.Address{'/', '.'}, Key: []byte("a/.b")}).String())
	f.Add(mustKVKey(f, tab, types.StateKey{Module: kvTestModule(46), Key: []byte("a")}).String())
	f.Add(mustKVKey(f, tab, types.StateKey{Module: kvTestModule(200), Key: []byte("a")}).String())
	f.Add(nsKV + "\x00" + strings.Repeat("m", types.AddressLen) + "/k")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := tab.parseKVKey(s)
		if err != nil {
			return
		}
		if back := mustKVKey(t, tab, k).String(); back != s {
			t.Fatalf("parse(%q) = %v, which encodes to %q", s, k, back)
		}
	})
}

// Keys made of the escaped bytes and their neighbours go through real
// backends: every one reads back, and Iterate returns a module's keys under a
// prefix in raw byte order, as the reference (a sorted slice) says.
func TestEscapedKeysThroughStore(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	mod := types.Address{'.', '/', escDot}
	var writes []Write
	seen := map[string]bool{}
	for len(writes) < 300 {
		k := types.StateKey{Module: mod, Key: randKeyBytes(r, r.IntN(5))}
		if r.IntN(5) == 0 {
			k.Module = types.Address{'.', '/', escSlash} // a neighbour module
		}
		id := string(k.Module[:]) + string(k.Key)
		if seen[id] {
			continue
		}
		seen[id] = true
		writes = append(writes, Write{Key: k, Value: []byte(id)})
	}
	wantUnder := func(prefix []byte) [][]byte {
		var want [][]byte
		for _, w := range writes {
			if w.Key.Module == mod && bytes.HasPrefix(w.Key.Key, prefix) {
				want = append(want, w.Key.Key)
			}
		}
		slices.SortFunc(want, bytes.Compare)
		return want
	}
	for name, open := range map[string]func(*testing.T) *Store{"memory": openMem, "pebble": openPebble, "leveldb": openLevel} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			if _, err := s.Commit(ctx, 1, writes); err != nil {
				t.Fatal(err)
			}
			for _, w := range writes {
				if v, err := s.Get(ctx, w.Key); err != nil || !bytes.Equal(v, w.Value) {
					t.Fatalf("Get(%q) = %q, %v; want %q", w.Key.Key, v, err, w.Value)
				}
			}
			for _, prefix := range [][]byte{nil, {'.'}, {'/'}} {
				var got [][]byte
				err := s.Iterate(ctx, mod, prefix, func(k, _ []byte) error {
					got = append(got, bytes.Clone(k))
					return nil
				})
				if want := wantUnder(prefix); err != nil || !slices.EqualFunc(got, want, bytes.Equal) {
					t.Fatalf("Iterate(%q) = %q, %v; want %q", prefix, got, err, want)
				}
			}
		})
	}
}
