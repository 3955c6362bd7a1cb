// Package vm runs instrumented modules in wazero with the configuration
// pinned for consensus (runtime.md "Pinned wazero configuration"): wazero
// v1.12.0 (go.mod), the compiler engine chosen explicitly, core features
// 2.0 minus SIMD and reference types, a memory page limit, no
// close-on-context-done (wall-clock interrupts are not deterministic), and a
// compilation cache.
//
// An Instance never carries state from one call to the next: after
// instantiation (and _initialize for Go guests) it snapshots linear memory,
// every global (exported by the meter as __kairos_g<i>) and the
// deterministic clock and random state given to the guest's virtual WASI;
// before every call it copies that snapshot back. Tables need no snapshot:
// validate rejects every instruction that could change one. An instance whose memory
// grew or whose call trapped is discarded (memory cannot shrink and a trap
// can leave the guest's runtime inconsistent); later calls fail with
// ErrDiscarded and the caller instantiates a new one.
//
// Concurrency: an Engine and its Code may be used from many goroutines; an
// Instance belongs to one goroutine at a time (wazero calls are not
// goroutine-safe).
package vm
