package exec

import (
	"context"
	"fmt"
	"sort"

	"github.com/kairos-network/kairos/types"
)

// SimResult is the outcome of a simulated transaction.
type SimResult struct {
	Receipt types.Receipt
	// Access is the exact access list the transaction used, sorted by
	// (module, key, prefix): every key read or written and every prefix
	// iterated, with Write where it wrote. The system modules (account
	// records, module records and code) are left out: their accesses are
	// implicit. Declaring it makes the same
	// transaction, run on the same state, pass the access check.
	Access []types.Access
	// Writes lists the keys the transaction would write (or delete),
	// sorted, without the account record.
	Writes []types.StateKey
}

// accessRecorder is implemented by the overlay of a simulation, for runners
// that learn of accesses the overlay did not see.
type accessRecorder interface {
	recordAccess(a types.Access)
}

func (o *overlay) recordAccess(a types.Access) { o.rec.note(a.Module, a.Key, a.Prefix, a.Mode) }

// recorder collects the accesses of a simulated transaction.
type recorder struct {
	m map[recKey]types.AccessMode
}

type recKey struct {
	k      string
	prefix bool
}

func (r *recorder) note(module types.Address, k []byte, prefix bool, mode types.AccessMode) {
	if r == nil {
		return
	}
	rk := recKey{key(module, k), prefix}
	r.m[rk] = max(r.m[rk], mode)
}

// Simulate runs tx alone on top of view at the block position env, with
// access recording on and enforcement off, and returns its receipt and the
// access list it used. Nothing is written. The nonce and expiry checks
// apply as in a block: a transaction with a stale nonce simulates as
// StatusInvalid.
func (x *Executor) Simulate(ctx context.Context, view StateView, env BlockEnv, tx *types.Tx) (*SimResult, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrBlockMismatch)
	}
	bl := &block{env: env, txs: []*types.Tx{tx}, senders: []types.Address{tx.SenderAddress()}}
	rec := &recorder{m: map[recKey]types.AccessMode{}}
	out, err := x.runTx(ctx, bl, &serialLayer{}, view, 0, true, rec)
	if err != nil {
		return nil, err
	}
	res := &SimResult{Receipt: out.receipt}
	keys := make([]recKey, 0, len(rec.m))
	for rk := range rec.m {
		keys = append(keys, rk)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].k != keys[j].k {
			return keys[i].k < keys[j].k
		}
		return !keys[i].prefix && keys[j].prefix
	})
	acct := accountKey(bl.senders[0])
	for _, rk := range keys {
		sk := splitKey(rk.k)
		if sk.Module == AccountsModule || sk.Module == ModulesModule {
			continue
		}
		res.Access = append(res.Access, types.Access{Module: sk.Module, Key: sk.Key, Prefix: rk.prefix, Mode: rec.m[rk]})
	}
	wk := make([]string, 0, len(out.writes))
	for _, w := range out.writes {
		if w.k != acct {
			wk = append(wk, w.k)
		}
	}
	sort.Strings(wk)
	for _, k := range wk {
		res.Writes = append(res.Writes, splitKey(k))
	}
	return res, nil
}
