package exec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kairos-network/kairos/types"
)

// Iterator walks a prefix of a transaction's overlay in key byte order:
// the parent's keys merged with the block's and the transaction's writes
// (written values win, deletions hide keys). It streams: nothing but the
// block's and the transaction's pending writes under the prefix is held in
// memory, so a guest iterating a huge prefix pays gas per key and never
// makes the node materialize it. Key and Value are valid until the next
// call of Next. Close must be called; it is idempotent.
type Iterator struct {
	base    *parentIter
	over    []entry // pending writes under the prefix, sorted; empty value = deleted
	oi      int
	peek    *entry // the next base entry, not yet returned
	cur     entry
	err     error
	baseEnd bool
}

type entry struct {
	k string // key within the module
	v []byte
}

// Next advances to the next present key.
func (it *Iterator) Next() bool {
	for it.err == nil {
		if it.peek == nil && !it.baseEnd {
			if e, ok := it.base.next(); ok {
				it.peek = &e
			} else if it.err = it.base.err; it.err != nil {
				return false
			} else {
				it.baseEnd = true
			}
		}
		var e entry
		switch {
		case it.oi < len(it.over) && (it.peek == nil || it.over[it.oi].k <= it.peek.k):
			if it.peek != nil && it.over[it.oi].k == it.peek.k {
				it.peek = nil // overwritten or deleted by a pending write
			}
			e = it.over[it.oi]
			it.oi++
		case it.peek != nil:
			e, it.peek = *it.peek, nil
		default:
			return false
		}
		if len(e.v) > 0 {
			it.cur = e
			return true
		}
	}
	return false
}

// Key returns the current key (within the module).
func (it *Iterator) Key() []byte { return []byte(it.cur.k) }

// Value returns the current value.
func (it *Iterator) Value() []byte { return it.cur.v }

// Err returns a node error (wrapping ErrState) that ended the iteration.
func (it *Iterator) Err() error { return it.err }

// Close stops the iteration and releases its reader.
func (it *Iterator) Close() error {
	it.base.close()
	return nil
}

// errStopped ends a parent iteration closed early; it never escapes.
var errStopped = errors.New("exec: iteration closed")

// parentIter turns the parent's push iteration into a pull one with a
// generator goroutine. Only the order of entries is observable, and that
// is the parent's key order, so the goroutine does not touch determinism.
type parentIter struct {
	ch        chan entry
	done      chan struct{}
	errc      chan error
	err       error
	closeOnce sync.Once
	finished  bool
}

func startParentIter(ctx context.Context, parent StateView, module types.Address, prefix []byte) *parentIter {
	it := &parentIter{ch: make(chan entry), done: make(chan struct{}), errc: make(chan error, 1)}
	go func() {
		defer close(it.ch)
		err := parent.Iterate(ctx, module, prefix, func(k, v []byte) error {
			select {
			case it.ch <- entry{string(k), append([]byte(nil), v...)}:
				return nil
			case <-it.done:
				return errStopped
			}
		})
		if errors.Is(err, errStopped) {
			err = nil
		}
		it.errc <- err
	}()
	return it
}

func (it *parentIter) next() (entry, bool) {
	if it.finished {
		return entry{}, false
	}
	e, ok := <-it.ch
	if !ok {
		it.finished = true
		if err := <-it.errc; err != nil {
			it.err = fmt.Errorf("%w: %w", ErrState, err)
		}
	}
	return e, ok
}

func (it *parentIter) close() {
	it.closeOnce.Do(func() {
		close(it.done)
		for range it.ch {
		}
		if !it.finished {
			it.finished = true
			<-it.errc
		}
	})
}

// Iterate implements Overlay.
func (o *overlay) Iterate(module types.Address, prefix []byte) (*Iterator, error) {
	if len(prefix) > types.StateKeyMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(prefix))
	}
	o.rec.note(module, prefix, true, types.Read)
	p := key(module, prefix)
	pending := make(map[string][]byte)
	o.layer.scan(p, o.idx, func(k string, v []byte) { pending[k[types.AddressLen:]] = v })
	for _, w := range o.writes {
		if strings.HasPrefix(w.k, p) {
			pending[w.k[types.AddressLen:]] = w.v
		}
	}
	it := &Iterator{over: make([]entry, 0, len(pending))}
	for k, v := range pending {
		it.over = append(it.over, entry{k, v})
	}
	sort.Slice(it.over, func(i, j int) bool { return it.over[i].k < it.over[j].k })
	it.base = startParentIter(o.ctx, o.parent, module, prefix)
	return it, nil
}
