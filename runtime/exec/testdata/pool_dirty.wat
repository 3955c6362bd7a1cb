;; pool_dirty: a module whose calls dirty every piece of instance state, for
;; the pooled engine's tests (runtime/exec/pool_test.go). _initialize sets
;; a mutable global and a memory cell to 10; every call adds 1 to both, so a
;; call on a correctly restored instance always returns 11, 11, 1 page.
;;   dirty: return global ‖ cell ‖ memory pages (3 × u64 little-endian)
;;   trap:  dirty both, then unreachable
;;   grow:  dirty both, grow memory by one page, return like dirty
;; Rebuild: wat2wasm pool_dirty.wat -o pool_dirty.wasm
(module
  (import "kairos" "return_data" (func $return_data (param i32 i32)))
  (memory (export "memory") 1 4)
  (global $g (mut i64) (i64.const 0))

  (func (export "_initialize")
    (global.set $g (i64.const 10))
    (i64.store (i32.const 8) (i64.const 10)))

  (func $bump
    (global.set $g (i64.add (global.get $g) (i64.const 1)))
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1))))

  (func $report
    (i64.store (i32.const 100) (global.get $g))
    (i64.store (i32.const 108) (i64.load (i32.const 8)))
    (i64.store (i32.const 116) (i64.extend_i32_u (memory.size)))
    (call $return_data (i32.const 100) (i32.const 24)))

  (func (export "dirty") (call $bump) (call $report))
  (func (export "trap") (call $bump) (unreachable))
  (func (export "grow") (call $bump) (drop (memory.grow (i32.const 1))) (call $report))
)
