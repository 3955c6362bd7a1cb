package exec

import (
	"slices"

	"github.com/kairos-network/kairos/types"
)

// nonceOrder returns the execution order of a block: order[j] is the
// block index of the transaction executed at position j, or nil when that
// is the block order. Each sender's transactions keep the set of positions
// they occupy, but are assigned to them in ascending nonce order (equal
// nonces keep their block order); other senders' positions do not move.
// The fair order can place a sender's nonce n+1 before n when both arrive
// within the ack spread, and the strict nonce rule would then refuse both.
// The result depends only on the senders and nonces: the map is only
// looked up, the groups are visited in block order, and they are disjoint.
func nonceOrder(txs []*types.Tx, senders []types.Address) []int {
	// Positions of one sender are linked (next), so no sender needs a
	// list of its own: most senders have one transaction in a block.
	first := make(map[types.Address]int32, len(txs))
	next := make([]int32, len(txs))
	tail := make([]int32, len(txs)) // of a sender's first position
	var multi []int32               // first positions of senders with several
	for i, s := range senders {
		next[i] = -1
		f, ok := first[s]
		if !ok {
			first[s], tail[i] = int32(i), int32(i)
			continue
		}
		if tail[f] == f {
			multi = append(multi, f)
		}
		next[tail[f]], tail[f] = int32(i), int32(i)
	}
	var order, pos, sorted []int
	for _, f := range multi {
		pos = pos[:0]
		for p := f; p >= 0; p = next[p] {
			pos = append(pos, int(p))
		}
		if slices.IsSortedFunc(pos, func(a, b int) int { return cmpNonce(txs, a, b) }) {
			continue
		}
		if order == nil {
			order = make([]int, len(txs))
			for i := range order {
				order[i] = i
			}
		}
		sorted = append(sorted[:0], pos...)
		slices.SortStableFunc(sorted, func(a, b int) int { return cmpNonce(txs, a, b) })
		for k, p := range pos {
			order[p] = sorted[k]
		}
	}
	return order
}

func cmpNonce(txs []*types.Tx, a, b int) int {
	switch na, nb := txs[a].Body.Nonce, txs[b].Body.Nonce; {
	case na < nb:
		return -1
	case na > nb:
		return 1
	}
	return 0
}

// reorder returns the block and bodies in execution order (shallow copies;
// the caller's block and slice are not modified).
func reorder(b *types.Block, txs []*types.Tx, senders []types.Address, order []int) (*types.Block, []*types.Tx, []types.Address) {
	nb := *b
	nb.Txs = make([]types.OrderedTx, len(order))
	ntxs := make([]*types.Tx, len(order))
	ns := make([]types.Address, len(order))
	for j, i := range order {
		nb.Txs[j], ntxs[j], ns[j] = b.Txs[i], txs[i], senders[i]
	}
	return &nb, ntxs, ns
}

// restoreOrder puts the receipts (and so the events) of a result computed
// in execution order back in the block's order, which the caller indexes
// by the block's transactions. Writes are merged in execution order
// already and do not depend on it.
func restoreOrder(res *BlockResult, order []int) *BlockResult {
	if order == nil {
		return res
	}
	rs := make([]types.Receipt, len(res.Receipts))
	for j, i := range order {
		rs[i] = res.Receipts[j]
	}
	res.Receipts = rs
	res.Events = res.Events[:0]
	for i := range rs {
		res.Events = append(res.Events, rs[i].Events...)
	}
	return res
}
