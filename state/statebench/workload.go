package statebench

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/kairos-network/kairos/state"
	"github.com/kairos-network/kairos/types"
)

// Workload describes a deterministic stream of blocks: heights
// 1..FillBlocks() insert Keys fresh keys, Block per block; every later block
// overwrites Block distinct keys chosen at random among the live ones.
type Workload struct {
	Keys      int    // live keys once the fill phase is done
	Block     int    // writes per block
	ValueSize int    // bytes per value
	Modules   int    // keys are spread over this many module addresses
	Seed      uint64 // selects the keys updated and the value bytes
}

// DefaultWorkload is the workload of state.md's targets: 100-byte values,
// 10k-key blocks on a 1M-key tree.
func DefaultWorkload() Workload {
	return Workload{Keys: 1_000_000, Block: 10_000, ValueSize: 100, Modules: 16, Seed: 1}
}

// Validate reports a workload that cannot generate blocks.
func (w Workload) Validate() error {
	switch {
	case w.Keys <= 0, w.Block <= 0, w.ValueSize <= 0, w.Modules <= 0:
		return fmt.Errorf("statebench: workload needs positive keys, block, value size and modules: %+v", w)
	case w.Block > w.Keys:
		return fmt.Errorf("statebench: block of %d writes exceeds the %d live keys", w.Block, w.Keys)
	}
	return nil
}

// FillBlocks is the number of blocks that insert the initial keys.
func (w Workload) FillBlocks() uint64 { return uint64((w.Keys + w.Block - 1) / w.Block) }

// Module returns the address of module m (0 <= m < Modules).
func (w Workload) Module(m int) types.Address {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(m))
	return types.Address(sha256.Sum256(append([]byte("kairos/bench-module\x00"), b[:]...)))
}

// Key returns the state key of key index i.
func (w Workload) Key(i int) types.StateKey {
	k := make([]byte, 9)
	k[0] = 'k'
	binary.BigEndian.PutUint64(k[1:], uint64(i))
	return types.StateKey{Module: w.Module(i % w.Modules), Key: k}
}

// rng returns the generator of block h; it is seeded from (Seed, h) only.
func (w Workload) rng(h uint64) *rand.ChaCha8 {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[0:], w.Seed)
	binary.BigEndian.PutUint64(seed[8:], h)
	copy(seed[16:], "kairos-bench")
	return rand.NewChaCha8(seed)
}

// Indexes returns the key indexes written by block h (h >= 1), ascending.
func (w Workload) Indexes(h uint64) []int {
	if h == 0 {
		return nil
	}
	if h <= w.FillBlocks() {
		lo := int(h-1) * w.Block
		hi := min(lo+w.Block, w.Keys)
		out := make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
		return out
	}
	r := rand.New(w.rng(h))
	seen := make(map[int]struct{}, w.Block)
	out := make([]int, 0, w.Block)
	for len(out) < w.Block {
		i := r.IntN(w.Keys)
		if _, dup := seen[i]; !dup {
			seen[i] = struct{}{}
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// Writes returns the write set of block h, sorted by (module, key).
func (w Workload) Writes(h uint64) []state.Write { return w.writes(h, nil) }

// Value returns the value block h writes to key index i: a function of
// (Seed, h, i) alone, so that the value a key holds is known from the
// height that last wrote it (see Heights).
func (w Workload) Value(h uint64, i int) []byte {
	return w.appendValue(make([]byte, 0, w.ValueSize), h, i)
}

// appendValue appends Value(h, i) to b. PCG's output is incompressible,
// as a real value mostly is.
func (w Workload) appendValue(b []byte, h uint64, i int) []byte {
	r := rand.NewPCG(w.Seed^h*0x9e3779b97f4a7c15, uint64(i))
	var x [8]byte
	for n := 0; n < w.ValueSize; n += len(x) {
		binary.LittleEndian.PutUint64(x[:], r.Uint64())
		b = append(b, x[:min(len(x), w.ValueSize-n)]...)
	}
	return b
}

// Heights records, for each key index, the height of the block that last
// wrote it (0: none yet): 4 bytes per key, from which the key's value is
// Value(height, i). HintedWrites keeps it.
type Heights []uint32

// NewHeights returns the heights of a workload before its first block.
func (w Workload) NewHeights() Heights { return make(Heights, w.Keys) }

// HintedWrites is Writes(h) with each write's old value as its hint
// (state.Write.Old, none for a key not written yet), as a node's
// executor gives the values it prefetched: last holds the heights of the
// blocks before h, and is updated to include h. Blocks must come in
// order.
func (w Workload) HintedWrites(h uint64, last Heights) []state.Write { return w.writes(h, last) }

// writes is Writes(h), with hints from last and last updated if last is
// not nil.
func (w Workload) writes(h uint64, last Heights) []state.Write {
	idx := w.Indexes(h)
	n := len(idx)
	if last != nil {
		n *= 2
	}
	vals := make([]byte, 0, n*w.ValueSize)
	out := make([]state.Write, len(idx))
	for j, i := range idx {
		at := len(vals)
		vals = w.appendValue(vals, h, i)
		out[j] = state.Write{Key: w.Key(i), Value: vals[at:len(vals):len(vals)]}
		if last != nil {
			if was := last[i]; was != 0 {
				at = len(vals)
				vals = w.appendValue(vals, uint64(was), i)
				out[j].Old = vals[at:len(vals):len(vals)]
			}
			last[i] = uint32(h)
		}
	}
	sort.Slice(out, func(a, b int) bool { return lessKey(out[a].Key, out[b].Key) })
	return out
}

func lessKey(a, b types.StateKey) bool { return a.Compare(b) < 0 }
