package devnet

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kairos-network/kairos/consensus"
	"github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/types"
)

// ErrDemo reports a demo step whose result is not the expected one.
var ErrDemo = errors.New("devnet: demo")

// Gas limits of the demo's transactions: a deploy pays per code byte
// (exec.GasCodeByte, a Go module is megabytes), a call into a Go module
// runs its runtime's start-up code.
const (
	deployGas = 1 << 32
	callGas   = 1 << 30
	// validity is how long a demo transaction stays valid.
	validity = 10 * time.Minute
)

// Account is a key the demo signs with.
type Account struct {
	Key   ed25519.PrivateKey
	Addr  types.Address
	nonce uint64 // of the last transaction sent
}

// NewAccount derives the deterministic devnet account i (account 0 deploys
// the modules and is the token's admin).
func NewAccount(i int) *Account {
	s := sha256.Sum256([]byte(fmt.Sprintf("kairos-devnet-account-%d", i)))
	k := ed25519.NewKeyFromSeed(s[:])
	return &Account{Key: k, Addr: types.AddressFromPublicKey(k.Public().(ed25519.PublicKey))}
}

// Sign signs the account's next transaction.
func (a *Account) Sign(gas uint64, p types.Payload, access ...types.Access) *types.Tx {
	a.nonce++
	return types.SignTx(types.TxBody{ChainID: ChainID, Sender: a.Key.Public().(ed25519.PublicKey), Nonce: a.nonce,
		ValidUntil: time.Now().Add(validity).UnixNano(), GasLimit: gas, Access: access, Payload: p}, a.Key)
}

// Keys of the example modules' state (contracts/token and
// contracts/counter_wat document them): the SDK names a map u8(len) ‖ name
// and appends the encoded key, an address as its 32 bytes.
var (
	counterKey     = []byte("\x05count")
	tokenAdminKey  = []byte("\x05admin")
	tokenSupplyKey = []byte("\x06supply")
)

// TokenBalanceKey is the state key of owner's balance in contracts/token.
func TokenBalanceKey(owner types.Address) []byte { return append([]byte("\x03bal"), owner[:]...) }

func rw(m types.Address, k []byte) types.Access {
	return types.Access{Module: m, Key: k, Mode: types.Write}
}

// transferArgs is to ‖ u64 amount, the input of token mint and transfer.
func transferArgs(to types.Address, amount uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), to[:]...), amount)
}

// Bounds of a demo workload (one process, a shared machine).
const (
	MaxDemoAccounts = 256
	MaxDemoRounds   = 1000
)

// DemoConfig is what Demo runs.
type DemoConfig struct {
	Counter   []byte // wasm of contracts/counter_wat (required)
	Token     []byte // wasm of contracts/token; nil skips the token workload
	Accounts  int    // token holders besides the admin (0 = 8; 2..MaxDemoAccounts)
	Rounds    int    // transfer rounds, one transfer per holder each (0 = 5; 1..MaxDemoRounds)
	Committee *consensus.Committee
}

// DemoReport holds what Demo measured.
type DemoReport struct {
	Counter, Token types.Address
	FirstBlock     time.Duration // from Demo's start to the first receipt
	Transfers      int
	ProofHeight    uint64
	ProofValue     uint64 // the proven u64 (a holder's balance, or the count)
}

type demo struct {
	ctx     context.Context
	w       io.Writer
	clients []*Client
	cfg     DemoConfig
	admin   *Account
}

// Demo shows the devnet working, printing to w what a newcomer wants to
// see: it waits for the validators to connect, deploys the example modules
// as transactions (account 0 signs), mints 1,000,000 tokens to each of
// Accounts holders and runs Rounds of transfers between them (holder i
// sends i+1 tokens to holder i+1 mod Accounts per round, through the
// validator APIs in turn, and the round waits for its receipts, so nonces
// never race), then prints blocks, the rate, a receipt, and a balance read
// with a Merkle proof verified against a quorum-signed checkpoint's state
// root.
func Demo(ctx context.Context, w io.Writer, apis []string, cfg DemoConfig) (*DemoReport, error) {
	if len(apis) == 0 || cfg.Counter == nil || cfg.Committee == nil {
		return nil, fmt.Errorf("%w: APIs, counter code and committee are required", ErrDemo)
	}
	if cfg.Accounts == 0 {
		cfg.Accounts = 8
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 5
	}
	if cfg.Accounts < 2 || cfg.Accounts > MaxDemoAccounts || cfg.Rounds < 1 || cfg.Rounds > MaxDemoRounds {
		return nil, fmt.Errorf("%w: %d accounts (2..%d), %d rounds (1..%d)", ErrDemo, cfg.Accounts, MaxDemoAccounts, cfg.Rounds, MaxDemoRounds)
	}
	d := &demo{ctx: ctx, w: w, cfg: cfg, admin: NewAccount(0)}
	for _, u := range apis {
		d.clients = append(d.clients, NewClient(u))
	}
	start := time.Now()
	rep := &DemoReport{}
	if err := d.waitPeers(); err != nil {
		return nil, err
	}
	var err error
	if d.admin.nonce, err = d.clients[0].Nonce(ctx, d.admin.Addr); err != nil {
		return nil, err
	}
	if rep.Counter, err = d.deploy("counter (WAT)", cfg.Counter); err != nil {
		return nil, err
	}
	rep.FirstBlock = time.Since(start)
	r, err := d.run(0, d.admin.Sign(callGas, types.Payload{Kind: types.Call, Module: rep.Counter, Method: "increment"},
		rw(rep.Counter, counterKey)))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "counter.increment  -> %s, returned %s, gas %d, height %d\n", r.Receipt.Status, r.Receipt.Return, r.Receipt.GasUsed, r.Height)
	proofKey, proofOf := types.StateKey{Module: rep.Counter, Key: counterKey}, "counter count"
	last := r
	if cfg.Token != nil {
		if rep.Token, err = d.deploy("token (Go)", cfg.Token, tokenAdminKey); err != nil {
			return nil, err
		}
		holders, lastTransfer, n, err := d.tokenWorkload(rep.Token)
		if err != nil {
			return nil, err
		}
		rep.Transfers, last = n, lastTransfer
		proofKey, proofOf = types.StateKey{Module: rep.Token, Key: TokenBalanceKey(holders[1].Addr)}, "token balance of "+holders[1].Addr.String()
	}
	if err := d.printBlocks(); err != nil {
		return nil, err
	}
	printReceipt(w, last)
	if rep.ProofHeight, rep.ProofValue, err = d.proveValue(proofOf, proofKey, last.Height); err != nil {
		return nil, err
	}
	return rep, nil
}

func (d *demo) waitPeers() error {
	for {
		connected := 0
		for _, c := range d.clients {
			s, err := c.Status(d.ctx)
			if err != nil {
				return err
			}
			if s.Peers >= len(d.clients)-1 {
				connected++
			}
		}
		if connected == len(d.clients) {
			fmt.Fprintf(d.w, "peers: each of the %d validators is connected to the %d others\n", len(d.clients), len(d.clients)-1)
			return nil
		}
		select {
		case <-d.ctx.Done():
			return fmt.Errorf("waiting for peers: %w", d.ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
}

// run submits tx through validator v's API and waits for its receipt,
// which must be ok.
func (d *demo) run(v int, tx *types.Tx) (*txResult, error) {
	c := d.clients[v%len(d.clients)]
	id, err := c.Submit(d.ctx, tx)
	if err != nil {
		return nil, err
	}
	return d.wait(c, id)
}

type txResult struct {
	ID      types.Hash
	Height  uint64
	Receipt *receiptView
}

type receiptView struct {
	Status  string
	GasUsed uint64
	Return  string
	Events  []string
}

func (d *demo) wait(c *Client, id types.Hash) (*txResult, error) {
	r, err := c.Receipt(d.ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Receipt.Status != types.StatusOK.String() {
		return nil, fmt.Errorf("%w: tx %s: %s %s", ErrDemo, id, r.Receipt.Status, r.Receipt.Error)
	}
	v := &receiptView{Status: r.Receipt.Status, GasUsed: r.Receipt.GasUsed, Return: r.Receipt.Return}
	for _, e := range r.Receipt.Events {
		v.Events = append(v.Events, fmt.Sprintf("%s(%s)", e.Topic, e.Data))
	}
	return &txResult{ID: id, Height: r.Height, Receipt: v}, nil
}

// deploy deploys code signed by the admin; init declares the keys the
// module's init writes at the new instance.
func (d *demo) deploy(name string, code []byte, init ...[]byte) (types.Address, error) {
	addr := exec.InstanceAddress(d.admin.Addr, d.admin.nonce+1)
	var access []types.Access
	for _, k := range init {
		access = append(access, rw(addr, k))
	}
	start := time.Now()
	r, err := d.run(0, d.admin.Sign(deployGas, types.Payload{Kind: types.Deploy, Code: code, Admin: d.admin.Addr}, access...))
	if err != nil {
		return types.Address{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	fmt.Fprintf(d.w, "deployed %-14s at %s  (%d bytes, height %d, gas %d, %v)\n", name, addr, len(code), r.Height,
		r.Receipt.GasUsed, time.Since(start).Round(time.Millisecond))
	return addr, nil
}

// tokenWorkload mints to the holders (the admin's transactions, one at a
// time since they share a sender) and runs the transfer rounds. It returns
// the holders, the last transfer and the number of transfers.
func (d *demo) tokenWorkload(token types.Address) ([]*Account, *txResult, int, error) {
	const minted = 1_000_000
	holders := make([]*Account, d.cfg.Accounts)
	for i := range holders {
		holders[i] = NewAccount(i + 1)
		n, err := d.clients[0].Nonce(d.ctx, holders[i].Addr)
		if err != nil {
			return nil, nil, 0, err
		}
		holders[i].nonce = n
		if _, err := d.run(i, d.admin.Sign(callGas, types.Payload{Kind: types.Call, Module: token, Method: "mint",
			Args: transferArgs(holders[i].Addr, minted)},
			types.Access{Module: token, Key: tokenAdminKey, Mode: types.Read},
			rw(token, tokenSupplyKey), rw(token, TokenBalanceKey(holders[i].Addr)))); err != nil {
			return nil, nil, 0, fmt.Errorf("mint: %w", err)
		}
	}
	fmt.Fprintf(d.w, "minted %d tokens to each of %d holders (admin %s)\n", minted, len(holders), d.admin.Addr)
	start := time.Now()
	var last *txResult
	n := 0
	for round := 0; round < d.cfg.Rounds; round++ {
		ids := make([]types.Hash, len(holders))
		for i, h := range holders {
			to := holders[(i+1)%len(holders)].Addr
			// Holder i sends i+1, so balances drift apart visibly.
			tx := h.Sign(callGas, types.Payload{Kind: types.Call, Module: token, Method: "transfer", Args: transferArgs(to, uint64(i+1))},
				rw(token, TokenBalanceKey(h.Addr)), rw(token, TokenBalanceKey(to)))
			id, err := d.clients[i%len(d.clients)].Submit(d.ctx, tx)
			if err != nil {
				return nil, nil, 0, err
			}
			ids[i] = id
		}
		for i, id := range ids {
			r, err := d.wait(d.clients[i%len(d.clients)], id)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("transfer: %w", err)
			}
			if last == nil || r.Height > last.Height {
				last = r
			}
			n++
		}
	}
	took := time.Since(start)
	fmt.Fprintf(d.w, "transfers: %d in %d rounds of %d senders in %v = %.1f tx/s (each round waits for its receipts)\n",
		n, d.cfg.Rounds, len(holders), took.Round(time.Millisecond), float64(n)/took.Seconds())
	return holders, last, n, nil
}

// maxBlocksShown bounds the blocks printed.
const maxBlocksShown = 12

func (d *demo) printBlocks() error {
	s, err := d.clients[0].Status(d.ctx)
	if err != nil {
		return err
	}
	from := uint64(1)
	if s.Height > maxBlocksShown {
		from = s.Height - maxBlocksShown + 1
	}
	fmt.Fprintf(d.w, "blocks: %d executed by validator 0 (showing from %d)\n", s.Height, from)
	for h := from; h <= s.Height; h++ {
		b, err := d.clients[0].Block(d.ctx, h)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "  #%-4d %s  %3d txs  root %.16s…\n", b.Height, time.Unix(0, b.Time).UTC().Format("15:04:05.000"), len(b.Txs), b.StateRoot)
	}
	return nil
}

func printReceipt(w io.Writer, r *txResult) {
	fmt.Fprintf(w, "receipt of %s: height %d, status %s, gas %d, events %v\n", r.ID, r.Height, r.Receipt.Status, r.Receipt.GasUsed, r.Receipt.Events)
}

// proveValue waits for a checkpoint certificate at or above height, checks
// its quorum signatures against the committee, reads k at the certified
// height with a proof from another validator and verifies the proof against
// the certified root, so the value is trusted without trusting the API.
func (d *demo) proveValue(what string, k types.StateKey, height uint64) (uint64, uint64, error) {
	var cc consensus.CheckpointCert
	for {
		cp, err := d.clients[0].Checkpoint(d.ctx)
		if err == nil && cp.Height >= height {
			raw, err := hex.DecodeString(cp.Cert)
			if err != nil {
				return 0, 0, fmt.Errorf("%w: checkpoint hex: %w", ErrDemo, err)
			}
			if err := types.Decode(raw, &cc); err != nil {
				return 0, 0, fmt.Errorf("%w: checkpoint: %w", ErrDemo, err)
			}
			break
		}
		select {
		case <-d.ctx.Done():
			return 0, 0, fmt.Errorf("waiting for a checkpoint at height %d: %w", height, d.ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
	// A copy: checking counts verifications in the committee, and the
	// validators read the shared one (a race under -race otherwise).
	comm := *d.cfg.Committee
	if err := comm.CheckCheckpointCert(&cc); err != nil {
		return 0, 0, fmt.Errorf("%w: checkpoint certificate: %w", ErrDemo, err)
	}
	fmt.Fprintf(d.w, "checkpoint: height %d root %s signed by validators %v (quorum checked)\n", cc.Height, cc.StateRoot, cc.Signers)
	// A certificate can reach a validator before it executed that height
	// itself (a quorum of others signed it): wait until the validator read
	// from serves it.
	other := d.clients[len(d.clients)-1]
	for {
		st, err := other.Status(d.ctx)
		if err == nil && st.Height >= cc.Height {
			break
		}
		select {
		case <-d.ctx.Done():
			return 0, 0, fmt.Errorf("waiting for a validator to serve height %d: %w", cc.Height, d.ctx.Err())
		case <-time.After(receiptPoll):
		}
	}
	s, err := other.State(d.ctx, k, cc.Height, true)
	if err != nil {
		return 0, 0, err
	}
	raw, err := hex.DecodeString(s.Proof)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: proof hex: %w", ErrDemo, err)
	}
	p, err := types.DecodeProof(raw)
	if err != nil {
		return 0, 0, err
	}
	if err := types.Verify(cc.StateRoot, p); err != nil {
		return 0, 0, fmt.Errorf("%w: proof against the certified root: %w", ErrDemo, err)
	}
	if len(p.Entries) != 1 || p.Entries[0].Key.Module != k.Module || string(p.Entries[0].Key.Key) != string(k.Key) ||
		!p.Entries[0].Present() || len(p.Entries[0].Value) != 8 {
		return 0, 0, fmt.Errorf("%w: the proof does not hold an 8-byte value of the key read", ErrDemo)
	}
	v := binary.BigEndian.Uint64(p.Entries[0].Value)
	fmt.Fprintf(d.w, "proof verified: %s = %d at height %d (key %x of module %s), against the checkpoint-certified root %s\n",
		what, v, cc.Height, k.Key, k.Module, cc.StateRoot)
	return cc.Height, v, nil
}
