package exec

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/kairos-network/kairos/types"
)

// dag is the conflict DAG of a block in compressed form: ndeps[i] is the
// number of distinct earlier transactions i waits for, and the transactions
// waiting for j are out[start[j]:start[j+1]].
type dag struct {
	ndeps []int32
	start []int32
	out   []int32
}

func (d *dag) dependents(j int) []int32 { return d.out[d.start[j]:d.start[j+1]] }

// access is one entry of the conflict analysis: k is module ‖ key. slot
// numbers an exact key in its block's accessTable (-1 for a prefix).
type access struct {
	k      string
	slot   int32
	prefix bool
	write  bool
}

// accessTable is a block's conflict entries, computed once per block: the
// prefetch reads its entries' exact keys, the DAG and the block layers index them
// by slot, the overlays find a transaction's keys among its own entries,
// and the merge emits the written slots in order, so no stage hashes keys.
// A slot is the rank of its key among the block's distinct exact keys, so
// slot order is key order.
type accessTable struct {
	all   [][]access // per transaction, see entries (views of one array)
	start []int      // all[i] is entries start[i]:start[i+1] of that array
	keys  []string   // the distinct exact keys, sorted; a slot indexes it
	// independent: no barrier, no prefix, and no key that one transaction
	// writes and another uses, so the DAG has no edge (see dag).
	independent bool
	// senderGroups lists, for each sender with several transactions, their
	// positions in ascending order (see nonceOrder).
	senderGroups [][]int
	sc           *scratch // where the arrays above and below that no result keeps are
	raw          []byte   // the keys' bytes after the module, concatenated
	off          []int32  // keys[s]'s bytes are raw[off[s]:off[s+1]]
	// mods are the modules of the slots, by runs in slot order: slots
	// mods[r].from up to the next run's are of mods[r].module. stateKey
	// reads a slot's module there, not from its key's string, which in
	// slot order is a cache miss per key.
	mods []modRun
	// renumbered: two modules share their 8-byte prefix, so the keys
	// were sorted and numbered again by whole keys (tests check when).
	renumbered bool
}

// modRun is a run of slots of one module (see accessTable.mods).
type modRun struct {
	from   int32
	module types.Address
}

// newAccessTable lists every transaction's entries and numbers the distinct
// exact keys by sorting them, with up to workers goroutines over contiguous
// ranges of transactions (each sorts its entries, the sorted runs are then
// merged); a sort of fixed-size prefixes costs less than a map insert per
// entry and gives the keys in the order the merge emits them. senders[i]
// is the sender of txs[i].
func newAccessTable(txs []*types.Tx, senders []types.Address, workers int) *accessTable {
	return newAccessTableIn(new(scratch), txs, senders, false, workers, nil)
}

// newAccessTableIn is newAccessTable with its working arrays in sc. With
// fillSenders it first sets senders[i] to txs[i].SenderAddress(), in the
// listing's pass: a decoded transaction has its address at hand, and a
// phase of its own cost a pass over the transactions and a hand-off to
// the crew. listed (if not nil) is called once the entries are listed,
// before the keys are numbered: what it starts may read the entries' keys
// and kinds (k, prefix, write) while the numbering runs, never their slots.
func newAccessTableIn(sc *scratch, txs []*types.Tx, senders []types.Address, fillSenders bool, workers int, listed func(*accessTable)) *accessTable {
	n := len(txs)
	t := &accessTable{all: grow(&sc.all, n), start: grow(&sc.start, n+1), sc: sc}
	start := t.start
	start[0] = 0
	for i, tx := range txs {
		start[i+1] = start[i] + entryCount(tx)
	}
	flat := grow(&sc.flat, start[n])
	parts := max(1, min(workers, n/accessPartMin))
	runs := make([][]keyRef, parts)
	refs := grow(&sc.refs, start[n])
	// The radix sorts' scratch (each part's range of it), then the merged
	// run of the parts.
	scratch := grow(&sc.sort, start[n])
	barriers, prefixes := make([]bool, parts), make([]bool, parts)
	// The listing, in claimed chunks of listChunk transactions within each
	// part's range (a chunk starts a part's range or follows one of the
	// same part, so eachRepeat below finds no repeat at a part's start).
	// It is the first phase the block's just-started crew runs: a helper
	// that comes late takes what is left of it, where with one fixed half
	// per part it left both halves to the caller.
	size := listChunk
	bounds := make([]int, 0, n/listChunk+parts+1)
	for p := range parts {
		lo, hi := p*n/parts, (p+1)*n/parts
		for first := true; first || lo < hi; first, lo = false, lo+size {
			bounds = append(bounds, lo) // one empty chunk when n is 0
		}
	}
	bounds = append(bounds, n)
	chunks := grow(&sc.keyChunks, len(bounds)-1)
	t.sc.crew.parallel(len(bounds)-1, func(c int) {
		b := keyBuilder{chunks: &chunks[c]}
		for i := bounds[c]; i < bounds[c+1]; i++ {
			if fillSenders {
				senders[i] = txs[i].SenderAddress()
			}
			t.all[i] = entries(flat[start[i]:start[i]:start[i+1]], &b, txs[i], senders[i])
		}
	})
	if listed != nil {
		listed(t)
	}
	t.sc.crew.parallel(parts, func(p int) {
		lo, hi := p*n/parts, (p+1)*n/parts
		// A repeated record entry has the key of the one it repeats:
		// sorting it too would only add ties. The one it repeats stands
		// for it, marked as used by another transaction (a transaction
		// has one record entry, so the repeat is not of its own).
		eachRepeat(txs, start, flat, lo, hi, func(rep, _ *access) { rep.slot = slotRepeated })
		run := refs[start[lo]:start[lo]:start[hi]]
		for i := lo; i < hi; i++ {
			if isBarrier(txs[i]) {
				barriers[p] = true
			}
			for j := start[i]; j < start[i+1]; j++ {
				switch e := &flat[j]; {
				case e.prefix:
					e.slot, prefixes[p] = -1, true
				case e.slot != slotRepeat:
					run = append(run, newKeyRef(e.k, int32(j), int32(i)))
				}
			}
		}
		keyRefs(flat).radix(run, scratch[start[lo]:start[hi]])
		runs[p] = run
	})
	es := keyRefs(flat)
	sorted := es.sorted(t.sc.crew, runs, scratch)
	t.independent = !slices.Contains(barriers, true) && !slices.Contains(prefixes, true)
	if !t.number(es, sorted, start, parts, true) {
		// Two modules share their first 8 bytes (one block would need
		// addresses ground for it), so cmp is not the key order: sort by
		// whole keys and number again. Slower, never wrong.
		t.renumbered = true
		slices.SortFunc(sorted, func(a, b keyRef) int { return strings.Compare(es[a.pos].k, es[b.pos].k) })
		for p := range parts {
			eachRepeat(txs, start, flat, p*n/parts, (p+1)*n/parts, func(rep, _ *access) { rep.slot = slotRepeated })
		}
		t.number(es, sorted, start, parts, false)
	}
	t.sc.crew.parallel(parts, func(p int) {
		eachRepeat(txs, start, flat, p*n/parts, (p+1)*n/parts, func(rep, e *access) { e.slot = rep.slot })
	})
	return t
}

// eachRepeat calls fn for each module record entry of txs[lo:hi] that
// repeats an earlier one (see entries) with the entry it repeats: the
// latest record entry before it that is not a repeat.
func eachRepeat(txs []*types.Tx, start []int, flat []access, lo, hi int, fn func(rep, e *access)) {
	var rep *access
	for i := lo; i < hi; i++ {
		if isBarrier(txs[i]) {
			continue
		}
		if e := &flat[start[i]+1]; e.slot != slotRepeat {
			rep = e
		} else {
			fn(rep, e)
		}
	}
}

// numberPartMin is the fewest sorted entries worth a numbering goroutine
// of their own.
const numberPartMin = 2048

// number gives each entry of sorted (sorted by cmp) its key's slot and
// fills keys, raw, off, senderGroups, and clears independent when two
// transactions use a key and one writes it. Up to parts goroutines number
// ranges of sorted that start at a key: each counts its keys, then, at
// its first slot, numbers them. With checkModules it returns false, with
// independent and senderGroups untouched, if two distinct modules share
// their 8-byte prefix, so that cmp is not the key order.
func (t *accessTable) number(es keyRefs, sorted []keyRef, start []int, parts int, checkModules bool) bool {
	m := len(sorted)
	parts = max(1, min(parts, m/numberPartMin))
	same := func(j int) bool { // sorted[j] has the key of sorted[j-1]
		a, b := sorted[j-1], sorted[j]
		return a.hi == b.hi && a.lo == b.lo && es[a.pos].k == es[b.pos].k
	}
	bounds := make([]int, parts+1)
	bounds[parts] = m
	for p := 1; p < parts; p++ {
		j := max(p*m/parts, bounds[p-1])
		for j > 0 && j < m && same(j) {
			j++
		}
		bounds[p] = j
	}
	type partOut struct {
		keys, size  int
		groups      [][]int
		mods        []modRun
		conflict    bool // a key used by two transactions and written
		moduleClash bool // two modules share their 8-byte prefix
	}
	outs := make([]partOut, parts)
	// The parts count, sum and flag in locals and store them in outs
	// once: outs[p] share a cache line, and a store to it per entry made
	// the two parts' cores take the line from each other all along (the
	// 2-part numbering pass was no faster than one part).
	t.sc.crew.parallel(parts, func(p int) {
		keys := 0
		for j := bounds[p]; j < bounds[p+1]; j++ {
			if j == bounds[p] || !same(j) {
				keys++
			}
		}
		outs[p].keys = keys
	})
	total := 0
	for p := range outs {
		outs[p].keys, total = total, total+outs[p].keys // now the part's first slot
	}
	t.keys = grow(&t.sc.keys, total)
	t.sc.crew.parallel(parts, func(p int) {
		o := &outs[p]
		slot := int32(o.keys - 1)
		// Per key: the first transaction, whether another one uses it
		// too, and whether any writes it (two of those make a conflict).
		// The senders' implicit account entries (first of their
		// transaction) of one key are the transactions of one sender.
		first, shared, written := int32(-1), false, false
		size, conflict := 0, false
		// The current key's sender transactions; a slice only from the
		// second one on: most senders have one, and a slice each cost an
		// allocation per transaction.
		var group []int
		var groups [][]int
		solo := -1
		endGroup := func() {
			if len(group) > 1 {
				slices.Sort(group)
				groups = append(groups, group)
			}
			group, solo = nil, -1
		}
		for j := bounds[p]; j < bounds[p+1]; j++ {
			r := sorted[j]
			e := &es[r.pos]
			if j == bounds[p] || !same(j) {
				slot++
				t.keys[slot] = e.k
				size += len(e.k) - types.AddressLen
				first, shared, written = r.tx, false, false
				endGroup()
			}
			shared = shared || r.tx != first || e.slot == slotRepeated
			written = written || e.write
			conflict = conflict || (shared && written)
			if int(r.pos) == start[r.tx] {
				switch {
				case group != nil:
					group = append(group, int(r.tx))
				case solo >= 0:
					group = []int{solo, int(r.tx)}
				default:
					solo = int(r.tx)
				}
			}
			e.slot = slot
		}
		endGroup()
		o.size, o.conflict, o.groups = size, conflict, groups
	})
	size := 0
	for p := range outs {
		outs[p].size, size = size, size+outs[p].size // now the part's first byte
	}
	t.raw = makeNoZero(size) // the copies below write every byte
	t.off = grow(&t.sc.off, total+1)
	t.off[0] = 0
	t.sc.crew.parallel(parts, func(p int) {
		at := outs[p].size
		last := total
		if p+1 < parts {
			last = outs[p+1].keys
		}
		for s := outs[p].keys; s < last; s++ {
			k := t.keys[s]
			// Keys of one module prefix are contiguous, so a second module
			// with that prefix shows next to the first. Checked here, where
			// the key's bytes are read anyway: reading them in sorted
			// order for this alone was a cache miss per key.
			newModule := s == 0 || k[:types.AddressLen] != t.keys[s-1][:types.AddressLen]
			if checkModules && newModule && s > 0 && k[:8] == t.keys[s-1][:8] {
				outs[p].moduleClash = true
				return
			}
			if newModule || s == outs[p].keys { // each part starts a run
				r := modRun{from: int32(s)}
				copy(r.module[:], k)
				outs[p].mods = append(outs[p].mods, r)
			}
			at += copy(t.raw[at:], k[types.AddressLen:])
			t.off[s+1] = int32(at)
		}
	})
	for p := range outs {
		if outs[p].moduleClash {
			return false
		}
	}
	for p := range outs {
		t.independent = t.independent && !outs[p].conflict
		t.senderGroups = append(t.senderGroups, outs[p].groups...)
		t.mods = append(t.mods, outs[p].mods...)
	}
	return true
}

// permute puts the table in the execution order: all[j] becomes the
// entries of transaction order[j]. Slots, keys and independence are sets
// and do not change; senderGroups is spent once the order is known.
func (t *accessTable) permute(order []int) {
	all := make([][]access, len(order))
	for j, i := range order {
		all[j] = t.all[i]
		t.start[j+1] = t.start[j] + len(all[j])
	}
	t.all, t.senderGroups = all, nil
}

// Marks in access.slot while a table is numbered: slotRepeat is a module
// record entry that repeats the previous call's (entries), slotRepeated the
// entry it repeats.
const (
	slotRepeat   = -2
	slotRepeated = -3
)

// accessPartMin is the fewest transactions worth an entry-listing
// goroutine of their own.
const accessPartMin = 256

// listChunk is the most transactions of one claimed chunk of the listing.
const listChunk = 256

// entryCount is the number of entries of tx (see entries).
func entryCount(tx *types.Tx) int {
	n := 1 + len(tx.Body.Access)
	if tx.Body.Payload.Kind == types.Call {
		n++
	}
	return n
}

// keyBuilder holds the keys of a range of transactions' entries: they are
// written to a chunk of keyChunk bytes and viewed as strings, a new chunk
// whenever one is full (never grown: the keys already handed out view the
// old one), so the range writes its keys without sizing them first (that
// pass over the transactions cost a quarter of listing the entries). The
// chunks are a block scratch's (chunks), reused by later blocks: allocated
// per block they were ~1 MB per 5 000-transfer block. So the strings are
// valid only while the block runs: nothing that outlives it (a result, a
// cache) may keep one, or the next block's keys would change it (see
// TestResultsOutliveTheScratch). A zero keyBuilder allocates its chunks.
// The record key of the module called last is reused while the next
// transactions call the same module (see slotRepeat).
type keyBuilder struct {
	chunks *[][]byte     // the scratch's chunks for this range
	used   int           // of them
	cur    []byte        // the chunk being written
	module types.Address // of rec
	rec    string
}

// keyChunk is the size of a keyBuilder's chunks.
const keyChunk = 64 << 10

// key appends module ‖ k and returns it.
func (b *keyBuilder) key(module types.Address, k []byte) string {
	n := types.AddressLen + len(k)
	if cap(b.cur)-len(b.cur) < n {
		switch {
		case n > keyChunk: // an invalid key, too long for any state
			b.cur = make([]byte, 0, n)
		case b.chunks != nil && b.used < len(*b.chunks):
			b.cur = (*b.chunks)[b.used][:0]
			b.used++
		default:
			b.cur = make([]byte, 0, keyChunk)
			if b.chunks != nil {
				*b.chunks = append(*b.chunks, b.cur)
				b.used++
			}
		}
	}
	from := len(b.cur)
	b.cur = append(append(b.cur, module[:]...), k...)
	return unsafe.String(&b.cur[from], n)
}

// entries appends tx's accesses for the conflict analysis to es: the
// implicit write of the sender's account record first, for a call the
// implicit read of the called module's record, then the declared list.
func entries(es []access, b *keyBuilder, tx *types.Tx, sender types.Address) []access {
	add := func(module types.Address, k []byte, prefix, write bool) {
		es = append(es, access{k: b.key(module, k), prefix: prefix, write: write})
	}
	add(AccountsModule, sender[:], false, true)
	if m := tx.Body.Payload.Module; tx.Body.Payload.Kind == types.Call {
		if b.rec == "" || b.module != m {
			add(ModulesModule, recordKey(m), false, false)
			b.module, b.rec = m, es[len(es)-1].k
		} else {
			es = append(es, access{k: b.rec, slot: slotRepeat})
		}
	}
	for _, a := range tx.Body.Access {
		add(a.Module, a.Key, a.Prefix, a.Mode >= types.Write)
	}
	return es
}

// slotOf returns the slot of the exact key k, or -1 when no transaction of
// the block declared it.
func (t *accessTable) slotOf(k string) int32 {
	if t == nil {
		return -1
	}
	if s, ok := slices.BinarySearch(t.keys, k); ok {
		return int32(s)
	}
	return -1
}

// slotKeys returns a cursor that gives the state keys of slots from s on
// in ascending order, as the merge reads them: finding a
// slot's module run is then a step, not a search. A key's Key shares the
// table's bytes (capacity clipped, so an append copies): no allocation
// per key.
func (t *accessTable) slotKeys(s int32) slotKeys {
	r, _ := slices.BinarySearchFunc(t.mods, s+1, func(m modRun, s int32) int { return cmp.Compare(m.from, s) })
	return slotKeys{t: t, run: r - 1}
}

// slotKeys is a cursor over a table's slots (see accessTable.slotKeys).
type slotKeys struct {
	t   *accessTable
	run int // the module run of the latest slot
}

// at returns the state key of slot s, at or after the cursor's last.
func (c *slotKeys) at(s int32) types.StateKey {
	t := c.t
	for c.run+1 < len(t.mods) && t.mods[c.run+1].from <= s {
		c.run++
	}
	return types.StateKey{Module: t.mods[c.run].module, Key: t.raw[t.off[s]:t.off[s+1]:t.off[s+1]]}
}

// keyRef is an exact entry in a key sort: hi and lo are the big-endian
// first 8 bytes of the module and of the key (zero-padded), so most
// comparisons are integer compares; pos is the entry's index in the
// table's entry array, whose key decides ties. It holds no pointer, so
// the sort moves it without write barriers and the collector never scans
// it.
type keyRef struct {
	hi, lo uint64
	pos    int32
	tx     int32 // the entry's transaction
}

func newKeyRef(k string, pos, tx int32) keyRef {
	var hi, lo [8]byte
	copy(hi[:], k)
	copy(lo[:], k[types.AddressLen:])
	return keyRef{hi: binary.BigEndian.Uint64(hi[:]), lo: binary.BigEndian.Uint64(lo[:]), pos: pos, tx: tx}
}

// keyRefs sorts keyRefs of the entries es.
type keyRefs []access

// cmp orders by module prefix, then key: the key's prefixes order as the
// keys do (a zero-padded prefix of a shorter key is never greater). It is
// the key order when distinct modules of the block differ in their first
// 8 bytes, which sorted checks; comparing whole modules here would cost a
// string comparison whenever two keys share a module.
func (es keyRefs) cmp(a, b keyRef) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	if a.lo != b.lo {
		return cmp.Compare(a.lo, b.lo)
	}
	return strings.Compare(es[a.pos].k[types.AddressLen:], es[b.pos].k[types.AddressLen:])
}

// less is cmp(a, b) < 0, inlined in the sort: a generic sort calls its
// comparison through a function value, which cost more than the integer
// compares it makes.
func (es keyRefs) less(a, b *keyRef) bool {
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	if a.lo != b.lo {
		return a.lo < b.lo
	}
	return es[a.pos].k[types.AddressLen:] < es[b.pos].k[types.AddressLen:]
}

// radixMin is the longest run the radix sort leaves to the introsort.
const radixMin = 20

// radix sorts a by cmp, using tmp (at least as long as a): a
// most-significant-digit radix sort on the bytes of (hi, lo), which leaves
// runs of at most radixMin, and runs whose hi and lo are all equal, to the
// introsort. The keys' bytes are close to random past their common
// prefix, so two or three byte levels sort a block's keys: an introsort of
// all of them made 30 comparisons per key. Each level sorts on the first
// byte in which the run's keys differ (bytes common to all of them would
// each cost a pass that splits nothing), so it is at most 16 levels deep;
// equal (hi, lo) go to the introsort: O(n log n) in every case.
func (es keyRefs) radix(a, tmp []keyRef) {
	if len(a) <= radixMin {
		es.introsort(a, 2*bits.Len(uint(len(a))))
		return
	}
	var dhi, dlo uint64
	for i := range a {
		dhi |= a[i].hi ^ a[0].hi
		dlo |= a[i].lo ^ a[0].lo
	}
	useHi, d := dhi != 0, dhi
	if !useHi {
		d = dlo
	}
	if d == 0 {
		es.introsort(a, 2*bits.Len(uint(len(a)))) // only the strings differ
		return
	}
	shift := 56 - uint(bits.LeadingZeros64(d))/8*8
	digit := func(r *keyRef) int {
		if useHi {
			return int(r.hi >> shift & 0xff)
		}
		return int(r.lo >> shift & 0xff)
	}
	var start, next [257]int
	for i := range a {
		start[digit(&a[i])+1]++
	}
	for b := 1; b < len(start); b++ {
		start[b] += start[b-1]
	}
	next = start
	for i := range a {
		b := digit(&a[i])
		tmp[next[b]] = a[i]
		next[b]++
	}
	copy(a, tmp)
	for b := range 256 {
		if lo, hi := start[b], start[b+1]; hi-lo > 1 {
			es.radix(a[lo:hi], tmp[lo:hi])
		}
	}
}

// insertionMax is the longest run the introsort leaves to insertion sort.
const insertionMax = 12

func (es keyRefs) introsort(a []keyRef, depth int) {
	for len(a) > insertionMax {
		if depth == 0 {
			es.heapsort(a)
			return
		}
		depth--
		p := es.partition(a)
		// Recurse into the smaller side, loop on the larger: O(log n) stack.
		if p < len(a)-p {
			es.introsort(a[:p], depth)
			a = a[p+1:]
		} else {
			es.introsort(a[p+1:], depth)
			a = a[:p]
		}
	}
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && es.less(&a[j], &a[j-1]); j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// partition puts the median of the first, middle and last element at p and
// returns p, with nothing greater before it and nothing less after it.
// Both scans stop at keys equal to the pivot, so equal keys spread over
// both sides.
func (es keyRefs) partition(a []keyRef) int {
	m, l := len(a)/2, len(a)-1
	if es.less(&a[m], &a[0]) {
		a[m], a[0] = a[0], a[m]
	}
	if es.less(&a[l], &a[m]) {
		a[l], a[m] = a[m], a[l]
		if es.less(&a[m], &a[0]) {
			a[m], a[0] = a[0], a[m]
		}
	}
	a[0], a[m] = a[m], a[0]
	pivot := a[0]
	i, j := 1, l
	for {
		for i <= j && es.less(&a[i], &pivot) {
			i++
		}
		for i <= j && es.less(&pivot, &a[j]) {
			j--
		}
		if i >= j {
			break
		}
		a[i], a[j] = a[j], a[i]
		i, j = i+1, j-1
	}
	a[0], a[j] = a[j], a[0]
	return j
}

func (es keyRefs) heapsort(a []keyRef) {
	for i := len(a)/2 - 1; i >= 0; i-- {
		es.siftDown(a, i)
	}
	for n := len(a) - 1; n > 0; n-- {
		a[0], a[n] = a[n], a[0]
		es.siftDown(a[:n], 0)
	}
}

func (es keyRefs) siftDown(a []keyRef, i int) {
	for {
		c := 2*i + 1
		if c >= len(a) {
			return
		}
		if c+1 < len(a) && es.less(&a[c], &a[c+1]) {
			c++
		}
		if !es.less(&a[i], &a[c]) {
			return
		}
		a[i], a[c] = a[c], a[i]
		i = c
	}
}

// sorted returns the runs, each sorted by cmp, merged into one run, the
// first merge into buf (as long as all runs, apart from them).
func (es keyRefs) sorted(c *crew, runs [][]keyRef, buf []keyRef) []keyRef {
	sorted := runs[0]
	for k, r := range runs[1:] {
		out := buf[:len(sorted)+len(r)]
		if k > 0 { // sorted is in buf
			out = make([]keyRef, len(sorted)+len(r))
		}
		sorted = es.merge(c, out, sorted, r, len(runs))
	}
	return sorted
}

// merge merges two sorted runs (a first on equal keys) into out, as long
// as both, with parts goroutines each writing one range of it.
func (es keyRefs) merge(c *crew, out, a, b []keyRef, parts int) []keyRef {
	c.parallel(parts, func(p int) {
		lo, hi := p*len(out)/parts, (p+1)*len(out)/parts
		ai, bi := es.split(a, b, lo)
		aj, bj := es.split(a, b, hi)
		es.mergeInto(out[lo:hi], a[ai:aj], b[bi:bj])
	})
	return out
}

// split returns how many of the first k merged elements come from a and
// from b: the least i with a[i] after b[k-i-1], found by bisection since
// that holds for every larger i too.
func (es keyRefs) split(a, b []keyRef, k int) (int, int) {
	lo, hi := max(0, k-len(b)), min(k, len(a))
	for lo < hi {
		i := (lo + hi) / 2
		if es.cmp(a[i], b[k-i-1]) <= 0 {
			lo = i + 1
		} else {
			hi = i
		}
	}
	return lo, k - lo
}

// mergeInto merges a and b (a first on equal keys) into out, as long as
// both. Which run the next element comes from is random for a block's
// keys, so a branch on it was mispredicted about every other element: the
// loop picks it by index instead, and branches only where one is
// predictable (the runs' module prefixes differ or their key prefixes tie,
// both rare), which halved the merge of two 10 000-key runs.
func (es keyRefs) mergeInto(out, a, b []keyRef) {
	i, j, n := 0, 0, 0
	for i < len(a) && j < len(b) {
		x, y := &a[i], &b[j]
		fromA := 0
		if x.hi != y.hi || x.lo == y.lo {
			if es.cmp(*x, *y) <= 0 {
				fromA = 1
			}
		} else if x.lo < y.lo {
			fromA = 1
		}
		next := [2]*keyRef{y, x}
		out[n] = *next[fromA]
		n, i, j = n+1, i+fromA, j+1-fromA
	}
	n += copy(out[n:], a[i:])
	copy(out[n:], b[j:])
}

// keyState is the conflict history of one exact key or one prefix: its
// latest writer and the readers since then, as a list (newest first)
// threaded through one array of the block (readerList): a slice per key
// was an allocation per key read and 24 bytes per slot.
type keyState struct {
	writer  int32 // -1: none yet
	readers int32 // the newest reader's node in readerList, -1: none
}

// readerNode is one reader of a key in a readerList.
type readerNode struct {
	tx, next int32 // next: the previous reader's node, -1: none
}

// isBarrier reports a lifecycle transaction (deploy, upgrade, admin): it
// changes which code runs at an address, which cross-module calls read
// without declaring, so it is ordered against every other transaction.
// Lifecycle transactions are rare; the O(n) edges each one adds are cheap.
func isBarrier(tx *types.Tx) bool { return tx.Body.Payload.Kind != types.Call }

// buildDAG computes each transaction's dependencies: for everything it
// touches, the latest earlier writer of an overlapping key or prefix, and
// if it writes, the earlier readers of it since that writer. Older
// conflicts are reached transitively through those (see doc.go). A
// barrier depends on every transaction since the previous barrier, and
// every transaction depends on the latest barrier before it.
func buildDAG(txs []*types.Tx, senders []types.Address) *dag {
	return newAccessTable(txs, senders, 1).dag(txs)
}

// dag builds the conflict DAG of the block t was made of (see buildDAG).
func (t *accessTable) dag(txs []*types.Tx) *dag {
	n := len(t.all)
	all := t.all
	prefixSet := map[string]bool{}
	for _, es := range all {
		for _, e := range es {
			if e.prefix {
				prefixSet[e.k] = true
			}
		}
	}
	// Sorted key lists (t.keys is one) turn "every key under a prefix"
	// into a binary search and a contiguous range.
	var sortedPrefix []string
	var prefixLens []int
	if len(prefixSet) > 0 {
		sortedPrefix = sortedKeys(prefixSet)
		lens := map[int]bool{}
		for p := range prefixSet {
			lens[len(p)] = true
		}
		for l := range lens {
			prefixLens = append(prefixLens, l)
		}
		sort.Ints(prefixLens)
	}
	// Exact keys are indexed by slot; prefixes, rare, by a map.
	exact := make([]keyState, len(t.keys))
	for j := range exact {
		exact[j] = keyState{writer: -1, readers: -1}
	}
	readerList := make([]readerNode, 0, t.start[n]) // at most one node per entry
	prefixes := make(map[string]*keyState, len(prefixSet))
	stateOf := func(k string) *keyState {
		s := prefixes[k]
		if s == nil {
			s = &keyState{writer: -1, readers: -1}
			prefixes[k] = s
		}
		return s
	}

	mark := make([]int32, n) // mark[j] == i+1: j already a dependency of i
	// The dependencies of i are deps[from[i]:from[i+1]]: one slice for
	// the block, not one per transaction.
	var deps []int32
	from := make([]int, n+1)
	var ndeps = make([]int32, n)
	barrier := int32(-1)
	for i := range n {
		me := int32(i)
		from[i] = len(deps)
		add := func(j int32) {
			if j >= 0 && j != me && mark[j] != me+1 {
				mark[j] = me + 1
				deps = append(deps, j)
			}
		}
		add(barrier)
		if isBarrier(txs[i]) {
			for j := barrier + 1; j < me; j++ {
				add(j)
			}
			barrier = me
		}
		consult := func(s *keyState, write bool) {
			if s == nil {
				return
			}
			add(s.writer)
			if write {
				for r := s.readers; r >= 0; r = readerList[r].next {
					add(readerList[r].tx)
				}
			}
		}
		for _, e := range all[i] {
			// Prefixes that contain e.k (for a prefix entry, e.k itself too).
			for _, l := range prefixLens {
				if l > len(e.k) {
					break
				}
				consult(prefixes[e.k[:l]], e.write)
			}
			if !e.prefix {
				consult(&exact[e.slot], e.write)
				continue
			}
			// Exact keys and longer prefixes under e.k.
			lo, hi := under(t.keys, e.k)
			for s := lo; s < hi; s++ {
				consult(&exact[s], e.write)
			}
			lo, hi = under(sortedPrefix, e.k)
			for _, k := range sortedPrefix[lo:hi] {
				if len(k) > len(e.k) {
					consult(prefixes[k], e.write)
				}
			}
		}
		for _, e := range all[i] {
			var s *keyState
			if e.prefix {
				s = stateOf(e.k)
			} else {
				s = &exact[e.slot]
			}
			if e.write {
				s.writer, s.readers = me, -1
			} else if s.readers < 0 || readerList[s.readers].tx != me {
				readerList = append(readerList, readerNode{tx: me, next: s.readers})
				s.readers = int32(len(readerList) - 1)
			}
		}
		ndeps[i] = int32(len(deps) - from[i])
	}
	from[n] = len(deps)
	d := &dag{ndeps: ndeps, start: make([]int32, n+1), out: make([]int32, len(deps))}
	for _, j := range deps {
		d.start[j+1]++
	}
	for j := range n {
		d.start[j+1] += d.start[j]
	}
	fill := append([]int32(nil), d.start[:n]...)
	for i := range n { // ascending i: each dependents list is in block order
		for _, j := range deps[from[i]:from[i+1]] {
			d.out[fill[j]] = int32(i)
			fill[j]++
		}
	}
	return d
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// under returns the contiguous run sorted[lo:hi] of the sorted keys that
// start with prefix.
func under(sorted []string, prefix string) (lo, hi int) {
	lo = sort.SearchStrings(sorted, prefix)
	hi = lo
	for hi < len(sorted) && strings.HasPrefix(sorted[hi], prefix) {
		hi++
	}
	return lo, hi
}

// makeNoZero returns a new array of n bytes whose contents are undefined:
// for an array the caller writes in full. make zeroed t.raw (~0.5 MB per
// 5 000-transfer block, ~20 µs) only for the numbering's copies to
// overwrite it. strings.Builder.Grow allocates without zeroing
// and guarantees room for n bytes; the builder is dropped, so the array is
// the caller's alone.
func makeNoZero(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0)
	return unsafe.Slice(unsafe.StringData(b.String()), n)
}
