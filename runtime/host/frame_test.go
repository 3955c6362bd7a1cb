package host

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/kairos-network/kairos/types"
)

type fakeModule struct{ api.Module }
type fakeMemory struct{ api.Memory }

// TestFrameResetClearsEveryField: reset clears a used frame field by field
// (see reset); every field it leaves must be one that holds no reference
// or is set before use, and a field added to frame fails here until reset
// decides about it.
func TestFrameResetClearsEveryField(t *testing.T) {
	kept := map[string]bool{
		"writes": true, "gmod": true, "gas": true, // kept on purpose (writes is emptied)
		"caller": true, "self": true, "events0": true, "index": true, "left": true, // no references
		"wasi": true, // set by WASIState; its references are checked below
	}
	f := &frame{
		run: &run{}, ctx: context.Background(), mod: fakeModule{}, mem: fakeMemory{},
		caller: types.Address{1}, self: types.Address{2}, input: []byte{1}, ret: []byte{2},
		events: []types.Event{{}}, events0: 3, callResult: []byte{3},
		stop: &outcome{}, end: outcome{status: types.StatusAborted}, nodeErr: errors.New("x"), buf: []byte{4}, gmod: fakeModule{}, left: 5,
	}
	f.writes.add(&change{key: []byte("k")})
	f.iters[1] = &iterator{}
	f.wasi.Debug, f.wasi.Stop, f.wasiSet, f.index = func([]byte) {}, errors.New("y"), true, 1
	f.fctx = frameCtx{context.Background(), f}
	ft := reflect.TypeOf(*f)
	v := reflect.ValueOf(f).Elem()
	for i := range ft.NumField() {
		if name := ft.Field(i).Name; !kept[name] && v.Field(i).IsZero() {
			t.Fatalf("test does not set field %s", name)
		}
	}
	f.reset()
	for i := range ft.NumField() {
		if name := ft.Field(i).Name; !kept[name] && !v.Field(i).IsZero() {
			t.Errorf("reset leaves field %s", name)
		}
	}
	if len(f.writes.ents) != 0 || f.writes.idx != nil || f.wasi.Debug != nil || f.wasi.Stop != nil {
		t.Errorf("reset leaves writes %d or WASI references", len(f.writes.ents))
	}
	if f.gmod == nil {
		t.Error("reset dropped the cached globals")
	}
}
