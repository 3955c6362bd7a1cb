package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math/bits"
	"runtime"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kairos-network/kairos/types"
)

// A commit's pebble batch is built in key order, in parts that copy the
// version's records (encoded by the update, see newRecord) concurrently.
// Both are about the commit's wall time (see RATIONALE.md, "Why is a
// commit's batch built in key order and in parts?"): at 1M keys a 10k-key
// block's batch holds ~30k records (~14 MB), which is more than half
// pebble's memtable, so pebble sorts it before its commit, on the
// committing goroutine with the other core idle; an input already in order
// costs that sort one pass.
//
// Key order, namespace by namespace: the version's history records (nsHist:
// one per key path, all of the same version, so in key path order), the
// flat index (nsKV, in the order of its keys' bytes: by module id
// segment, then key), the latest pointer, the module ids the version
// assigned (nsModule, in id order), the version's node records (nsNode:
// all under the same born, so in id order), its root record (nsRoot) and
// its stale list (nsStale).

// recRef is one of a version's new records in the id order of the batch:
// i indexes o.records; hi is the id's first 8 bytes, which decide almost
// every comparison.
type recRef struct {
	hi uint64
	i  int
}

// pebbleVersionBatch returns version height's pebble batch (see
// commitBatch), latest pointer included, in key order.
func (s *Store) pebbleVersionBatch(height uint64, root slot, o *out) (*pebble.Batch, error) {
	parts := 1
	if len(o.records) >= parallelMin {
		parts = runtime.GOMAXPROCS(0)
	}
	// Split the records by id range, so that each part sorts and copies
	// its own and the parts concatenate in key order. Ids are hashes, so
	// the ranges are about equal; a writer grinding ids only unbalances the
	// work, never the order.
	hiOf := func(i int) uint64 { return binary.BigEndian.Uint64(o.records[i].id[:8]) }
	part := func(hi uint64) int {
		p, _ := bits.Mul64(hi, uint64(parts))
		return int(p)
	}
	counts := make([]int, parts)
	for i := range o.records {
		counts[part(hiOf(i))]++
	}
	// Place the refs part by part in one array (a counting sort by part).
	refs := make([][]recRef, parts)
	placed := make([]recRef, 0, len(o.records))
	for p := range refs {
		refs[p] = placed[len(placed) : len(placed) : len(placed)+counts[p]]
		placed = placed[:len(placed)+counts[p]]
	}
	for i := range o.records {
		hi := hiOf(i)
		p := part(hi)
		refs[p] = append(refs[p], recRef{hi, i})
	}

	size := 1 << 10
	for _, h := range o.history {
		size += histKeyLen + 12 + len(h.value)
	}
	for _, ch := range o.changes {
		size += 2*types.AddressLen + 2*len(ch.Key.Key) + len(ch.New) + 32
	}
	size += 4 + len(o.stale)*staleEntryLen + len(o.history)*types.HashLen
	size += len(o.modules) * (len(nsModule) + 16 + types.AddressLen + 12)
	sizes := make([]int, parts)
	for p := range refs {
		for _, r := range refs[p] {
			sizes[p] += nodeKeyLen + 12 + len(o.records[r.i].rec)
		}
		size += sizes[p]
	}

	// Part 0 is the batch itself, sized for the whole version: the flat
	// index and latest pointer, then the first id range. The others are
	// batches of their own, appended to it in order.
	batches := make([]*pebble.Batch, parts)
	batches[0] = s.pdb.NewBatchWithSize(size)
	for p := 1; p < parts; p++ {
		batches[p] = s.parts.get(s.pdb, sizes[p]+64)
	}
	errs := make([]error, parts)
	encode := func(p int) {
		b := batches[p]
		if p == 0 {
			if errs[p] = putHistory(b, height, o.history); errs[p] != nil {
				return
			}
			if errs[p] = putIndex(b, o.changes, s.modules); errs[p] != nil {
				return
			}
			if errs[p] = b.Set(keyBytes(keyLatest), binary.AppendUvarint(nil, height), nil); errs[p] != nil {
				return
			}
			for _, m := range o.modules {
				if errs[p] = b.Set(keyBytes(moduleKey(m.id)), m.a[:], nil); errs[p] != nil {
					return
				}
			}
		}
		rs := refs[p]
		slices.SortFunc(rs, func(a, b recRef) int {
			if c := cmp.Compare(a.hi, b.hi); c != 0 {
				return c
			}
			if c := bytes.Compare(o.records[a.i].id[:], o.records[b.i].id[:]); c != 0 {
				return c
			}
			return cmp.Compare(a.i, b.i)
		})
		errs[p] = putRecords(b, height, o, rs)
	}
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { encode(p) })
	}
	encode(0)
	wg.Wait()
	b := batches[0]
	err := errs[0]
	for p := 1; p < parts; p++ {
		if err == nil {
			err = errs[p]
		}
		if err == nil {
			err = b.Apply(batches[p], nil)
		}
		s.parts.put(s.pdb, batches[p])
	}
	if err == nil {
		err = b.Set(keyBytes(rootKey(height)), encodeRoot(root), nil)
	}
	if err == nil && (len(o.stale) > 0 || len(o.history) > 0) {
		err = b.Set(keyBytes(staleKey(height)), encodeStale(o.staleList()), nil)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// putHistory adds version height's history records to b in key order (it
// sorts a copy of hs' order by key path; a version writes one record per
// path at most).
func putHistory(b *pebble.Batch, height uint64, hs []oldLeaf) error {
	ord := make([]*oldLeaf, len(hs))
	for i := range hs {
		ord[i] = &hs[i]
	}
	slices.SortFunc(ord, func(a, b *oldLeaf) int { return bytes.Compare(a.kp[:], b.kp[:]) })
	var kb [histKeyLen]byte
	for _, h := range ord {
		k := appendHistKey(kb[:0], h.kp, height)
		op := b.SetDeferred(len(k), len(h.value))
		copy(op.Key, k)
		copy(op.Value, h.value)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	return nil
}

// partBatches keeps the batches pebbleVersionBatch encodes its parts into
// (all but the first, which pebble's commit takes) from one version to the
// next. Each is a few MB and garbage once appended to the first: at 1M keys
// they were ~7 MB of the ~85 MB a 10k-key block allocates (see
// RATIONALE.md). A part is only ever appended (Batch.Apply copies it), never
// committed, so pebble holds no reference to it after the build. Versions
// are built one at a time, but the mutex keeps that an assumption of speed,
// not of safety.
type partBatches struct {
	mu   sync.Mutex
	db   *pebble.DB // the database the kept batches belong to
	free []*pebble.Batch
}

// partRetainMax bounds the buffer a kept part batch holds between
// versions; pebble drops a larger one at Reset. A block of BlockWritesMax
// writes of large values is far above what a part usually holds, and its
// buffer is not worth keeping.
const partRetainMax = 64 << 20

// get returns an empty batch of db with room for size bytes: a kept one if
// it is large enough.
func (p *partBatches) get(db *pebble.DB, size int) *pebble.Batch {
	p.mu.Lock()
	var b *pebble.Batch
	if n := len(p.free); n > 0 && p.db == db {
		b = p.free[n-1]
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if b != nil && cap(b.Repr()) >= size {
		return b
	}
	// A quarter more: the next version's part is about as large, and a
	// little larger as often as not.
	return db.NewBatchWithSize(size+size/4, pebble.WithMaxRetainedSizeBytes(partRetainMax))
}

// put empties b and keeps it for the next version, up to one per core. A
// batch that is not kept (nor one get finds too small) is left to the
// collector rather than closed: Close would hand it to pebble's own pool
// with its retention option and its large buffer, for any later batch of
// the process to inherit. An uncommitted batch holds nothing else.
func (p *partBatches) put(db *pebble.DB, b *pebble.Batch) {
	b.Reset()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db != db {
		p.db, p.free = db, nil
	}
	if len(p.free) < runtime.GOMAXPROCS(0) {
		p.free = append(p.free, b)
	}
}

// putIndex adds the flat index changes to b in the order of their
// datastore keys.
func putIndex(b *pebble.Batch, changes []Change, t *moduleTable) error {
	// The keys are built first and sorted as bytes: modules sort by their
	// id segments (appendKVModule), not by address.
	var kb []byte
	ends := make([]int, len(changes))
	for i := range changes {
		var err error
		if kb, err = t.writeKVKey(kb, changes[i].Key); err != nil {
			return err
		}
		ends[i] = len(kb)
	}
	key := func(i int) []byte {
		if i == 0 {
			return kb[:ends[0]]
		}
		return kb[ends[i-1]:ends[i]]
	}
	ord := make([]int, len(changes))
	for i := range ord {
		ord[i] = i
	}
	slices.SortFunc(ord, func(i, j int) int { return bytes.Compare(key(i), key(j)) })
	for _, i := range ord {
		var err error
		if changes[i].New == nil {
			err = b.Delete(key(i), nil)
		} else {
			err = b.Set(key(i), changes[i].New, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// putRecords adds the new records refs names to b, in that order.
func putRecords(b *pebble.Batch, height uint64, o *out, refs []recRef) error {
	var kb [nodeKeyLen]byte
	for _, r := range refs {
		nr := &o.records[r.i]
		k := appendNodeKey(kb[:0], height, nr.id)
		op := b.SetDeferred(len(k), len(nr.rec))
		copy(op.Key, k)
		copy(op.Value, nr.rec)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	return nil
}
