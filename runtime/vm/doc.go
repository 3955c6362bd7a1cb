// Package vm runs instrumented modules in wazero with the configuration
// pinned for consensus (runtime.md "Pinned wazero configuration"): wazero
// v1.12.0 (go.mod), the compiler engine chosen explicitly, core features
// 2.0 minus SIMD (reference types only for meter.Track's table: see below),
// a memory page limit, no close-on-context-done (wall-clock interrupts are
// not deterministic), and a compilation cache (in memory, or on disk with
// Config.CacheDir).
//
// An Engine's runtime serves exactly the ABI's host modules: "kairos"
// (runtime/host) and the virtual WASI (runtime/wasi), never wazero's own
// WASI. Their functions read everything from the frame's context: the
// host.Run frame, and the frame's wasi.State. deploy.Imports is the
// matching allow-list.
//
// An Instance never carries state from one frame to the next: after
// instantiation it runs _initialize (if exported) as docs/abi.md 8.1 says,
// with Config.InitGas (host.InitGasMax) under wasi.InitState(), then
// snapshots linear memory and every global (exported by the meter as
// __kairos_g<i>); Restore, and Call before every call, copy that snapshot
// back. The WASI clock and random position are not instance state: each
// frame brings its own wasi.State (host.Run: wasi.FrameState; Instance.Call:
// the instance's Env). Tables need no snapshot: validate rejects every
// instruction that could change one. An instance whose memory grew or whose
// frame failed is not reused (memory cannot shrink and a trap can leave the
// guest's runtime inconsistent): Call discards it, and runtime/exec's
// PooledEngine (the one pool of restored instances) closes it on Release.
//
// Restores copy back only what the last frames dirtied: Compile runs
// meter.Track over the instrumented code (hostWrites tells it which guest
// memory every host function writes), and reset asks the instance's
// meter.DirtyExport for the marked pages, a mask per marked group of 64,
// copying each page with the 7 bytes after it. Code Track refuses, and every engine with Config.FullRestore,
// copies the whole snapshot. Tracked code also gets RestoreExport, which
// sets the mutable exported globals from its arguments and zeroes the
// depth globals before it starts the walk, so a restore of the globals costs
// no calls of its own (gas_left is set by the caller of each call, as
// before). Reference types are enabled in wazero for the mark table only;
// guests still cannot use them (wasm.Decode).
//
// Code.Close releases compiled code (a pool evicting it) once the
// Instantiates in progress end; instances already made keep working.
//
// A call that returns normally with gas_left < 0 ran out of gas (the meter
// tests the balance only at function entries, loop headers and host calls);
// callers classify by Outcome.Status, never by the call's error alone.
//
// Concurrency: an Engine and its Code may be used from many
// goroutines; an Instance belongs to one goroutine at a time (wazero calls
// are not goroutine-safe).
package vm
