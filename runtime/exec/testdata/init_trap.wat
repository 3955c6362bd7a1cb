;; init_trap: a module whose _initialize traps, so no instance of it can
;; ever be made: its deploy must fail as a transaction, never halt the node.
;; Rebuild: wat2wasm init_trap.wat -o init_trap.wasm
(module
  (memory (export "memory") 1 1)
  (func (export "_initialize") unreachable)
  (func (export "get"))
)
