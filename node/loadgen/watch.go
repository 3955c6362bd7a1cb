package loadgen

import (
	"context"
	"strings"
	"time"

	"github.com/kairos-network/kairos/node/api"
	"github.com/kairos-network/kairos/node/devnet"
	"github.com/kairos-network/kairos/types"
)

const (
	// watchWait is how long one block request waits on the node
	// (GET /v1/blocks/{height}/wait) before the watcher asks again.
	watchWait = 2 * time.Second
	// watchRetry spaces the retries of a served height whose block the
	// node does not find (not expected; the old poll tolerated it).
	watchRetry = 5 * time.Millisecond
)

// watch follows c's blocks from after+1 and calls fn with the transaction
// ids of each, in height order, with the time the block's answer arrived,
// until ctx ends. Each request waits on the node until the block is served,
// so a block is seen one HTTP answer after the node stored it, with one
// request per block (a height poll cost hundreds of requests per second
// and added up to its period to every latency).
func watch(ctx context.Context, c *devnet.Client, after uint64, fn func([]types.Hash, time.Time)) error {
	for h := after + 1; ; {
		b, ok, err := c.WaitBlock(ctx, h, watchWait)
		if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), ": "+api.CodeNotFound+": ") {
			select {
			case <-ctx.Done():
			case <-time.After(watchRetry):
			}
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		ids := make([]types.Hash, len(b.Txs))
		for i, t := range b.Txs {
			ids[i] = t.ID
		}
		fn(ids, time.Now())
		h++
	}
}
