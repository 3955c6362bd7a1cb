package enginetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	kexec "github.com/kairos-network/kairos/runtime/exec"
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/vm"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// config is one engine configuration. fullRestore turns off dirty-page
// tracking (vm.Config.FullRestore), for the benchmarks' before/after.
// A pooled configuration takes its instances as an executor worker does
// (exec.Worker, the production path of a block's transactions); shared
// takes them through the engine's locked Acquire and Release instead
// (simulation's path, and the benchmarks' before this round).
type config struct {
	name                        string
	interp, pooled, fullRestore bool
	shared                      bool
}

// configs: the reference (compiler, fresh instance per frame) first.
var configs = []config{
	{"compiler/fresh", false, false, false, false},
	{"compiler/pooled", false, true, false, false},
	{"interpreter/fresh", true, false, false, false},
	{"interpreter/pooled", true, true, false, false},
}

// fullRestore is the pooled compiler restoring whole snapshots, the
// untracked reference for dirty-page restores.
var fullRestore = config{"compiler/pooled-fullrestore", false, true, true, false}

// shared holds, per wazero engine and restore mode, one vm.Engine (fresh
// instances) and one exec.PooledEngine (the node's pool) for the test
// process, and every
// deploy's output, so each module is prepared once and compiled once per
// engine. Code ids are content hashes, so tests can share the pool.
var shared struct {
	sync.Mutex
	engines  [4]*vm.Engine
	pools    [4]*kexec.PooledEngine
	prepared map[[32]byte]*prepared
	codes    [4]map[[32]byte]*vm.Code
}

func engine(t testing.TB, cf config) (*vm.Engine, *kexec.PooledEngine, int) {
	t.Helper()
	i := 0
	if cf.interp {
		i = 1
	}
	if cf.fullRestore {
		i += 2
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.engines[i] == nil {
		c := vm.DefaultConfig()
		c.Interpreter = cf.interp
		c.FullRestore = cf.fullRestore
		e, err := vm.NewEngine(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		pc := kexec.DefaultPoolConfig()
		pc.VM = c
		p, err := kexec.NewPooledEngine(context.Background(), pc)
		if err != nil {
			t.Fatal(err)
		}
		shared.engines[i], shared.pools[i], shared.codes[i] = e, p, map[[32]byte]*vm.Code{}
	}
	return shared.engines[i], shared.pools[i], i
}

// prepared is what the tests keep of a deploy: not the decoded module,
// which for a Go guest is tens of MB the RSS test would count.
type prepared struct {
	instrumented []byte
	methods      []string // exported functions
}

// prepare runs the deploy pipeline once per module.
func prepare(t testing.TB, bin []byte) (*prepared, error) {
	t.Helper()
	id := sha256.Sum256(bin)
	shared.Lock()
	defer shared.Unlock()
	if shared.prepared == nil {
		shared.prepared = map[[32]byte]*prepared{}
	}
	if p, ok := shared.prepared[id]; ok {
		return p, nil
	}
	d, err := deploy.Prepare(bin, deploy.Config())
	if err != nil {
		return nil, err
	}
	p := &prepared{instrumented: d.Instrumented}
	for _, e := range d.Module.Exports {
		if e.Kind == wasm.ExternFunc {
			p.methods = append(p.methods, e.Name)
		}
	}
	shared.prepared[id] = p
	return p, nil
}

// modules is a host.Instances over runtime/vm: fresh instantiates (and
// initializes) an instance per frame, pooled reuses restored instances
// through exec.PooledEngine, by default through a worker cache of its own
// as an executor worker does.
type modules struct {
	t      testing.TB
	e      *vm.Engine
	ei     int
	pool   *kexec.PooledEngine // nil: fresh
	worker *kexec.Worker       // nil: fresh or shared
	code   map[types.Address]installed
	fresh  map[api.Module]*vm.Instance
	failed int // frames released as failed
}

func newModules(t testing.TB, c config) *modules {
	e, pool, ei := engine(t, c)
	m := &modules{t: t, e: e, ei: ei, code: map[types.Address]installed{}, fresh: map[api.Module]*vm.Instance{}}
	if c.pooled {
		m.pool = pool
		if !c.shared {
			m.worker = pool.NewWorker()
			t.Cleanup(m.worker.Flush)
		}
	}
	return m
}

// installed is a module's instrumented code and its id (hashed once: a Go
// guest is 2 MB).
type installed struct {
	bin  []byte
	id   string
	load func() ([]byte, error) // the pool's loader: bin
}

// install makes the instrumented module servable at a.
func (m *modules) install(a types.Address, instrumented []byte) {
	id := sha256.Sum256(instrumented)
	m.code[a] = installed{instrumented, string(id[:]), func() ([]byte, error) { return instrumented, nil }}
}

func (m *modules) compiled(ctx context.Context, instrumented []byte) (*vm.Code, error) {
	id := sha256.Sum256(instrumented)
	shared.Lock()
	defer shared.Unlock()
	if c, ok := shared.codes[m.ei][id]; ok {
		return c, nil
	}
	c, err := m.e.Compile(ctx, instrumented)
	if err == nil {
		shared.codes[m.ei][id] = c
	}
	return c, err
}

func (m *modules) Acquire(ctx context.Context, a types.Address, method string) (api.Module, api.Function, bool, error) {
	c, ok := m.code[a]
	if !ok {
		return nil, nil, false, nil
	}
	if m.worker != nil {
		mod, f, err := m.worker.Acquire(ctx, c.id, method, c.load)
		return mod, f, err == nil, err
	}
	if m.pool != nil {
		mod, f, err := m.pool.Acquire(ctx, c.id, method, c.load)
		return mod, f, err == nil, err
	}
	code, err := m.compiled(ctx, c.bin)
	if err != nil {
		return nil, nil, false, err
	}
	in, err := code.Instantiate(ctx, vm.Env{})
	if err != nil {
		return nil, nil, false, err
	}
	m.fresh[in.Module()] = in
	return in.Module(), in.Export(method), true, nil
}

func (m *modules) Release(mod api.Module, failed bool) {
	if failed {
		m.failed++
	}
	if m.worker != nil {
		m.worker.Release(mod, failed)
		return
	}
	if m.pool != nil {
		m.pool.Release(mod, failed)
		return
	}
	m.fresh[mod].Close(context.Background())
	delete(m.fresh, mod)
}

// tx is one transaction of a script.
type tx struct {
	from, to types.Address
	method   string
	input    []byte
	time     int64
}

// chain runs transactions through host.Run on one configuration and
// commits the writes of successful ones to a MemState.
type chain struct {
	t     testing.TB
	mods  *modules
	state host.MemState
	gas   int64
}

func newChain(t testing.TB, c config) *chain {
	return &chain{t: t, mods: newModules(t, c), state: host.MemState{}, gas: 50_000_000}
}

// hostTx is the host's view of tc: every installed module's keys
// declared writable.
func (c *chain) hostTx(tc tx, lifecycle bool) *host.Tx {
	var access []types.Access
	for a := range c.mods.code {
		access = append(access, types.Access{Module: a, Prefix: true, Mode: types.Write})
	}
	// In address order, not the map's: the host scans the list, and a
	// benchmark's cost should not depend on where the map put its module.
	slices.SortFunc(access, func(a, b types.Access) int { return bytes.Compare(a.Module[:], b.Module[:]) })
	return &host.Tx{
		ID: sha256.Sum256(append([]byte(tc.method), tc.input...)), Sender: tc.from, Time: tc.time, Height: 7,
		Gas: c.gas, Access: access, Lifecycle: lifecycle, State: c.state, Instances: c.mods,
	}
}

// run executes tc; commit applies the writes of a successful run.
func (c *chain) run(tc tx, lifecycle, commit bool) host.Result {
	c.t.Helper()
	res, err := host.Run(context.Background(), c.hostTx(tc, lifecycle), tc.to, tc.method, tc.input)
	if err != nil {
		c.t.Fatalf("%s: node error: %v", tc.method, err)
	}
	if commit && res.Status == types.StatusOK {
		c.state.Apply(res.Writes)
	}
	return res
}

// deploy installs bin at a and runs its init with input (if it has one).
func (c *chain) deploy(a types.Address, bin []byte, from types.Address, input []byte) {
	c.t.Helper()
	p, err := prepare(c.t, bin)
	if err != nil {
		c.t.Fatalf("deploy: %v", err)
	}
	c.mods.install(a, p.instrumented)
	if slices.Contains(p.methods, "init") {
		if r := c.run(tx{from: from, to: a, method: "init", input: input, time: 1e9}, true, true); r.Status != types.StatusOK {
			c.t.Fatalf("init: %v %s", r.Status, r.Reason())
		}
	}
}

// record is everything of a Result that consensus sees, as one comparable
// string.
func record(r host.Result) string {
	return fmt.Sprintf("status=%v reason=%q return=%x gas=%d events=%v writes=%v", r.Status, r.Reason(), r.Return, r.GasUsed, r.Events, r.Writes)
}

func addr(name string) types.Address { return sha256.Sum256([]byte("enginetest/" + name)) }

// enc concatenates fields in the SDK encoding (docs/abi.md section 7).
func enc(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case types.Address:
			b = append(b, p[:]...)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, p)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("enc: %T", p))
		}
	}
	return b
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../..")
}

// contracts builds the Go example modules once per test process (as `make
// contracts` does) and adds the committed WAT modules.
var contracts struct {
	once sync.Once
	bins map[string][]byte
	err  error
}

func contract(t testing.TB, name string) []byte {
	t.Helper()
	contracts.once.Do(func() { contracts.bins, contracts.err = buildContracts() })
	if contracts.err != nil {
		t.Fatal(contracts.err)
	}
	return contracts.bins[name]
}

func buildContracts() (map[string][]byte, error) {
	root := repoRoot()
	out := map[string][]byte{}
	var err error
	for name, path := range map[string]string{"counter_wat": "contracts/counter_wat/counter.wasm", "token_wat": "contracts/token_wat/token.wasm"} {
		if out[name], err = os.ReadFile(filepath.Join(root, path)); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"counter", "token", "registry", "caller"} {
		if out[name], err = buildGo("./contracts/" + name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// buildGo builds the Go module in the package at pkg (relative to the
// repository root) as `make contracts` does.
func buildGo(pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "kairos-contracts-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "module.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, pkg)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(path)
}
