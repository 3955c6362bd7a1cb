package exec

import (
	"sync/atomic"

	"github.com/kairos-network/kairos/types"
)

// scratch is the working memory of a block that no result keeps: the
// access table's entries, sort arrays and key slots, the senders, the
// write buffers, the prefetched values and the merge's
// last writes and event offsets. It is reused from block to block
// (Executor.spare): allocated afresh it was ~4 MB per 5 000-transfer
// block, which the serial baseline and the workers alike paid in zeroing,
// page faults and collections, the workers more so, since the collector
// then runs on their cores rather than an idle one. What a result keeps (the key bytes of its writes,
// account records, receipts) is allocated per block as before.
//
// A block takes its executor's spare one in prepare (or a new one when
// another block of the executor holds it) and puts it back when its
// result is merged: nothing of it may be reachable from a result or from
// anything that outlives the block. Arrays are handed out with stale
// contents (see grow): each user writes every element it reads first. An
// executor keeps one spare, and only up to scratchKeepMax entries: a
// sync.Pool lost it whenever the next block's goroutine ran on another P
// than the last one's (a P's private item is not stolen), and it would be
// emptied by every collection.
type scratch struct {
	all     [][]access
	start   []int
	flat    []access
	refs    []keyRef // the numbering parts' runs, each a range of it
	sort    []keyRef // the radix sorts' scratch, then the merged run
	keys    []string
	off     []int32
	senders []types.Address
	wbuf    []write
	own     [][]byte // the prefetched values by entry (feed)
	// ownPermuted is own in execution order when the nonce order moves
	// transactions (permuteOwn).
	ownPermuted [][]byte
	writes      [][]write // txOutcomes.writes
	last        []uint64  // the merge's last write per slot
	evAt        []int     // where each transaction's events start in the block's
	// feedBufs are the prefetch loaders' batches (cleared after use).
	feedBufs []feedBuf
	// keyChunks holds the chunks of the entries' key strings, a list
	// per listing chunk (see keyBuilder, listChunk).
	keyChunks [][][]byte
	// crew is the block's helper goroutines (nil with one worker), from
	// prepare until the block is merged (see crew).
	crew *crew
}

// scratchKeepMax is the most access entries (about four per transfer)
// of a scratch an executor keeps for its next block: a larger block's
// (up to BlockTxsMax transactions) is left to the collector.
const scratchKeepMax = 1 << 17

// spareScratch holds an executor's spare scratch (see scratch).
type spareScratch struct{ p atomic.Pointer[scratch] }

// get returns the spare scratch, or a new one if there is none.
func (s *spareScratch) get() *scratch {
	if sc := s.p.Swap(nil); sc != nil {
		return sc
	}
	return new(scratch)
}

// put keeps sc as the spare unless it is too large.
func (s *spareScratch) put(sc *scratch) {
	if cap(sc.flat) <= scratchKeepMax {
		s.p.Store(sc)
	}
}

// grow returns (*a)[:n], with a new array (kept in *a) if *a has too
// little room. The elements keep whatever they held.
func grow[T any](a *[]T, n int) []T {
	if cap(*a) < n {
		*a = make([]T, n)
	}
	*a = (*a)[:n]
	return *a
}
