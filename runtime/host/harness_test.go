package host_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/types"
)

// engines are both wazero engines, configured as the runtime pins them.
var engines = []struct {
	name   string
	config func() wazero.RuntimeConfig
}{
	{"compiler", wazero.NewRuntimeConfigCompiler},
	{"interpreter", wazero.NewRuntimeConfigInterpreter},
}

// deployConfig admits exactly the host ABI and the virtual WASI.
var deployConfig = validate.Config{Limits: validate.DefaultLimits(), Imports: append(host.Funcs(), wasi.Funcs()...)}

// fresh is a host.Instances that instantiates a new instance for every
// frame (and runs _initialize in its fixed environment), the simplest
// correct engine: the reference the pooled engine must agree with.
type fresh struct {
	t      testing.TB
	engine int
	rt     wazero.Runtime
	code   map[types.Address]wazero.CompiledModule
}

// shared is one wazero runtime per engine for the whole test process, with
// every module compiled once: Go guests take about a second to validate,
// instrument and compile, and tests deploy them many times.
var shared struct {
	sync.Mutex
	rt       [2]wazero.Runtime
	compiled [2]map[[32]byte]wazero.CompiledModule
}

func newFresh(t testing.TB, engine int) *fresh {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.rt[engine] == nil {
		ctx := context.Background()
		cfg := engines[engine].config().
			WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false).SetEnabled(api.CoreFeatureReferenceTypes, false)).
			WithMemoryLimitPages(512).
			WithCloseOnContextDone(false)
		rt := wazero.NewRuntimeWithConfig(ctx, cfg)
		if _, err := host.Instantiate(ctx, rt); err != nil {
			t.Fatal(err)
		}
		if _, err := wasi.Instantiate(ctx, rt); err != nil {
			t.Fatal(err)
		}
		shared.rt[engine], shared.compiled[engine] = rt, map[[32]byte]wazero.CompiledModule{}
	}
	return &fresh{t: t, engine: engine, rt: shared.rt[engine], code: map[types.Address]wazero.CompiledModule{}}
}

// deploy validates, instruments and compiles bin at addr.
func (e *fresh) deploy(addr types.Address, bin []byte) {
	e.t.Helper()
	shared.Lock()
	defer shared.Unlock()
	id := sha256.Sum256(bin)
	if cm, ok := shared.compiled[e.engine][id]; ok {
		e.code[addr] = cm
		return
	}
	p, err := deploy.Prepare(bin, deployConfig)
	if err != nil {
		e.t.Fatalf("deploy: %v", err)
	}
	cm, err := e.rt.CompileModule(context.Background(), p.Instrumented)
	if err != nil {
		e.t.Fatalf("compile: %v", err)
	}
	shared.compiled[e.engine][id] = cm
	e.code[addr] = cm
}

func (e *fresh) Acquire(ctx context.Context, addr types.Address, method string) (api.Module, api.Function, bool, error) {
	cm, ok := e.code[addr]
	if !ok {
		return nil, nil, false, nil
	}
	mod, err := e.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, nil, false, err
	}
	if init := mod.ExportedFunction("_initialize"); init != nil {
		mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal).Set(host.InitGasMax)
		st := wasi.InitState()
		if err := init.CallWithStack(wasi.WithState(ctx, &st), nil); err != nil {
			mod.Close(ctx)
			return nil, nil, false, fmt.Errorf("%w: _initialize: %w", host.ErrUninstantiable, err)
		}
	}
	return mod, mod.ExportedFunction(method), true, nil
}

func (e *fresh) Release(mod api.Module, _ bool) { mod.Close(context.Background()) }

// addr is a readable test address.
func addr(name string) types.Address { return sha256.Sum256([]byte("hosttest/" + name)) }

// goContracts builds the Go example modules once per test process.
var goContracts struct {
	once sync.Once
	bins map[string][]byte
	err  error
}

// contract returns an example module: "counter_wat" is the committed WAT
// build, the others are built from contracts/<name> with the local Go.
func contract(t testing.TB, name string) []byte {
	t.Helper()
	if name == "counter_wat" {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "contracts/counter_wat/counter.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	goContracts.once.Do(func() { goContracts.bins, goContracts.err = buildContracts(repoRoot(t)) })
	if goContracts.err != nil {
		t.Fatal(goContracts.err)
	}
	return goContracts.bins[name]
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "../..")
}

func buildContracts(root string) (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "kairos-contracts-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := map[string][]byte{}
	for _, name := range []string{"counter", "token", "registry", "caller"} {
		path := filepath.Join(dir, name+".wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, "./contracts/"+name)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building contracts/%s: %v\n%s", name, err, msg)
		}
		if out[name], err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// call is one transaction of a script.
type call struct {
	from, to types.Address
	method   string
	input    []byte
	time     int64
}

// chain runs transactions through the real host on one engine, committing
// the writes of successful ones (not of simulations) to a MemState.
type chain struct {
	eng    *fresh
	state  host.MemState
	access []types.Access // nil: every module's keys, read and write
	gas    int64
	height int64
	sim    bool
	debug  []string
	arena  *host.Arena // host.Tx.Arena of every transaction
}

func newChain(t testing.TB, engine int) *chain {
	return &chain{eng: newFresh(t, engine), state: host.MemState{}, gas: 100_000_000, height: 1}
}

func (c *chain) run(tc call, lifecycle bool) host.Result {
	c.eng.t.Helper()
	access := c.access
	if access == nil {
		for a := range c.eng.code {
			access = append(access, types.Access{Module: a, Prefix: true, Mode: types.Write})
		}
	}
	tx := &host.Tx{
		ID: sha256.Sum256(append([]byte(tc.method), tc.input...)), Sender: tc.from, Time: tc.time, Height: c.height,
		Gas: c.gas, Access: access, Simulate: c.sim, Lifecycle: lifecycle, State: c.state, Instances: c.eng,
		Arena: c.arena,
	}
	if c.sim { // as the node: a debug sink in simulation only
		tx.Debug = func(m []byte) { c.debug = append(c.debug, string(m)) }
	}
	res, err := host.Run(context.Background(), tx, tc.to, tc.method, tc.input)
	if err != nil {
		c.eng.t.Fatalf("%s: node error: %v", tc.method, err)
	}
	if res.Status == types.StatusOK && !c.sim {
		c.state.Apply(res.Writes)
	}
	return res
}

// deploy installs bin at a and runs init (when exported) with input.
func (c *chain) deploy(a types.Address, bin []byte, deployer types.Address, input []byte, time int64) host.Result {
	c.eng.t.Helper()
	c.eng.deploy(a, bin)
	mod, initFn, _, err := c.eng.Acquire(context.Background(), a, "init")
	if err != nil {
		c.eng.t.Fatal(err)
	}
	hasInit := initFn != nil
	c.eng.Release(mod, false)
	if !hasInit {
		return host.Result{Status: types.StatusOK}
	}
	return c.run(call{from: deployer, to: a, method: "init", input: input, time: time}, true)
}
