package state

import (
	"context"
	"testing"

	"github.com/ipfs/go-datastore/query"
)

// TestUsage checks the breakdown against what is known of the content (one
// history record per leaf replaced or deleted, one index entry per live key,
// a root record per version) and, on a memory store, against a plain
// query of every record; pebble's iterator path must give the same
// breakdown for everything but the change sets, which pebble does not write.
func TestUsage(t *testing.T) {
	ctx := context.Background()
	k := func(i int) Write { return Write{Key: splitKey(string(make([]byte, 32)) + string(rune('a'+i)))} }
	blocks := [][]Write{
		{k(0), k(1), k(2), k(3)},
		{k(1), k(4)},
		{k(0)}, // deleted below
	}
	for h, b := range blocks {
		for i := range b {
			b[i].Value = []byte{byte(h), 1, 2}
		}
	}
	blocks[2][0].Value = nil
	var got [2][]UsageKind
	for j, s := range []*Store{openMem(t), openPebble(t)} {
		for h, b := range blocks {
			mustCommit(t, s, uint64(h+1), b)
		}
		u, err := s.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got[j] = u
		byKind := map[string]UsageKind{}
		for _, x := range u {
			byKind[x.Kind] = x
		}
		// Leaves replaced: k(1) at version 2, k(0) at version 3.
		if x := byKind[UsageHistory]; x.Records != 2 || x.ValueBytes != 6 {
			t.Errorf("store %d: history %+v, want 2 records of 6 value bytes", j, x)
		}
		// Live keys a..e but a: 4 entries of 3-byte values.
		if x := byKind[UsageIndex]; x.Records != 4 || x.ValueBytes != 12 {
			t.Errorf("store %d: index %+v, want 4 records of 12 value bytes", j, x)
		}
		if n := byKind[UsageRoots].Records; n != 4 {
			t.Errorf("store %d: %d root records, want 4 (versions 0..3)", j, n)
		}
		// Versions 2 and 3 replaced leaves and the root node.
		if n := byKind[UsageStale].Records; n != 2 {
			t.Errorf("store %d: %d stale lists, want 2", j, n)
		}
		// One module, with one id.
		if x := byKind[UsageModules]; x.Records != 1 || x.ValueBytes != 32 {
			t.Errorf("store %d: module table %+v, want 1 record of 32 value bytes", j, x)
		}
		if byKind[UsageNodes].Records == 0 {
			t.Errorf("store %d: no nodes", j)
		}
		if j != 0 {
			continue
		}
		res, err := s.Datastore().Query(ctx, query.Query{})
		if err != nil {
			t.Fatal(err)
		}
		all, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		var total, records int64
		for _, e := range all {
			total += int64(len(e.Key) + len(e.Value))
		}
		for _, x := range u {
			total -= x.Bytes()
			records += x.Records
		}
		if total != 0 || records != int64(len(all)) {
			t.Errorf("breakdown misses %d bytes, has %d records of %d", total, records, len(all))
		}
	}
	for i := range got[0] {
		if got[0][i].Kind != UsageOther && got[0][i] != got[1][i] {
			t.Errorf("memory %+v, pebble %+v", got[0][i], got[1][i])
		}
	}
}
