;; counter: the smallest Kairos module, written by hand against docs/abi.md.
;; Same state key, event and results as contracts/counter (Go):
;;   increment: count += 1 under key "\05count" (u64 big-endian), emit
;;              "incremented" with the new value, return it (8 bytes);
;;   get:       return the count (8 zero bytes if never incremented).
;; Rebuild with `make wat` (wabt 1.0.32, Debian's package, installed by the
;; Makefile if missing); `make check` fails if the committed .wasm is stale.
(module
  (import "kairos" "state_get"   (func $state_get   (param i32 i32 i32 i32) (result i32)))
  (import "kairos" "state_set"   (func $state_set   (param i32 i32 i32 i32)))
  (import "kairos" "return_data" (func $return_data (param i32 i32)))
  (import "kairos" "emit_event"  (func $emit_event  (param i32 i32 i32 i32)))
  (import "kairos" "abort"       (func $abort       (param i32 i32)))

  (memory (export "memory") 1 1)

  ;; Constants in memory. The value buffer is at 64 (8 bytes).
  (data (i32.const 0)  "\05count")            ;; state key, 6 bytes
  (data (i32.const 16) "incremented")         ;; event topic, 11 bytes
  (data (i32.const 32) "counter: overflow")   ;; 17 bytes
  (data (i32.const 49) "counter: bad state")  ;; 18 bytes

  ;; bswap converts between the little-endian i64 of wasm memory and the
  ;; big-endian u64 of the ABI encodings.
  (func $bswap (param $x i64) (result i64)
    (local $r i64) (local $i i32)
    (loop $next
      (local.set $r (i64.or (i64.shl (local.get $r) (i64.const 8))
                            (i64.and (local.get $x) (i64.const 0xff))))
      (local.set $x (i64.shr_u (local.get $x) (i64.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 8))))
    (local.get $r))

  ;; load returns the stored count: 0 when absent, abort unless 8 bytes.
  (func $load (result i64)
    (local $n i32)
    (local.set $n (call $state_get (i32.const 0) (i32.const 6) (i32.const 64) (i32.const 8)))
    (if (i32.eq (local.get $n) (i32.const -1)) (then (return (i64.const 0))))
    (if (i32.ne (local.get $n) (i32.const 8))
      (then (call $abort (i32.const 49) (i32.const 18))))
    (call $bswap (i64.load (i32.const 64))))

  (func (export "increment")
    (local $v i64)
    (local.set $v (call $load))
    (if (i64.eq (local.get $v) (i64.const -1))
      (then (call $abort (i32.const 32) (i32.const 17))))
    (local.set $v (i64.add (local.get $v) (i64.const 1)))
    (i64.store (i32.const 64) (call $bswap (local.get $v)))
    (call $state_set (i32.const 0) (i32.const 6) (i32.const 64) (i32.const 8))
    (call $emit_event (i32.const 16) (i32.const 11) (i32.const 64) (i32.const 8))
    (call $return_data (i32.const 64) (i32.const 8)))

  (func (export "get")
    (i64.store (i32.const 64) (call $bswap (call $load)))
    (call $return_data (i32.const 64) (i32.const 8)))
)
