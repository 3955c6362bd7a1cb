package vm

import (
	"github.com/kairos-network/kairos/runtime/host"
	"github.com/kairos-network/kairos/runtime/meter"
	"github.com/kairos-network/kairos/runtime/wasi"
)

// hostWrites is, for every host function of the Engine, the guest memory
// it may write (docs/abi.md sections 5 and 8; runtime/host funcs.go and
// runtime/wasi wasi.go are the code): meter.Track marks these ranges after
// each call so the restore copies them back. A function missing here makes
// Track refuse the module (whole-snapshot restores, never a missed page);
// TestHostWritesCoverEveryHostFunction fails when a host function is added
// without an entry. An entry with no regions writes nothing.
var hostWrites = map[string]map[string][]meter.Region{
	host.ModuleName: {
		"input_read":       {{Ptr: 0, Len: 1}},             // dst, capacity
		"return_data":      nil,                            // reads
		"state_get":        {{Ptr: 2, Len: 3}},             // key, key len, dst, capacity
		"state_set":        nil,                            // reads
		"state_delete":     nil,                            // reads
		"state_iter_open":  nil,                            // reads the prefix
		"state_iter_next":  nil,                            // handle only
		"state_iter_key":   {{Ptr: 1, Len: 2}},             // handle, dst, capacity
		"state_iter_value": {{Ptr: 1, Len: 2}},             // handle, dst, capacity
		"state_iter_close": nil,                            // handle only
		"emit_event":       nil,                            // reads
		"caller":           {{Ptr: 0, Len: -1, Fixed: 32}}, // an address
		"self_address":     {{Ptr: 0, Len: -1, Fixed: 32}},
		"tx_time":          nil,
		"block_height":     nil,
		"call":             nil,                            // the callee runs in its own instance; call_result copies
		"call_result":      {{Ptr: 0, Len: 1}},             // dst, capacity
		"sha256":           {{Ptr: 2, Len: -1, Fixed: 32}}, // src, len, dst
		"ed25519_verify":   nil,                            // reads
		"abort":            nil,
		"debug_log":        nil,
		"input_caller":     {{Ptr: 0, Len: 1}, {Ptr: 2, Len: -1, Fixed: 32}}, // dst, capacity, an address
	},
	wasi.ModuleName: {
		"args_sizes_get":      {{Ptr: 0, Len: -1, Fixed: 4}, {Ptr: 1, Len: -1, Fixed: 4}},
		"args_get":            nil, // zero arguments: nothing written
		"environ_sizes_get":   {{Ptr: 0, Len: -1, Fixed: 4}, {Ptr: 1, Len: -1, Fixed: 4}},
		"environ_get":         nil,
		"clock_time_get":      {{Ptr: 2, Len: -1, Fixed: 8}}, // id, precision, result
		"random_get":          {{Ptr: 0, Len: 1}},            // buf, len
		"sched_yield":         nil,
		"poll_oneoff":         {{Ptr: 1, Len: 2, Scale: 32}, {Ptr: 3, Len: -1, Fixed: 4}}, // in, out, n, nevents: n 32-byte events
		"proc_exit":           nil,
		"fd_write":            {{Ptr: 3, Len: -1, Fixed: 4}}, // nwritten
		"fd_read":             {{Ptr: 3, Len: -1, Fixed: 4}}, // nread
		"fd_close":            nil,
		"fd_fdstat_get":       {{Ptr: 1, Len: -1, Fixed: 24}}, // an fdstat record
		"fd_fdstat_set_flags": nil,
		"fd_filestat_get":     nil, // EBADF, writes nothing
		"fd_prestat_get":      nil,
		"fd_prestat_dir_name": nil,
		"path_open":           nil,
		"path_filestat_get":   nil,
	},
}

// trackConfig is meter.Track's configuration for an engine with cfg.
func trackConfig(cfg Config) meter.TrackConfig {
	return meter.TrackConfig{
		MemoryPages: cfg.MemoryLimitPages,
		HostWrites: func(module, name string) ([]meter.Region, bool) {
			r, ok := hostWrites[module][name]
			return r, ok
		},
	}
}
