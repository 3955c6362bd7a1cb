package node

import (
	"context"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kairos-network/kairos/node/mempool"
	"github.com/kairos-network/kairos/types"
)

// FuzzFetchRequest feeds arbitrary peer bytes to the fetch handlers: each
// answers with a decodable response or an error, never a panic.
func FuzzFetchRequest(f *testing.F) {
	f.Add(byte(0), types.MustEncode(&certRequest{FromRound: 1}))
	f.Add(byte(1), types.MustEncode(&txRequest{IDs: []types.Hash{{1}}}))
	f.Add(byte(2), []byte{0xa0})
	d := dssync.MutexWrap(ds.NewMapDatastore())
	n := driverNode(f, d)
	var err error
	if n.pool, err = mempool.Open(n.ctx, d, mempool.Config{ChainID: testChain}, 0); err != nil {
		f.Fatal(err)
	}
	n.calls = make(chan func())
	n.index = map[peer.ID]uint32{"": 1} // the fuzzer's requests come from validator 1
	go func() {
		for {
			select {
			case c := <-n.calls:
				c()
			case <-n.ctx.Done():
				return
			}
		}
	}()
	f.Fuzz(func(t *testing.T, which byte, req []byte) {
		ctx := context.Background()
		switch which % 3 {
		case 0:
			resp, err := n.serveCerts(ctx, "", req)
			var r certResponse
			if err == nil && types.Decode(resp, &r) != nil {
				t.Fatalf("undecodable certificate response %x", resp)
			}
		case 1:
			resp, err := n.serveTxs(ctx, "", req)
			var r txResponse
			if err == nil && types.Decode(resp, &r) != nil {
				t.Fatalf("undecodable transaction response %x", resp)
			}
		case 2:
			resp, err := n.serveOwnRound(ctx, "", req)
			var r ownRoundResponse
			if err == nil && types.Decode(resp, &r) != nil {
				t.Fatalf("undecodable own-round response %x", resp)
			}
		}
	})
}
