package deploy_test

import (
	"testing"

	"github.com/kairos-network/kairos/runtime/deploy"
	. "github.com/kairos-network/kairos/runtime/internal/wasmtest"
	"github.com/kairos-network/kairos/runtime/wasm"
)

// BenchmarkPrepare measures the deploy pipeline (validate + instrument +
// encode) on the Go guest and on the worst case for memory: a module at the
// size cap made of one-byte instructions (one decoded Instr per byte). B/op
// is the figure that bounds a node's memory per deploy.
//
//	go test -run '^$' -bench Prepare -benchmem -count 3 ./runtime/deploy/
func BenchmarkPrepare(b *testing.B) {
	nops := New()
	for range 50 {
		body := make([]wasm.Instr, 80_000)
		for i := range body {
			body[i] = Op(wasm.OpNop)
		}
		nops.Func("", nil, nil, nil, body...)
	}
	for _, c := range []struct {
		name string
		bin  []byte
	}{{"goguest", GoGuest(b)}, {"nops-4MB", nops.Bytes()}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.bin)))
			for b.Loop() {
				if _, err := deploy.Prepare(c.bin, cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
