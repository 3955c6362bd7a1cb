;; token: contracts/token (Go) written by hand against docs/abi.md, for
;; measuring the runtime without a Go runtime in the guest. Same methods,
;; state keys, values, events, returns and abort messages as the Go token:
;;   admin      "\05admin"                    32-byte address
;;   supply     "\06supply"                   u64 big-endian
;;   balances   "\03bal"   ‖ owner            u64, deleted when 0
;;   allowances "\05allow" ‖ owner ‖ spender  u64, deleted when 0
;; Methods: init, mint, transfer, approve, transfer_from, balance,
;; allowance, total_supply (see contracts/token/main.go). One difference:
;; input of the wrong length aborts with "token: bad input" where the Go
;; SDK's decoder words its own message.
;; Rebuild with `make wat` (wabt 1.0.32, Debian's package, installed by the
;; Makefile if missing); `make check` fails if the committed .wasm is stale.
(module
  (import "kairos" "input_read"   (func $input_read   (param i32 i32) (result i32)))
  (import "kairos" "state_get"    (func $state_get    (param i32 i32 i32 i32) (result i32)))
  (import "kairos" "state_set"    (func $state_set    (param i32 i32 i32 i32)))
  (import "kairos" "state_delete" (func $state_delete (param i32 i32)))
  (import "kairos" "return_data"  (func $return_data  (param i32 i32)))
  (import "kairos" "emit_event"   (func $emit_event   (param i32 i32 i32 i32)))
  (import "kairos" "caller"       (func $caller       (param i32)))
  (import "kairos" "abort"        (func $abort        (param i32 i32)))

  (memory (export "memory") 1 1)

  ;; Working memory:
  ;;   0..127    input (capacity 128)
  ;;   128..159  the caller
  ;;   160..239  the state key being built
  ;;   240..247  a u64 value, big-endian
  ;;   256..327  event data
  ;;   352..383  the stored admin
  ;; Constants from 1024.
  (data (i32.const 1024) "\05admin")                        ;; 6
  (data (i32.const 1032) "\06supply")                       ;; 7
  (data (i32.const 1040) "\03bal")                          ;; 4
  (data (i32.const 1048) "\05allow")                        ;; 6
  (data (i32.const 1056) "mint")                            ;; 4
  (data (i32.const 1064) "transfer")                        ;; 8
  (data (i32.const 1072) "approval")                        ;; 8
  (data (i32.const 1088) "token: bad input")                ;; 16
  (data (i32.const 1120) "token: init takes no input")      ;; 26
  (data (i32.const 1152) "token: not admin")                ;; 16
  (data (i32.const 1184) "token: supply overflow")          ;; 22
  (data (i32.const 1216) "token: insufficient balance")     ;; 27
  (data (i32.const 1248) "token: allowance exceeded")       ;; 25
  (data (i32.const 1280) "token: total_supply takes no input") ;; 34
  (data (i32.const 1344) "token: bad state")                ;; 16

  ;; bswap converts between wasm's little-endian and the ABI's big-endian.
  (func $bswap (param $x i64) (result i64)
    (local.set $x (i64.or
      (i64.shl (i64.and (local.get $x) (i64.const 0x00ff00ff00ff00ff)) (i64.const 8))
      (i64.and (i64.shr_u (local.get $x) (i64.const 8)) (i64.const 0x00ff00ff00ff00ff))))
    (local.set $x (i64.or
      (i64.shl (i64.and (local.get $x) (i64.const 0x0000ffff0000ffff)) (i64.const 16))
      (i64.and (i64.shr_u (local.get $x) (i64.const 16)) (i64.const 0x0000ffff0000ffff))))
    (i64.rotl (local.get $x) (i64.const 32)))

  ;; input reads the input to 0 and aborts unless it is exactly $n bytes.
  (func $input (param $n i32)
    (if (i32.ne (call $input_read (i32.const 0) (i32.const 128)) (local.get $n))
      (then (call $abort (i32.const 1088) (i32.const 16)))))

  ;; get returns the u64 under key [$k, $k+$kn): 0 when absent.
  (func $get (param $k i32) (param $kn i32) (result i64)
    (local $n i32)
    (local.set $n (call $state_get (local.get $k) (local.get $kn) (i32.const 240) (i32.const 8)))
    (if (i32.eq (local.get $n) (i32.const -1)) (then (return (i64.const 0))))
    (if (i32.ne (local.get $n) (i32.const 8))
      (then (call $abort (i32.const 1344) (i32.const 16))))
    (call $bswap (i64.load (i32.const 240))))

  ;; put stores $v under the key; put_del0 deletes the key instead when $v
  ;; is 0 (state holds only live balances and allowances).
  (func $put (param $k i32) (param $kn i32) (param $v i64)
    (i64.store (i32.const 240) (call $bswap (local.get $v)))
    (call $state_set (local.get $k) (local.get $kn) (i32.const 240) (i32.const 8)))
  (func $put_del0 (param $k i32) (param $kn i32) (param $v i64)
    (if (i64.eqz (local.get $v))
      (then (call $state_delete (local.get $k) (local.get $kn)))
      (else (call $put (local.get $k) (local.get $kn) (local.get $v)))))

  ;; balkey builds "\03bal" ‖ the address at $a at 160; it is 36 bytes.
  (func $balkey (param $a i32)
    (i32.store (i32.const 160) (i32.load (i32.const 1040)))
    (memory.copy (i32.const 164) (local.get $a) (i32.const 32)))

  ;; allowkey builds "\05allow" ‖ owner ‖ spender at 160; it is 70 bytes.
  (func $allowkey (param $owner i32) (param $spender i32)
    (memory.copy (i32.const 160) (i32.const 1048) (i32.const 6))
    (memory.copy (i32.const 166) (local.get $owner) (i32.const 32))
    (memory.copy (i32.const 198) (local.get $spender) (i32.const 32)))

  (func $balance_of (param $a i32) (result i64)
    (call $balkey (local.get $a))
    (call $get (i32.const 160) (i32.const 36)))

  (func $set_balance (param $a i32) (param $v i64)
    (call $balkey (local.get $a))
    (call $put_del0 (i32.const 160) (i32.const 36) (local.get $v)))

  ;; credit cannot overflow: every balance is at most the supply.
  (func $credit (param $to i32) (param $amount i64)
    (call $set_balance (local.get $to)
      (i64.add (call $balance_of (local.get $to)) (local.get $amount))))

  ;; move debits $from and credits $to and emits "transfer"; with
  ;; from == to it changes nothing but still requires the balance.
  (func $move (param $from i32) (param $to i32) (param $amount i64)
    (local $have i64)
    (local.set $have (call $balance_of (local.get $from)))
    (if (i64.lt_u (local.get $have) (local.get $amount))
      (then (call $abort (i32.const 1216) (i32.const 27))))
    (call $set_balance (local.get $from) (i64.sub (local.get $have) (local.get $amount)))
    (call $credit (local.get $to) (local.get $amount))
    (memory.copy (i32.const 256) (local.get $from) (i32.const 32))
    (memory.copy (i32.const 288) (local.get $to) (i32.const 32))
    (i64.store (i32.const 320) (call $bswap (local.get $amount)))
    (call $emit_event (i32.const 1064) (i32.const 8) (i32.const 256) (i32.const 72)))

  ;; amount_at reads the big-endian u64 at $p.
  (func $amount_at (param $p i32) (result i64)
    (call $bswap (i64.load (local.get $p))))

  (func (export "init")
    (if (i32.ne (call $input_read (i32.const 0) (i32.const 0)) (i32.const 0))
      (then (call $abort (i32.const 1120) (i32.const 26))))
    (call $caller (i32.const 128))
    (call $state_set (i32.const 1024) (i32.const 6) (i32.const 128) (i32.const 32)))

  ;; mint: to ‖ amount; admin only; emits "mint" (to ‖ amount).
  (func (export "mint")
    (local $s i64) (local $amount i64)
    (call $input (i32.const 40))
    (call $caller (i32.const 128))
    (if (i32.or
          (i32.ne (call $state_get (i32.const 1024) (i32.const 6) (i32.const 352) (i32.const 32)) (i32.const 32))
          (i32.or
            (i32.or (i64.ne (i64.load (i32.const 352)) (i64.load (i32.const 128)))
                    (i64.ne (i64.load (i32.const 360)) (i64.load (i32.const 136))))
            (i32.or (i64.ne (i64.load (i32.const 368)) (i64.load (i32.const 144)))
                    (i64.ne (i64.load (i32.const 376)) (i64.load (i32.const 152))))))
      (then (call $abort (i32.const 1152) (i32.const 16))))
    (local.set $amount (call $amount_at (i32.const 32)))
    (local.set $s (call $get (i32.const 1032) (i32.const 7)))
    (if (i64.lt_u (i64.add (local.get $s) (local.get $amount)) (local.get $s))
      (then (call $abort (i32.const 1184) (i32.const 22))))
    (call $put (i32.const 1032) (i32.const 7) (i64.add (local.get $s) (local.get $amount)))
    (call $credit (i32.const 0) (local.get $amount))
    (call $emit_event (i32.const 1056) (i32.const 4) (i32.const 0) (i32.const 40)))

  ;; transfer: to ‖ amount, from the caller.
  (func (export "transfer")
    (call $input (i32.const 40))
    (call $caller (i32.const 128))
    (call $move (i32.const 128) (i32.const 0) (call $amount_at (i32.const 32))))

  ;; approve: spender ‖ amount; sets (replaces) the caller's allowance;
  ;; emits "approval" (owner ‖ spender ‖ amount).
  (func (export "approve")
    (call $input (i32.const 40))
    (call $caller (i32.const 128))
    (call $allowkey (i32.const 128) (i32.const 0))
    (call $put_del0 (i32.const 160) (i32.const 70) (call $amount_at (i32.const 32)))
    (memory.copy (i32.const 256) (i32.const 128) (i32.const 32))
    (memory.copy (i32.const 288) (i32.const 0) (i32.const 40))
    (call $emit_event (i32.const 1072) (i32.const 8) (i32.const 256) (i32.const 72)))

  ;; transfer_from: from ‖ to ‖ amount; the caller spends from's allowance.
  (func (export "transfer_from")
    (local $allowed i64) (local $amount i64)
    (call $input (i32.const 72))
    (call $caller (i32.const 128))
    (local.set $amount (call $amount_at (i32.const 64)))
    (call $allowkey (i32.const 0) (i32.const 128))
    (local.set $allowed (call $get (i32.const 160) (i32.const 70)))
    (if (i64.lt_u (local.get $allowed) (local.get $amount))
      (then (call $abort (i32.const 1248) (i32.const 25))))
    (call $put_del0 (i32.const 160) (i32.const 70) (i64.sub (local.get $allowed) (local.get $amount)))
    (call $move (i32.const 0) (i32.const 32) (local.get $amount)))

  ;; return_u64 returns $v as 8 big-endian bytes.
  (func $return_u64 (param $v i64)
    (i64.store (i32.const 240) (call $bswap (local.get $v)))
    (call $return_data (i32.const 240) (i32.const 8)))

  (func (export "balance")
    (call $input (i32.const 32))
    (call $return_u64 (call $balance_of (i32.const 0))))

  (func (export "allowance")
    (call $input (i32.const 64))
    (call $allowkey (i32.const 0) (i32.const 32))
    (call $return_u64 (call $get (i32.const 160) (i32.const 70))))

  (func (export "total_supply")
    (if (i32.ne (call $input_read (i32.const 0) (i32.const 0)) (i32.const 0))
      (then (call $abort (i32.const 1280) (i32.const 34))))
    (call $return_u64 (call $get (i32.const 1032) (i32.const 7))))
)
