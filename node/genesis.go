package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/types"
)

// The genesis check. Every validator must run the same committee: chain,
// validators and consensus.Params, which include rules outside consensus
// proper (the checkpoint and compaction intervals, empty blocks) that no
// message would show to differ until much later. Each node serves the hash
// of its genesis and asks every peer for theirs once (again each
// LagCheckInterval until all answered, from watchLag, so start-up does
// not wait). A peer with another genesis is logged; when peers of weight
// above F do, at least one honest validator disagrees with this node, which
// is then the misconfigured one: it halts with ErrGenesisMismatch.
const protoGenesis protocol.ID = "/kairos/genesis/1"

// ErrGenesisMismatch halts a node whose genesis differs from that of
// validators weighing more than F.
var ErrGenesisMismatch = errors.New("node: genesis differs from the other validators'")

type genesisResponse struct {
	_    struct{} `cbor:",toarray"`
	Hash [32]byte
}

// genesisHash is the sha2-256 of the canonical encoding of what every
// validator must share.
func genesisHash(c *consensus.Committee) [32]byte {
	type validator struct {
		_      struct{} `cbor:",toarray"`
		Key    []byte
		Weight uint64
	}
	type genesis struct {
		_          struct{} `cbor:",toarray"`
		Chain      string
		Epoch      uint64
		Validators []validator
		Params     consensus.Params
	}
	g := genesis{Chain: c.ChainID, Epoch: c.Epoch, Params: c.Params}
	for _, v := range c.Validators {
		g.Validators = append(g.Validators, validator{Key: v.Key, Weight: v.Weight})
	}
	return sha256.Sum256(types.MustEncode(&g))
}

func (n *Node) serveGenesis(context.Context, peer.ID, []byte) ([]byte, error) {
	return types.MustEncode(&genesisResponse{Hash: genesisHash(n.cfg.Committee)}), nil
}

// genesisCheck is the state of the genesis check (watchLag's goroutine).
type genesisCheck struct {
	own      [32]byte
	answered map[uint32]bool
	differ   uint64 // weight of peers with another genesis
}

// checkGenesis asks the peers that have not answered yet. It returns true
// when every peer answered, and ErrGenesisMismatch when peers of weight
// above F run another genesis.
func (n *Node) checkGenesis(g *genesisCheck) (bool, error) {
	comm := n.cfg.Committee
	if g.answered == nil {
		g.own, g.answered = genesisHash(comm), map[uint32]bool{}
	}
	for v := range n.peers {
		if uint32(v) == n.me || g.answered[uint32(v)] {
			continue
		}
		var r genesisResponse
		if err := n.request(uint32(v), protoGenesis, &struct{}{}, &r); err != nil {
			continue // not reachable yet
		}
		g.answered[uint32(v)] = true
		if r.Hash != g.own {
			g.differ += comm.Validators[v].Weight
			n.log.Error("validator runs another genesis (chain, validators or [genesis] parameters)", "peer", v, "theirs", fmt.Sprintf("%x", r.Hash), "ours", fmt.Sprintf("%x", g.own))
		}
	}
	if g.differ > comm.F() {
		return true, fmt.Errorf("%w: validators of weight %d (more than F = %d) run another genesis; ours is %x", ErrGenesisMismatch, g.differ, comm.F(), g.own)
	}
	return len(g.answered) == len(n.peers)-1, nil
}
