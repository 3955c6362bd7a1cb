package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/consensus/order"
	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// syncServer is a node value with a memory state store holding versions
// 1..3 (height 2 certified and compacted), enough to serve sync requests
// without a network.
func syncServer(t testing.TB) (*Node, *consensus.CheckpointCert) {
	t.Helper()
	comm := testCommittee(t, 4)
	s, err := state.OpenMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for h := uint64(1); h <= 3; h++ {
		var ws []state.Write
		for k := 0; k < 20; k++ {
			ws = append(ws, state.Write{Key: types.StateKey{Key: []byte(fmt.Sprintf("k%d", k))}, Value: []byte(fmt.Sprintf("v%d.%d", h, k))})
		}
		if _, err := s.Commit(ctx, h, ws); err != nil {
			t.Fatal(err)
		}
	}
	n := &Node{cfg: Config{Committee: comm, SyncChunkLeaves: 4}, store: s, d: s.Datastore(), log: slog.New(slog.DiscardHandler)}
	n.ctx, n.cancel = context.WithCancel(ctx)
	t.Cleanup(n.cancel)
	v, err := s.View(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	root := v.Root()
	v.Close()
	st := &consensus.OrderingState{Height: 2, Order: orderState(2)}
	enc := st.Encode()
	cc := signedCert(comm, 2, root, sha256.Sum256(enc), 3)
	if err := n.d.Put(ctx, keyOState, encodeOrderingPair(cc, enc)); err != nil {
		t.Fatal(err)
	}
	return n, cc
}

// orderState is an empty ordering-layer state of a 4-validator committee
// at height h.
func orderState(h uint64) order.State { return order.State{T: make([]int64, 4), Height: h} }

// signedCert is a checkpoint certificate signed by validators 0..signers-1.
func signedCert(comm *consensus.Committee, h uint64, root types.Root, ordering [32]byte, signers int) *consensus.CheckpointCert {
	cc := &consensus.CheckpointCert{Height: h, StateRoot: root, OrderingStateHash: ordering}
	for v := 0; v < signers; v++ {
		vote := &consensus.CheckpointVote{Height: h, StateRoot: root, OrderingStateHash: ordering, Signer: uint32(v)}
		comm.SignCheckpoint(consensus.Ed25519Signer(validatorKey(v)), vote)
		cc.Signers, cc.Sigs = append(cc.Signers, uint32(v)), append(cc.Sigs, vote.Sig)
	}
	return cc
}

// TestSyncRequestsRejectBadInput: every state-sync and catch-up handler refuses an
// oversized request before decoding it, a malformed one, and a height or
// chunk it does not have, each with its sentinel; good requests are served.
func TestSyncRequestsRejectBadInput(t *testing.T) {
	n, _ := syncServer(t)
	ctx := context.Background()
	handlers := map[string]func(context.Context, []byte) ([]byte, error){
		"state":    func(c context.Context, b []byte) ([]byte, error) { return n.serveSyncState(c, "", b) },
		"manifest": func(c context.Context, b []byte) ([]byte, error) { return n.serveSyncManifest(c, "", b) },
		"chunk":    func(c context.Context, b []byte) ([]byte, error) { return n.serveSyncChunk(c, "", b) },
		"block":    func(c context.Context, b []byte) ([]byte, error) { return n.serveSyncBlock(c, "", b) },
	}
	for name, h := range handlers {
		if _, err := h(ctx, make([]byte, maxSyncRequestBytes+1)); !errors.Is(err, ErrSyncRequest) {
			t.Errorf("%s: oversized request: %v, want %v", name, err, ErrSyncRequest)
		}
		if _, err := h(ctx, []byte{0xff, 0x00}); !errors.Is(err, ErrSyncRequest) {
			t.Errorf("%s: malformed request: %v, want %v", name, err, ErrSyncRequest)
		}
	}
	req := func(h uint64, i uint32) []byte { return types.MustEncode(&syncChunkRequest{Height: h, Index: i}) }
	if _, err := n.serveSyncBlock(ctx, "", req(1, 0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("block above the served height: %v, want %v", err, ErrNotFound)
	}
	if _, err := n.serveSyncManifest(ctx, "", req(3, 0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("manifest of a height not compacted: %v, want %v", err, ErrNotFound)
	}
	mb, err := n.serveSyncManifest(ctx, "", req(2, 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := state.DecodeManifest(mb)
	if err != nil || m.Height != 2 || len(m.Chunks) < 2 {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	if _, err := n.serveSyncChunk(ctx, "", req(2, uint32(len(m.Chunks)))); !errors.Is(err, ErrNotFound) {
		t.Errorf("chunk past the manifest: %v, want %v", err, ErrNotFound)
	}
	for i := range m.Chunks {
		b, err := n.serveSyncChunk(ctx, "", req(2, uint32(i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := state.VerifyChunk(m, b); err != nil {
			t.Fatalf("served chunk %d does not verify: %v", i, err)
		}
	}
	b, err := n.serveSyncState(ctx, "", types.MustEncode(&struct{}{}))
	var r syncStateResponse
	if err != nil || types.Decode(b, &r) != nil || r.Cert.Height != 2 {
		t.Fatalf("state answer: %v, height %d", err, r.Cert.Height)
	}
}

// TestCheckSyncStateRejects: a checkpoint answer is taken only with a
// quorum certificate and an ordering state that hashes to its value and is
// of its height.
func TestCheckSyncStateRejects(t *testing.T) {
	n, cc := syncServer(t)
	comm := n.cfg.Committee
	good := &consensus.OrderingState{Height: 2, Order: orderState(2)}
	enc := good.Encode()
	if _, err := checkSyncState(comm, 1, &syncStateResponse{Cert: *cc, State: enc}); err != nil {
		t.Fatalf("good answer: %v", err)
	}
	other := &consensus.OrderingState{Height: 3, Order: orderState(3)}
	for _, tc := range []struct {
		name string
		r    syncStateResponse
		want error
	}{
		{"no quorum", syncStateResponse{Cert: *signedCert(comm, 2, cc.StateRoot, cc.OrderingStateHash, 2), State: enc}, consensus.ErrNoQuorum},
		{"state not the certified one", syncStateResponse{Cert: *cc, State: other.Encode()}, ErrSyncAnswer},
		{"state of another height", syncStateResponse{Cert: *signedCert(comm, 2, cc.StateRoot, other.Hash(), 3), State: other.Encode()}, ErrSyncAnswer},
		{"undecodable state", syncStateResponse{Cert: *signedCert(comm, 2, cc.StateRoot, sha256.Sum256([]byte{1}), 3), State: []byte{1}}, consensus.ErrMalformed},
	} {
		if _, err := checkSyncState(comm, 1, &tc.r); !errors.Is(err, tc.want) || !errors.Is(err, ErrSyncAnswer) {
			t.Errorf("%s: %v, want %v and %v", tc.name, err, tc.want, ErrSyncAnswer)
		}
	}
}

// FuzzSyncRequest feeds arbitrary peer bytes to the state-sync handlers:
// an answer that decodes, or an error; never a panic.
func FuzzSyncRequest(f *testing.F) {
	f.Add(byte(0), types.MustEncode(&struct{}{}))
	f.Add(byte(1), types.MustEncode(&syncChunkRequest{Height: 2}))
	f.Add(byte(2), types.MustEncode(&syncChunkRequest{Height: 2, Index: 1}))
	n, _ := syncServer(f)
	f.Fuzz(func(t *testing.T, which byte, req []byte) {
		ctx := context.Background()
		var err error
		switch which % 4 {
		case 0:
			var b []byte
			if b, err = n.serveSyncState(ctx, "", req); err == nil {
				err = types.Decode(b, &syncStateResponse{})
			}
		case 1:
			var b []byte
			if b, err = n.serveSyncManifest(ctx, "", req); err == nil {
				_, err = state.DecodeManifest(b)
			}
		case 2:
			_, err = n.serveSyncChunk(ctx, "", req)
		case 3:
			_, err = n.serveSyncBlock(ctx, "", req)
		}
		if err != nil && !errors.Is(err, ErrSyncRequest) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

// TestCheckSyncBlockRejects: a block fetched during catch-up is taken only
// under a quorum certificate of its height naming its id.
func TestCheckSyncBlockRejects(t *testing.T) {
	comm := testCommittee(t, 4)
	blk := types.Block{Height: 5, Time: 9}
	cert := func(h uint64, id types.Hash, signers int) consensus.CheckpointCert {
		cc := consensus.CheckpointCert{Height: h, BlockID: id}
		for v := 0; v < signers; v++ {
			vote := &consensus.CheckpointVote{Height: h, BlockID: id, Signer: uint32(v)}
			comm.SignCheckpoint(consensus.Ed25519Signer(validatorKey(v)), vote)
			cc.Signers, cc.Sigs = append(cc.Signers, uint32(v)), append(cc.Sigs, vote.Sig)
		}
		return cc
	}
	if err := checkSyncBlock(comm, 5, &syncBlockResponse{Block: blk, Cert: cert(5, blk.ID(), 3)}); err != nil {
		t.Fatalf("good block: %v", err)
	}
	other := types.Block{Height: 5, Time: 10}
	for name, r := range map[string]syncBlockResponse{
		"no quorum":               {Block: blk, Cert: cert(5, blk.ID(), 2)},
		"another block's id":      {Block: blk, Cert: cert(5, other.ID(), 3)},
		"certificate of 6":        {Block: blk, Cert: cert(6, blk.ID(), 3)},
		"block of another height": {Block: types.Block{Height: 4}, Cert: cert(5, (&types.Block{Height: 4}).ID(), 3)},
	} {
		if err := checkSyncBlock(comm, 5, &r); !errors.Is(err, ErrSyncAnswer) {
			t.Errorf("%s: %v, want %v", name, err, ErrSyncAnswer)
		}
	}
}
