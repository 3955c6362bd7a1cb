package wasi_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/runtime/deploy"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/validate"
	"github.com/kairos-network/kairos/runtime/wasi"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// probe is one export: call a WASI function with constant arguments and
// store its errno (if any) at errnoAt.
type probe struct {
	name, fn string
	args     []int64
}

const errnoAt = 900

var probes = []probe{
	{"clock", "clock_time_get", []int64{0, 0, 0}},
	{"clock_bad", "clock_time_get", []int64{1, 0, 65535}},
	{"clock2", "clock_time_get", []int64{1, 5, 8}},
	{"rand1", "random_get", []int64{100, 40}},
	{"rand2", "random_get", []int64{140, 30}},
	{"rand_bad", "random_get", []int64{65530, 7}},
	{"write", "fd_write", []int64{1, 200, 2, 400}},
	{"write_fd3", "fd_write", []int64{3, 200, 2, 400}},
	{"write_badiov", "fd_write", []int64{2, 216, 1, 400}},
	{"read", "fd_read", []int64{0, 200, 2, 404}},
	{"read_fd1", "fd_read", []int64{1, 200, 2, 404}},
	{"exit", "proc_exit", []int64{7}},
	{"poll", "poll_oneoff", []int64{1000, 2000, 2, 408}},
	{"fdstat", "fd_fdstat_get", []int64{1, 500}},
	{"fdstat_fd5", "fd_fdstat_get", []int64{5, 500}},
	{"args", "args_sizes_get", []int64{600, 604}},
	{"environ", "environ_sizes_get", []int64{608, 612}},
	{"args_get", "args_get", []int64{600, 604}},
	{"yield", "sched_yield", nil},
	{"close", "fd_close", []int64{1}},
	{"set_flags", "fd_fdstat_set_flags", []int64{1, 0}},
	{"prestat", "fd_prestat_get", []int64{3, 0}},
	{"open", "path_open", []int64{3, 0, 0, 0, 0, 0, 0, 0, 0}},
}

func probeModule(t *testing.T) []byte {
	b := New()
	sigs := map[string]validate.HostFunc{}
	for _, f := range wasi.Funcs() {
		sigs[f.Name] = f
	}
	idx := map[string]uint32{}
	for _, p := range probes {
		if _, ok := idx[p.fn]; !ok {
			f := sigs[p.fn]
			idx[p.fn] = b.Import(wasi.ModuleName, p.fn, f.Type.Params, f.Type.Results)
		}
	}
	b.Memory(1, 1)
	b.Data(200, le32(300, 5, 310, 3))
	b.Data(216, le32(65534, 5))
	b.Data(300, []byte("hello"))
	b.Data(310, []byte("abc"))
	sub := make([]byte, 96) // two subscriptions: a clock, an fd_read
	binary.LittleEndian.PutUint64(sub[0:], 11)
	binary.LittleEndian.PutUint64(sub[48:], 22)
	sub[48+8] = 1
	b.Data(1000, sub)
	for _, p := range probes {
		f := sigs[p.fn]
		var body []wasm.Instr
		if len(f.Type.Results) > 0 {
			body = append(body, I32(errnoAt))
		}
		for i, a := range p.args {
			if f.Type.Params[i] == wasm.I64 {
				body = append(body, I64(a))
			} else {
				body = append(body, I32(int32(a)))
			}
		}
		body = append(body, Idx(wasm.OpCall, idx[p.fn]))
		if len(f.Type.Results) > 0 {
			body = append(body, Mem(wasm.OpI32Store, 2, 0))
		}
		b.Func(p.name, nil, nil, nil, body...)
	}
	pr, err := deploy.Prepare(b.Bytes(), validate.Config{Limits: validate.DefaultLimits(), Imports: wasi.Funcs()})
	if err != nil {
		t.Fatal(err)
	}
	return pr.Instrumented
}

func le32(vs ...uint32) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.LittleEndian.AppendUint32(out, v)
	}
	return out
}

type instance struct {
	t   *testing.T
	mod api.Module
	st  wasi.State
}

func newInstance(t *testing.T, cfg wazero.RuntimeConfig, bin []byte, st wasi.State) *instance {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, cfg.WithCoreFeatures(api.CoreFeaturesV2.SetEnabled(api.CoreFeatureSIMD, false).SetEnabled(api.CoreFeatureReferenceTypes, false)))
	t.Cleanup(func() { rt.Close(ctx) })
	if _, err := wasi.Instantiate(ctx, rt); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	return &instance{t: t, mod: mod, st: st}
}

// call runs an export with 1e6 gas and returns the gas used, the errno
// it stored and the call's error.
func (in *instance) call(name string) (gas int64, errno uint32, err error) {
	g := in.mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal)
	g.Set(1_000_000)
	in.mod.Memory().WriteUint32Le(errnoAt, 0xdead)
	in.st.Stop = nil
	_, err = in.mod.ExportedFunction(name).Call(wasi.WithState(context.Background(), &in.st))
	errno, _ = in.mod.Memory().ReadUint32Le(errnoAt)
	return 1_000_000 - int64(g.Get()), errno, err
}

func (in *instance) mem(off, n uint32) []byte {
	b, _ := in.mod.Memory().Read(off, n)
	return append([]byte{}, b...)
}

// stream is the random stream of docs/abi.md section 8, written from the
// text: byte i is byte i mod 32 of sha256(domain ‖ seed ‖ u64be(i/32)).
func stream(seed []byte, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte("kairos/wasi-random\x00"), seed...), uint64(i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func TestVirtualWASI(t *testing.T) {
	bin := probeModule(t)
	txID := sha256.Sum256([]byte("tx"))
	const txTime = int64(1_700_000_000_000_000_000)
	seed := append(append([]byte{}, txID[:]...), 0, 0, 0, 3)
	type run struct {
		gas   int64
		errno uint32
		err   error
	}
	var all [2][]string
	for ei, cfg := range []wazero.RuntimeConfig{wazero.NewRuntimeConfigCompiler(), wazero.NewRuntimeConfigInterpreter()} {
		var debug []string
		st := wasi.FrameState(txID, 3, txTime)
		st.Debug = func(p []byte) { debug = append(debug, string(p)) }
		in := newInstance(t, cfg, bin, st)
		results := map[string]run{}
		for _, p := range probes {
			gas, errno, err := in.call(p.name)
			r := run{gas: gas, errno: errno}
			if err != nil {
				r.err = in.st.Stop
			}
			results[p.name] = r
			all[ei] = append(all[ei], fmt.Sprintf("%s: gas %d errno %d stop %v", p.name, r.gas, r.errno, r.err))
		}
		want := map[string]uint32{"clock": 0, "rand1": 0, "rand2": 0, "write": 0, "write_fd3": 8, "read": 0, "read_fd1": 8,
			"poll": 0, "fdstat": 0, "fdstat_fd5": 8, "args": 0, "environ": 0, "args_get": 0, "yield": 0, "close": 8,
			"set_flags": 58, "prestat": 8, "open": 8}
		for name, errno := range want {
			if r := results[name]; r.err != nil || r.errno != errno {
				t.Errorf("%s: %+v, want errno %d", name, r, errno)
			}
		}
		for _, name := range []string{"clock_bad", "rand_bad", "write_badiov"} {
			if r := results[name]; !errors.Is(r.err, wasi.ErrBadPointer) {
				t.Errorf("%s: %+v", name, r)
			}
		}
		if r := results["exit"]; r.err == nil || r.err.Error() != "wasi: exit 7" || !errors.Is(r.err, wasi.ErrExit) {
			t.Errorf("exit: %+v", r)
		}
		// The clock: base + 1000·k for the k-th read (a read stopped by a
		// bad pointer does not count), whatever the clock id.
		if a, b := binary.LittleEndian.Uint64(in.mem(0, 8)), binary.LittleEndian.Uint64(in.mem(8, 8)); a != uint64(txTime)+wasi.ClockStep || b != uint64(txTime)+2*wasi.ClockStep {
			t.Errorf("clock reads %d, %d", a, b)
		}
		if got, want := in.mem(100, 70), stream(seed, 70); string(got) != string(want) {
			t.Errorf("random: %x\nwant    %x", got, want)
		}
		if fmt.Sprint(debug) != "[helloabc]" || binary.LittleEndian.Uint32(in.mem(400, 4)) != 8 {
			t.Errorf("fd_write: debug %q, nwritten %d", debug, binary.LittleEndian.Uint32(in.mem(400, 4)))
		}
		if ev := in.mem(2000, 64); binary.LittleEndian.Uint64(ev) != 11 || binary.LittleEndian.Uint16(ev[8:]) != 0 ||
			binary.LittleEndian.Uint64(ev[32:]) != 22 || binary.LittleEndian.Uint16(ev[40:]) != 8 || ev[42] != 1 ||
			binary.LittleEndian.Uint32(in.mem(408, 4)) != 2 {
			t.Errorf("poll_oneoff events %x", ev)
		}
		if fs := in.mem(500, 24); fs[0] != 2 || string(fs[1:]) != string(make([]byte, 23)) {
			t.Errorf("fdstat %x", fs)
		}
		if r := results["clock"]; r.gas < wasi.GasCall+8 {
			t.Errorf("clock gas %d", r.gas)
		}
	}
	if fmt.Sprint(all[0]) != fmt.Sprint(all[1]) {
		t.Errorf("engines differ:\n%v\n%v", all[0], all[1])
	}
}

// holder is a wasi.Holder, as runtime/host's frame context is.
type holder struct {
	context.Context
	st *wasi.State
}

func (h holder) WASIState() *wasi.State { return h.st }

// TestHolderCarriesState: a guest running under a wasi.Holder uses the
// Holder's state, not one its parent context carries (a nested frame's
// context has its caller's as parent).
func TestHolderCarriesState(t *testing.T) {
	in := newInstance(t, wazero.NewRuntimeConfigCompiler(), probeModule(t), wasi.State{})
	own, parents := wasi.FrameState([32]byte{1}, 1, 5000), wasi.FrameState([32]byte{2}, 0, 9000)
	ctx := holder{wasi.WithState(context.Background(), &parents), &own}
	in.mod.ExportedGlobal(meter.GasExport).(api.MutableGlobal).Set(1_000_000)
	if _, err := in.mod.ExportedFunction("clock").Call(ctx); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(in.mem(0, 8)); got != 5000+wasi.ClockStep || own.Reads == 0 || parents.Reads != 0 {
		t.Fatalf("clock read %d, own reads %d, parent's reads %d", got, own.Reads, parents.Reads)
	}
}
