package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/kairos-network/kairos/types"
)

// ModuleIDsMax is the most module ids a store assigns. A leaf of a module
// with an id names it by the id (a uvarint, one to three bytes) in its node
// record instead of the 32-byte address; past the limit a new module's
// leaves carry the address inline behind moduleInline, so a store of
// many modules only loses the saving, never a commit. It bounds the table
// Open loads (2 MiB of addresses).
const ModuleIDsMax = 65535

// moduleInline is the module id of a leaf that carries its module's address
// inline, after the id: a module without an id (past ModuleIDsMax, or
// written by a path that did not assign one). Ids start at 1.
const moduleInline = 0

// moduleTable is a store's module ids: a store-local dictionary that node
// records name their leaves' modules by. Ids appear in no root, proof or
// snapshot, and a decoded node holds the addresses, so they never reach the
// tree's hashes; they are assigned in sorted address order within each
// writer's call all the same, so that two stores fed the same commits hold
// the same records.
//
// Concurrency: module (decoding), id and the flat index's key functions
// (keys.go) may be called from any goroutine: the latest reads resolve a
// module's id while commits assign new ones. assign, take and untake are
// the writers' side, under the store's commitMu (or a snapshot install's
// writer lock). The table is published whole (moduleView) on every assign:
// assignment is rare (a module's first write), so copying the address →
// id map then costs less than a lock on every read.
type moduleTable struct {
	view atomic.Pointer[moduleView]
	max  int // ModuleIDsMax, lower in tests
	// unsaved lists the ids assigned and not yet handed to a batch
	// (take); writers only. A commit rejected after its assign (a tree
	// update that failed) leaves its ids here for the next one to write,
	// before any record of a durable version names them.
	unsaved []moduleRecord
}

// moduleView is one published state of a moduleTable; it never changes.
type moduleView struct {
	// addrs holds the module of id i at addrs[i-1]; ok false marks an id
	// that is not stored (a torn commit on a backend without atomic
	// batches can leave gaps, see loadModules).
	addrs []moduleEntry
	ids   map[string]uint64 // address bytes → id
}

// full reports whether the table has no id left to assign: a module
// without an id then keeps its address inline, in node records and flat
// index keys.
func (t *moduleTable) full(v *moduleView) bool { return len(v.addrs) >= t.max }

type moduleEntry struct {
	a  types.Address
	ok bool
}

// moduleRecord is an id a writer assigned, for it to persist in the batch
// that first uses it.
type moduleRecord struct {
	id uint64
	a  types.Address
}

func newModuleTable(max int) *moduleTable {
	t := &moduleTable{max: max}
	t.view.Store(&moduleView{ids: map[string]uint64{}})
	return t
}

// module returns the module of id, if the table holds it.
func (t *moduleTable) module(id uint64) (types.Address, bool) {
	if t == nil {
		return types.Address{}, false
	}
	as := t.view.Load().addrs
	if id == moduleInline || id > uint64(len(as)) {
		return types.Address{}, false
	}
	e := as[id-1]
	return e.a, e.ok
}

// names reports whether id names module m (its 32 address bytes) in t.
func (t *moduleTable) names(id uint64, m string) bool {
	a, ok := t.module(id)
	return ok && string(a[:]) == m
}

// id returns the id of the module whose address bytes are m (the module
// part of a leafData). A nil table holds no ids (record writers outside a
// store: every module inline).
func (t *moduleTable) id(m string) (uint64, bool) {
	if t == nil {
		return 0, false
	}
	id, ok := t.view.Load().ids[m]
	return id, ok
}

// assign gives an id to each module of ms (in any order, repeats allowed)
// that has none, in sorted address order, while ids are left, and
// publishes them; take returns them for the writer to persist.
func (t *moduleTable) assign(ms []types.Address) {
	v := t.view.Load()
	var fresh []types.Address
	for _, m := range ms {
		if _, ok := v.ids[string(m[:])]; !ok {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) == 0 {
		return
	}
	slices.SortFunc(fresh, func(a, b types.Address) int { return bytes.Compare(a[:], b[:]) })
	fresh = slices.Compact(fresh)
	room := t.max - len(v.addrs)
	if room <= 0 {
		return
	}
	// Appending to addrs leaves the entries a reader of v sees unchanged.
	as := v.addrs
	ids := make(map[string]uint64, len(v.ids)+min(len(fresh), room))
	for m, id := range v.ids {
		ids[m] = id
	}
	for _, m := range fresh[:min(len(fresh), room)] {
		as = append(as, moduleEntry{a: m, ok: true})
		id := uint64(len(as))
		ids[string(m[:])] = id
		t.unsaved = append(t.unsaved, moduleRecord{id: id, a: m})
	}
	t.view.Store(&moduleView{addrs: as, ids: ids})
}

// take returns the ids assigned since the last take, which the caller's
// batch must persist with (or before) the first records that name them.
func (t *moduleTable) take() []moduleRecord {
	recs := t.unsaved
	t.unsaved = nil
	return recs
}

// untake gives back ids take returned whose batch failed: the next writer
// persists them.
func (t *moduleTable) untake(recs []moduleRecord) {
	t.unsaved = append(recs, t.unsaved...)
}

// assignWrites assigns ids to the modules of the items that write a
// value: the leaves a tree update can add.
func (t *moduleTable) assignWrites(items []item) {
	ids := t.view.Load().ids
	var ms []types.Address
	for i := range items {
		if items[i].value == nil {
			continue
		}
		if _, ok := ids[string(items[i].key.Module[:])]; !ok {
			ms = append(ms, items[i].key.Module)
		}
	}
	t.assign(ms)
}

// moduleKey names the table record of id: the address of its module.
func moduleKey(id uint64) ds.Key { return ds.RawKey(nsModule + heightStr(id)) }

// putModules puts the table records of recs with put.
func putModules(recs []moduleRecord, put func(k ds.Key, v []byte) error) error {
	for _, r := range recs {
		if err := put(moduleKey(r.id), bytes.Clone(r.a[:])); err != nil {
			return err
		}
	}
	return nil
}

// loadModules reads the store's table. Every id a durable record names is
// there: a writer persists an id in the batch of the first records that
// use it, or (snapshot builds) durably before them. Ids written by a commit
// that did not finish are kept: no record names them after recovery, and
// keeping them is simpler than finding them (a backend without atomic
// batches may have kept any subset of that commit's, hence the gaps).
func loadModules(ctx context.Context, d ds.Datastore, max int) (*moduleTable, error) {
	res, err := d.Query(ctx, query.Query{Prefix: strings.TrimSuffix(nsModule, "/")})
	if err != nil {
		return nil, err
	}
	entries, err := res.Rest()
	if err != nil {
		return nil, err
	}
	t := newModuleTable(max)
	var as []moduleEntry
	ids := map[string]uint64{}
	for _, e := range entries {
		id, err := parseHeightKey(e.Key, nsModule)
		if err != nil || id == moduleInline || id > uint64(max) || len(e.Value) != types.AddressLen {
			return nil, fmt.Errorf("%w: bad module table record %q", ErrCorrupt, e.Key)
		}
		if id > uint64(len(as)) {
			as = append(as, make([]moduleEntry, int(id)-len(as))...)
		}
		m := types.Address(e.Value)
		as[id-1] = moduleEntry{a: m, ok: true}
		if old, ok := ids[string(m[:])]; !ok || id < old {
			ids[string(m[:])] = id
		}
	}
	t.view.Store(&moduleView{addrs: as, ids: ids})
	return t, nil
}

// appendLeafRecord appends a leaf (its leafData l) as a node record holds
// it: the uvarint length of its key, its value hash, the uvarint id of its
// module (moduleInline followed by the address if it has none), its key.
func appendLeafRecord(buf []byte, l string, t *moduleTable) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(l)-leafFixed))
	buf = append(buf, l[:types.HashLen]...)
	if id, ok := t.id(l[types.HashLen:leafFixed]); ok {
		buf = binary.AppendUvarint(buf, id)
	} else {
		buf = append(append(buf, moduleInline), l[types.HashLen:leafFixed]...)
	}
	return append(buf, l[leafFixed:]...)
}

// leafRecordLen is the length appendLeafRecord appends for l.
func leafRecordLen(l string, t *moduleTable) int {
	kl := len(l) - leafFixed
	n := uvarintLen(uint64(kl)) + types.HashLen + kl
	if id, ok := t.id(l[types.HashLen:leafFixed]); ok {
		return n + uvarintLen(id)
	}
	return n + 1 + types.AddressLen
}

// errModuleID reports a leaf naming a module id the store's table does not
// hold; it always comes wrapped in ErrCorrupt.
var errModuleID = errors.New("state: unknown module id")
