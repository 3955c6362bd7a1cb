package exec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Modules of the bench workloads.
const (
	// BenchNative: transfers of the native Token (no wasm).
	BenchNative = "native"
	// BenchWAT: increments of the WAT counter (contracts/counter_wat),
	// one instance per receiving account, all sharing one code.
	BenchWAT = "wat"
	// BenchGo: transfers of the Go token (contracts/token, built by
	// BuildGoGuest).
	BenchGo = "go"
	// BenchWATToken: transfers of the WAT token (contracts/token_wat, the
	// Go token's twin by hand: same keys, so the same workload).
	BenchWATToken = "wattoken"
)

var benchTitle = map[string]string{
	BenchNative:   "transfers of the native token",
	BenchWAT:      "increments of WAT counters (one instance per receiver)",
	BenchGo:       "transfers of the Go token (contracts/token)",
	BenchWATToken: "transfers of the WAT token (contracts/token_wat)",
}

// ErrBenchModule rejects an unknown bench module or a wasm module without
// code.
var ErrBenchModule = errors.New("exec: bad bench module")

// Addresses of the bench's wasm instances.
var benchGoToken, benchWATToken = benchAddress("go-token", 0), benchAddress("wat-token", 0)

func benchAddress(name string, i int) types.Address {
	return types.Address(sha256.Sum256(binary.BigEndian.AppendUint64([]byte("kairos/bench/"+name+"\x00"), uint64(i))))
}

// goBalanceKey is the balance key of the Go token (and of the WAT token,
// which copies it): the SDK's Map key, u8(len("bal")) ‖ "bal" ‖ address
// (sdk/guest doc).
func goBalanceKey(a types.Address) []byte { return append([]byte("\x03bal"), a[:]...) }

// Workload builds a block of txs transactions of module over accounts:
// sender i (distinct senders) pays (or, for the WAT counter, increments
// the counter of) a distinct receiver, except that a share conflictRate
// of them target one hot account, so they form a chain. code is the wasm
// of a BenchWAT, BenchGo or BenchWATToken module. It returns the block, its bodies and
// the genesis writes.
func Workload(module string, code []byte, accounts, txs int, conflictRate float64) (*types.Block, []*types.Tx, []state.Write, error) {
	if txs < 1 || 2*txs > accounts {
		return nil, nil, nil, fmt.Errorf("exec: bench needs 1 <= txs <= accounts/2, got %d txs, %d accounts", txs, accounts)
	}
	if _, ok := benchTitle[module]; !ok || (module != BenchNative && len(code) == 0) {
		return nil, nil, nil, fmt.Errorf("%w: %q with %d bytes of code", ErrBenchModule, module, len(code))
	}
	addrs := make([]types.Address, accounts)
	for i := range accounts {
		addrs[i] = types.AddressFromPublicKey(benchPub(i))
	}
	var genesis []state.Write
	balances := func(token types.Address, key func(types.Address) []byte) {
		for _, a := range addrs {
			genesis = append(genesis, state.Write{Key: types.StateKey{Module: token, Key: key(a)}, Value: putU64(1 << 40)})
		}
	}
	var call func(from, to int) (types.Payload, []types.Access)
	gas := uint64(10_000)
	transfer := func(token types.Address, key func(types.Address) []byte) {
		call = func(from, to int) (types.Payload, []types.Access) {
			return types.Payload{Kind: types.Call, Module: token, Method: "transfer", Args: TransferArgs(addrs[to], 1)},
				[]types.Access{
					{Module: token, Key: key(addrs[from]), Mode: types.Write},
					{Module: token, Key: key(addrs[to]), Mode: types.Write},
				}
		}
	}
	switch module {
	case BenchNative:
		balances(TokenModule, BalanceKey)
		transfer(TokenModule, BalanceKey)
	case BenchGo, BenchWATToken:
		tok := map[string]types.Address{BenchGo: benchGoToken, BenchWATToken: benchWATToken}[module]
		ws, err := GenesisModule(tok, code, types.Address{})
		if err != nil {
			return nil, nil, nil, err
		}
		genesis, gas = ws, 1<<30
		balances(tok, goBalanceKey)
		transfer(tok, goBalanceKey)
	case BenchWAT:
		ws, err := GenesisModule(benchAddress("counter", 0), code, types.Address{})
		if err != nil {
			return nil, nil, nil, err
		}
		genesis, gas = ws, 1<<30
		for i := 1; i < accounts; i++ {
			// The same record (code, no admin) at every other instance.
			genesis = append(genesis, state.Write{Key: types.StateKey{Module: ModulesModule, Key: recordKey(benchAddress("counter", i))}, Value: ws[0].Value})
		}
		call = func(_, to int) (types.Payload, []types.Access) {
			c := benchAddress("counter", to)
			return types.Payload{Kind: types.Call, Module: c, Method: "increment"},
				[]types.Access{{Module: c, Key: []byte("\x05count"), Mode: types.Write}}
		}
	}
	hot := accounts - 1
	// Spread the conflicting transactions evenly: tx i is hot when the
	// running count floor(i*rate) steps up, so the share is exact and
	// deterministic.
	b := &types.Block{Height: 2, Time: 1e12}
	body := make([]*types.Tx, txs)
	for i := range txs {
		to := txs + i
		if int(float64(i+1)*conflictRate) > int(float64(i)*conflictRate) {
			to = hot
		}
		p, access := call(i, to)
		tx := types.SignTx(types.TxBody{ChainID: "bench", Nonce: 1, ValidUntil: 2e12, GasLimit: gas, Access: access, Payload: p}, benchKey(i))
		body[i] = tx
		b.Txs = append(b.Txs, types.OrderedTx{ID: tx.ID(), TS: b.Time - int64(txs-i)})
	}
	return b, body, genesis, nil
}

// BuildGoGuest builds the Go module in the package directory pkg with the
// local Go toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared: a
// reactor with _initialize, no _start) and returns its wasm.
func BuildGoGuest(pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "kairos-guest")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "guest.wasm")
	cmd := osexec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("exec: building the Go guest %s: %w\n%s", pkg, err, log.Bytes())
	}
	return os.ReadFile(out)
}
