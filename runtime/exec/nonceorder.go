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
// groups lists the ascending positions of each sender with several
// transactions (accessTable.senderGroups, found by the key numbering, so
// a block of distinct senders costs nothing here). The groups are disjoint,
// so the result does not depend on their order.
func nonceOrder(txs []*types.Tx, groups [][]int) []int {
	var order, sorted []int
	for _, pos := range groups {
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
