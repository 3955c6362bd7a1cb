package host_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/types"
)

// The differential test runs scripted calls of each example module through
// the real host (wasm, both engines) and through the native harness
// sdk/guest/guesttest (the same Go code compiled for the host), and
// compares statuses, results, abort messages, events and final state.
//
// The native side runs inside each contract's package with `go test
// -overlay`, which adds a generated test file without touching the
// package's folder; the file replays the script and writes its results as
// JSON.

// raw is an address as JSON sees it on both sides (types.Address has a
// text form, guest.Address does not).
type raw = [32]byte

// step is one call of a script; deploy runs the module's init.
type step struct {
	From, To raw
	Method   string
	Input    []byte
	Time     int64
	Deploy   string // contract to deploy at To ("" for a call)
}

// outcome is what a step did, in the form both sides produce.
type outcome struct {
	Status  string
	Return  []byte
	Message string // abort message ("" unless aborted)
	Events  []event
}

type event struct {
	Module raw
	Topic  string
	Data   []byte
}

type stateKey struct {
	Module raw
	Key    []byte
}

type nativeIn struct {
	Steps []step
	Keys  []stateKey
}

type nativeOut struct {
	Outcomes []outcome
	Values   [][]byte // per key; nil when absent
}

// Inputs in the encodings of docs/abi.md section 7.
func enc(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case types.Address:
			b = append(b, p[:]...)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, p)
		case int64:
			b = binary.BigEndian.AppendUint64(b, uint64(p))
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("enc: %T", p))
		}
	}
	return b
}

var carol = addr("carol")

// scripts per contract package. Each starts with its deploys.
func scripts() map[string][]step {
	counter, token, registry, caller := addr("counter"), addr("token"), addr("registry"), addr("caller")
	const t0 = int64(1_700_000_000_000_000_000)
	const period = int64(3_600_000_000_000)
	return map[string][]step{
		"counter": {
			{From: alice, To: counter, Deploy: "counter"},
			{From: alice, To: counter, Method: "get"},
			{From: alice, To: counter, Method: "increment"},
			{From: bob, To: counter, Method: "increment"},
			{From: alice, To: counter, Method: "get"},
			{From: alice, To: counter, Method: "get", Input: []byte{1}},
		},
		"token": {
			{From: carol, To: token, Deploy: "token"},
			{From: carol, To: token, Method: "mint", Input: enc(alice, uint64(1000))},
			{From: alice, To: token, Method: "mint", Input: enc(alice, uint64(5))},
			{From: alice, To: token, Method: "transfer", Input: enc(bob, uint64(300))},
			{From: bob, To: token, Method: "transfer", Input: enc(carol, uint64(500))},
			{From: alice, To: token, Method: "approve", Input: enc(carol, uint64(200))},
			{From: carol, To: token, Method: "transfer_from", Input: enc(alice, bob, uint64(150))},
			{From: carol, To: token, Method: "transfer_from", Input: enc(alice, bob, uint64(100))},
			{From: carol, To: token, Method: "transfer_from", Input: enc(alice, bob, uint64(50))},
			{From: alice, To: token, Method: "balance", Input: enc(alice)},
			{From: alice, To: token, Method: "balance", Input: enc(bob)},
			{From: alice, To: token, Method: "allowance", Input: enc(alice, carol)},
			{From: alice, To: token, Method: "total_supply"},
			{From: bob, To: token, Method: "transfer", Input: enc(alice, uint64(500))},
			{From: alice, To: token, Method: "transfer", Input: enc(bob, uint64(500))},
			{From: alice, To: token, Method: "transfer", Input: enc(bob)},
			{From: alice, To: token, Method: "transfer", Input: enc(bob, uint64(1), []byte{0})},
			{From: alice, To: token, Method: "approve", Input: enc(bob, uint64(0))},
		},
		"registry": {
			{From: alice, To: registry, Deploy: "registry", Input: enc(period), Time: t0},
			{From: alice, To: registry, Method: "register", Input: enc("alice"), Time: t0 + 1},
			{From: bob, To: registry, Method: "register", Input: enc("alice"), Time: t0 + 2},
			{From: bob, To: registry, Method: "register", Input: enc("Bad Name"), Time: t0 + 2},
			{From: bob, To: registry, Method: "lookup", Input: enc("alice"), Time: t0 + 3},
			{From: bob, To: registry, Method: "renew", Input: enc("alice"), Time: t0 + 4},
			{From: alice, To: registry, Method: "renew", Input: enc("alice"), Time: t0 + 5},
			{From: alice, To: registry, Method: "transfer", Input: enc("alice", bob), Time: t0 + 6},
			{From: bob, To: registry, Method: "lookup", Input: enc("alice"), Time: t0 + 7},
			{From: carol, To: registry, Method: "register", Input: enc("alice"), Time: t0 + 3*period},
			{From: carol, To: registry, Method: "lookup", Input: enc("alice"), Time: t0 + 3*period},
			{From: carol, To: registry, Method: "lookup", Input: enc("nobody"), Time: t0 + 3*period},
		},
		"caller": {
			{From: alice, To: counter, Deploy: "counter"},
			{From: alice, To: caller, Deploy: "caller", Input: enc(counter)},
			{From: alice, To: caller, Method: "bump"},
			{From: bob, To: caller, Method: "try_call", Input: enc("increment")},
			{From: bob, To: caller, Method: "try_call", Input: enc("get")},
			{From: bob, To: caller, Method: "try_call", Input: enc("nope")},
			{From: bob, To: caller, Method: "try_call", Input: enc("init")},
			{From: bob, To: caller, Method: "try_call", Input: enc("Bad!")},
			{From: alice, To: counter, Method: "get"},
		},
	}
}

// nativeModules is, per contract package, the Go expression of each module
// the script deploys (by contract name), compiled in that package. The
// caller package cannot import contracts/counter (a package main), so it
// gets a stand-in written from docs/abi.md section 9.
var nativeModules = map[string]map[string]string{
	"counter":  {"counter": `guesttest.Module{"increment": increment, "get": get}`},
	"token":    {"token": `guesttest.Module{"init": initToken, "mint": mint, "transfer": transfer, "approve": approve, "transfer_from": transferFrom, "balance": balance, "allowance": allowance, "total_supply": totalSupply}`},
	"registry": {"registry": `guesttest.Module{"init": initRegistry, "register": register, "renew": renew, "transfer": transfer, "lookup": lookup}`},
	"caller": {
		"caller":  `guesttest.Module{"init": initCaller, "bump": bump, "try_call": tryCall}`,
		"counter": `hostdiffCounter`,
	},
}

const nativeDriver = `package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kairos-network/kairos/sdk/guest"
	"github.com/kairos-network/kairos/sdk/guest/guesttest"
)

var hostdiffCount = guest.NewValue("count", guest.Uint64Codec)

// hostdiffCounter is contracts/counter (docs/abi.md section 9).
var hostdiffCounter = guesttest.Module{
	"increment": func() {
		n := hostdiffCount.GetOr(0)
		guest.Require(n < ^uint64(0), "counter: overflow")
		out := guest.Encode(guest.Uint64Codec, n+1)
		hostdiffCount.Set(n + 1)
		guest.Emit("incremented", out)
		guest.Return(out)
	},
	"get": func() { guest.Return(guest.Encode(guest.Uint64Codec, hostdiffCount.GetOr(0))) },
}

type hostdiffStep struct {
	From, To [32]byte
	Method   string
	Input    []byte
	Time     int64
	Deploy   string
}

type hostdiffOutcome struct {
	Status  string
	Return  []byte
	Message string
	Events  []guesttest.Event
}

func TestHostDiff(t *testing.T) {
	dir := os.Getenv("KAIROS_HOSTDIFF_DIR")
	if dir == "" {
		t.Skip("run by runtime/host's differential test")
	}
	b, err := os.ReadFile(filepath.Join(dir, %q+".in.json"))
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		Steps []hostdiffStep
		Keys  []struct {
			Module [32]byte
			Key    []byte
		}
	}
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	modules := map[string]guesttest.Module{%s}
	c := guesttest.New()
	var out struct {
		Outcomes []hostdiffOutcome
		Values   [][]byte
	}
	for _, s := range in.Steps {
		if s.Time != 0 {
			c.SetTime(s.Time)
		} else {
			c.SetTime(1e9)
		}
		var r guesttest.Result
		if s.Deploy != "" {
			r = c.Deploy(s.To, modules[s.Deploy], s.From, s.Input)
		} else {
			r = c.Call(s.From, s.To, s.Method, s.Input)
		}
		o := hostdiffOutcome{Status: string(r.Status), Return: r.Return, Events: r.Events}
		if r.Status == guesttest.StatusAborted {
			o.Message = r.Message
		}
		out.Outcomes = append(out.Outcomes, o)
	}
	for _, k := range in.Keys {
		v, ok := c.State(k.Module, k.Key)
		if ok && v == nil {
			v = []byte{}
		}
		out.Values = append(out.Values, v)
	}
	b, err = json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, %q+".out.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
`

// runWasm replays a script through the real host and returns the outcomes
// and the final chain.
func runWasm(t *testing.T, engine int, steps []step) ([]outcome, *chain, map[string]bool, []host.Result) {
	c := newChain(t, engine)
	var outs []outcome
	written := map[string]bool{}
	var results []host.Result
	for _, s := range steps {
		time := s.Time
		if time == 0 {
			time = 1e9
		}
		var r host.Result
		if s.Deploy != "" {
			r = c.deploy(s.To, contract(t, s.Deploy), s.From, s.Input, time)
		} else {
			r = c.run(call{from: s.From, to: types.Address(s.To), method: s.Method, input: s.Input, time: time}, false)
		}
		results = append(results, r)
		for _, w := range r.Writes {
			written[string(w.Module[:])+string(w.Key)] = true
		}
		o := outcome{Status: r.Status.String(), Return: r.Return}
		if r.Status == types.StatusAborted {
			o.Message = r.Reason()
		}
		for _, e := range r.Events {
			o.Events = append(o.Events, event{e.Module, e.Topic, e.Data})
		}
		outs = append(outs, o)
	}
	return outs, c, written, results
}

func TestDifferentialAgainstGuesttest(t *testing.T) {
	dir := t.TempDir()
	names := []string{"counter", "token", "registry", "caller"}
	type wasmRun struct {
		outs  []outcome
		state host.MemState
	}
	wasm := map[string][]wasmRun{}
	keys := map[string][]stateKey{}
	overlay := map[string]string{}
	for _, name := range names {
		steps := scripts()[name]
		written := map[string]bool{}
		var all [][]host.Result
		for ei := range engines {
			outs, c, w, results := runWasm(t, ei, steps)
			wasm[name] = append(wasm[name], wasmRun{outs, c.state})
			maps.Copy(written, w)
			all = append(all, results)
		}
		// Metamorphic: both engines give identical results, gas, events,
		// write sets and failure reasons.
		for i := range steps {
			if a, b := all[0][i], all[1][i]; fmt.Sprintf("%+v %s", a, a.Reason()) != fmt.Sprintf("%+v %s", b, b.Reason()) {
				t.Errorf("%s step %d: engines differ:\n%s %+v\n%s %+v", name, i, engines[0].name, a, engines[1].name, b)
			}
		}
		// Every key a successful wasm call wrote or deleted is compared
		// with the native state.
		for k := range written {
			var m raw
			copy(m[:], k)
			keys[name] = append(keys[name], stateKey{m, []byte(k[32:])})
		}
		slices.SortFunc(keys[name], func(a, b stateKey) int {
			return strings.Compare(string(a.Module[:])+string(a.Key), string(b.Module[:])+string(b.Key))
		})
		in, _ := json.Marshal(nativeIn{Steps: steps, Keys: keys[name]})
		if err := os.WriteFile(filepath.Join(dir, name+".in.json"), in, 0o644); err != nil {
			t.Fatal(err)
		}
		var mods []string
		for contract, expr := range nativeModules[name] {
			mods = append(mods, fmt.Sprintf("%q: %s", contract, expr))
		}
		slices.Sort(mods)
		src := filepath.Join(dir, name+"_hostdiff_test.go")
		if err := os.WriteFile(src, fmt.Appendf(nil, nativeDriver, name, strings.Join(mods, ", "), name), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay[filepath.Join(repoRoot(t), "contracts", name, "zz_hostdiff_test.go")] = src
	}
	ov, _ := json.Marshal(map[string]any{"Replace": overlay})
	ovPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"test", "-count=1", "-run", "^TestHostDiff$", "-overlay", ovPath}
	for _, name := range names {
		args = append(args, "./contracts/"+name)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "KAIROS_HOSTDIFF_DIR="+dir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("native run: %v\n%s", err, msg)
	}

	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name+".out.json"))
		if err != nil {
			t.Fatal(err)
		}
		var native nativeOut
		if err := json.Unmarshal(b, &native); err != nil {
			t.Fatal(err)
		}
		steps := scripts()[name]
		for ei, w := range wasm[name] {
			for i, s := range steps {
				got, want := w.outs[i], native.Outcomes[i]
				if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
					t.Errorf("%s/%s step %d (%s%s): wasm %+v\nnative %+v", name, engines[ei].name, i, s.Method, s.Deploy, got, want)
				}
			}
			for i, k := range keys[name] {
				v, ok := w.state[string(k.Module[:])+string(k.Key)]
				if ok != (native.Values[i] != nil) || string(v) != string(native.Values[i]) {
					t.Errorf("%s/%s key %q: wasm %x, native %x", name, engines[ei].name, k.Key, v, native.Values[i])
				}
			}
		}
	}
}
