package validate

import "github.com/kairos-network/kairos/runtime/wasm"

// Limits bounds everything a module author can grow. The defaults follow
// CosmWasm's published limits where they fit, raised where a standard Go
// guest needs more: the test guest (runtime, fmt, time) is 2.6 MB with
// 1 780 functions, a ~5 400-entry table, ~30 700 data segments and blocks
// nested ~300 deep (the Go compiler's resume dispatch).
type Limits struct {
	ModuleBytes    uint64 // size of the binary
	Types          uint64 // entries in the type section
	Imports        uint64
	Functions      uint64 // defined functions
	Params         uint64 // parameters of one function type
	Results        uint64 // results of one function type
	LocalsPerFunc  uint64 // params plus declared locals of one function
	BodyInstrs     uint64 // instructions in one function body
	Globals        uint64
	Exports        uint64
	TableEntries   uint64 // table minimum (and maximum when declared)
	ElementEntries uint64 // function indices over all element segments
	MemoryPages    uint64 // declared minimum and maximum of memory 0, in 64 KiB pages
	DataSegments   uint64
	BrTableTargets uint64 // labels of one br_table
	BlockDepth     uint64 // nesting of block/loop/if in one function
}

// DefaultLimits returns the deploy limits of the network (a fresh copy:
// consensus parameters are not package state anyone can change).
func DefaultLimits() Limits { return defaultLimits }

var defaultLimits = Limits{
	ModuleBytes:    4 << 20,
	Types:          1_000,
	Imports:        100,
	Functions:      20_000,
	Params:         100,
	Results:        8,
	LocalsPerFunc:  4_096,
	BodyInstrs:     100_000,
	Globals:        1_000,
	Exports:        100,
	TableEntries:   20_000,
	ElementEntries: 20_000,
	MemoryPages:    512,
	DataSegments:   50_000,
	BrTableTargets: 10_000,
	BlockDepth:     1_000,
}

// HostFunc is one allowed import: module, name and exact signature.
type HostFunc struct {
	Module, Name string
	Type         wasm.FuncType
}

// NewHostFunc builds an allow-list entry from parameter and result types
// given as wasm value type bytes (wazero's api.ValueType is such a byte), so
// a host module's own table is the one source of its allow-list.
func NewHostFunc(module, name string, params, results []byte) HostFunc {
	conv := func(ts []byte) []wasm.ValType {
		var out []wasm.ValType
		for _, t := range ts {
			out = append(out, wasm.ValType(t))
		}
		return out
	}
	return HostFunc{Module: module, Name: name, Type: wasm.FuncType{Params: conv(params), Results: conv(results)}}
}

// Config is what Check needs besides the bytes.
type Config struct {
	Limits  Limits
	Imports []HostFunc // the allow-list; an import must match one entry exactly
}

func sig(params, results []wasm.ValType) wasm.FuncType {
	return wasm.FuncType{Params: params, Results: results}
}

var (
	i32   = wasm.I32
	i64   = wasm.I64
	noVal []wasm.ValType
)

// WASIModule is the import module name of WASI preview 1.
const WASIModule = "wasi_snapshot_preview1"

// WASISubset is the virtual WASI a standard Go guest
// (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, Go 1.26) imports, and
// nothing more: the host implements it deterministically (fixed args and
// environment, clock and randomness from the transaction, fd_write only as
// a debug sink, no filesystem and no preopened directories).
// TestWASISubsetMatchesGoGuest rebuilds a Go guest and checks this table
// against its imports.
//
// The first ten are what the Go runtime itself imports. The last five come
// with package os, which fmt, time and most of the standard library pull
// in: os probes and closes its stdio descriptors and lists preopened
// directories at start-up. With no filesystem those answer fixed values
// (no preopens), so they are as deterministic as the first ten. Path-based
// calls (path_open and the like) are not in this subset.
//
// This is only what the Go runtime imports, not the network's allow-list:
// deploy with deploy.Config() (deploy.Imports: the host ABI and all 19
// virtual WASI functions of docs/abi.md section 8). With this list a Go
// module whose code can read stdin or stat a file is rejected.
func WASISubset() []HostFunc { return append([]HostFunc(nil), wasiSubset...) }

var wasiSubset = []HostFunc{
	{WASIModule, "sched_yield", sig(noVal, []wasm.ValType{i32})},
	{WASIModule, "proc_exit", sig([]wasm.ValType{i32}, noVal)},
	{WASIModule, "args_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "args_sizes_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "clock_time_get", sig([]wasm.ValType{i32, i64, i32}, []wasm.ValType{i32})},
	{WASIModule, "environ_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "environ_sizes_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "fd_write", sig([]wasm.ValType{i32, i32, i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "random_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "poll_oneoff", sig([]wasm.ValType{i32, i32, i32, i32}, []wasm.ValType{i32})},
	// Package os: stdio probing and preopen listing.
	{WASIModule, "fd_close", sig([]wasm.ValType{i32}, []wasm.ValType{i32})},
	{WASIModule, "fd_fdstat_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "fd_fdstat_set_flags", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "fd_prestat_get", sig([]wasm.ValType{i32, i32}, []wasm.ValType{i32})},
	{WASIModule, "fd_prestat_dir_name", sig([]wasm.ValType{i32, i32, i32}, []wasm.ValType{i32})},
}

// Reserved export names: the instrumenter adds these, so a module must not
// define them (a guest-defined gas_left could otherwise fake its gas).
const (
	ReservedGas    = "gas_left"
	ReservedPrefix = "__kairos"
)
