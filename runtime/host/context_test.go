package host_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"

	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
	"github.com/kairos-network/kairos/types"
)

// contextModule's "ctx" takes pub(32) ‖ sig(64) ‖ msg and returns
// caller ‖ self ‖ u64le(tx_time) ‖ u64le(block_height) ‖ sha256(msg) ‖
// u32le(ed25519_verify(pub, msg, sig)); it also debug_logs msg.
func contextModule() []byte {
	b := New()
	i1, i2, i3, i4 := []wasm.ValType{wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32}, []wasm.ValType{wasm.I32, wasm.I32, wasm.I32, wasm.I32}
	inputRead := b.Import("kairos", "input_read", i2, I32s)
	caller := b.Import("kairos", "caller", i1, None)
	self := b.Import("kairos", "self_address", i1, None)
	txTime := b.Import("kairos", "tx_time", None, I64s)
	height := b.Import("kairos", "block_height", None, I64s)
	hash := b.Import("kairos", "sha256", i3, None)
	verify := b.Import("kairos", "ed25519_verify", i4, I32s)
	debug := b.Import("kairos", "debug_log", i2, None)
	ret := b.Import("kairos", "return_data", i2, None)
	b.Memory(1, 1)
	call := func(f uint32) wasm.Instr { return Idx(wasm.OpCall, f) }
	msgLen := []wasm.Instr{Idx(wasm.OpLocalGet, 0), I32(96), Op(wasm.OpI32Sub)}
	body := []wasm.Instr{I32(1000), I32(4096), call(inputRead), Idx(wasm.OpLocalSet, 0),
		I32(0), call(caller), I32(32), call(self),
		I32(64), call(txTime), Mem(wasm.OpI64Store, 3, 0),
		I32(72), call(height), Mem(wasm.OpI64Store, 3, 0),
		I32(1096)}
	body = append(body, msgLen...)
	body = append(body, I32(80), call(hash), I32(112), I32(1000), I32(1096))
	body = append(body, msgLen...)
	body = append(body, I32(1032), call(verify), Mem(wasm.OpI32Store, 2, 0), I32(1096))
	body = append(body, msgLen...)
	body = append(body, call(debug), I32(0), I32(116), call(ret))
	b.Func("ctx", nil, nil, []wasm.ValType{wasm.I32}, body...)
	return b.Bytes()
}

func TestContextCryptoAndDebugLog(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := []byte("hello kairos")
	sig := ed25519.Sign(priv, msg)
	self := addr("ctx")
	for ei := range engines {
		for _, tc := range []struct {
			name  string
			sig   []byte
			valid uint32
		}{{"valid", sig, 1}, {"bad signature", append([]byte{sig[0] ^ 1}, sig[1:]...), 0}} {
			var gas []int64
			for _, sim := range []bool{false, true} {
				c := newChain(t, ei)
				c.height = 42
				c.sim = sim
				c.deploy(self, contextModule(), alice, nil, 1e9)
				r := c.run(call{from: bob, to: self, method: "ctx", input: append(append(append([]byte{}, pub...), tc.sig...), msg...), time: 1_234_567}, false)
				sum := sha256.Sum256(msg)
				want := append(append(append(append(append(append([]byte{}, bob[:]...), self[:]...),
					binary.LittleEndian.AppendUint64(nil, 1_234_567)...), binary.LittleEndian.AppendUint64(nil, 42)...), sum[:]...),
					binary.LittleEndian.AppendUint32(nil, tc.valid)...)
				if r.Status != types.StatusOK || string(r.Return) != string(want) {
					t.Fatalf("%s %s sim=%v: %v %s\ngot  %x\nwant %x", engines[ei].name, tc.name, sim, r.Status, r.Reason(), r.Return, want)
				}
				// debug_log reaches the log only in simulation.
				if wantLog := map[bool]string{false: "[]", true: "[hello kairos]"}[sim]; fmt.Sprint(c.debug) != wantLog {
					t.Fatalf("sim=%v: debug log %q", sim, c.debug)
				}
				gas = append(gas, r.GasUsed)
			}
			if gas[0] != gas[1] {
				t.Fatalf("simulated gas %d != executed gas %d", gas[1], gas[0])
			}
		}
	}
}
