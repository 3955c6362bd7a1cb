// Command token is a fungible token module: the deployer is the admin and
// the only minter; holders transfer, approve spenders and spenders move
// approved amounts.
//
// Methods and encodings (docs/abi.md section 7; amounts are u64):
//   - init: input empty; the caller becomes the admin.
//   - mint: to address ‖ amount; admin only; emits "mint" (to ‖ amount).
//   - transfer: to address ‖ amount; from the caller; emits "transfer"
//     (from ‖ to ‖ amount).
//   - approve: spender address ‖ amount; sets the caller's allowance for
//     spender (replacing it); emits "approval" (owner ‖ spender ‖ amount).
//   - transfer_from: from address ‖ to address ‖ amount; the caller spends
//     from's allowance; emits "transfer".
//   - balance: owner address; returns u64.
//   - allowance: owner address ‖ spender address; returns u64.
//   - total_supply: input empty; returns u64.
//
// Failures abort with a "token: ..." message and change nothing.
package main

import "github.com/kairos-network/kairos/sdk/guest"

var (
	admin      = guest.NewValue("admin", guest.AddressCodec)
	supply     = guest.NewValue("supply", guest.Uint64Codec)
	balances   = guest.NewMap("bal", guest.AddressCodec, guest.Uint64Codec)
	allowances = guest.NewMap("allow", guest.PairCodec(guest.AddressCodec, guest.AddressCodec), guest.Uint64Codec)

	// Input layouts.
	addrPair     = guest.PairCodec(guest.AddressCodec, guest.AddressCodec)
	addrIn       = guest.NewArgs(guest.AddressCodec)
	addrPairIn   = guest.NewArgs(addrPair)
	addrAmountIn = guest.NewArgs(guest.PairCodec(guest.AddressCodec, guest.Uint64Codec))
	transferIn   = guest.NewArgs(guest.PairCodec(addrPair, guest.Uint64Codec))

	minted      = guest.NewEvent("mint")
	transferred = guest.NewEvent("transfer")
	approved    = guest.NewEvent("approval")
)

//go:wasmexport init
func initToken() {
	guest.Require(len(guest.Input()) == 0, "token: init takes no input")
	admin.Set(guest.Caller())
}

//go:wasmexport mint
func mint() {
	var caller guest.Address
	in := addrAmountIn.DecodeCaller(&caller)
	a, ok := admin.Get()
	guest.Require(ok && a == caller, "token: not admin")
	s := supply.GetOr(0)
	guest.Require(s+in.Second >= s, "token: supply overflow")
	supply.Set(s + in.Second)
	credit(in.First, in.Second)
	minted.Fields().Address(in.First).Uint64(in.Second).Emit()
}

//go:wasmexport transfer
func transfer() {
	var from guest.Address
	in := addrAmountIn.DecodeCaller(&from)
	move(from, in.First, in.Second)
}

//go:wasmexport approve
func approve() {
	var owner guest.Address
	in := addrAmountIn.DecodeCaller(&owner)
	allowances.SetOrDelete(guest.Pair[guest.Address, guest.Address]{First: owner, Second: in.First}, in.Second)
	approved.Fields().Address(owner).Address(in.First).Uint64(in.Second).Emit()
}

//go:wasmexport transfer_from
func transferFrom() {
	var spender guest.Address
	in := transferIn.DecodeCaller(&spender)
	from, to, amount := in.First.First, in.First.Second, in.Second
	key := guest.Pair[guest.Address, guest.Address]{First: from, Second: spender}
	allowed := allowances.GetOr(key, 0)
	guest.Require(allowed >= amount, "token: allowance exceeded")
	allowances.SetOrDelete(key, allowed-amount)
	move(from, to, amount)
}

//go:wasmexport balance
func balance() {
	owner := addrIn.Decode()
	guest.Return(guest.Encode(guest.Uint64Codec, balances.GetOr(owner, 0)))
}

//go:wasmexport allowance
func allowance() {
	key := addrPairIn.Decode()
	guest.Return(guest.Encode(guest.Uint64Codec, allowances.GetOr(key, 0)))
}

//go:wasmexport total_supply
func totalSupply() {
	guest.Require(len(guest.Input()) == 0, "token: total_supply takes no input")
	guest.Return(guest.Encode(guest.Uint64Codec, supply.GetOr(0)))
}

// move debits from and credits to; with from == to it changes nothing but
// still requires the balance. Balances are set with SetOrDelete, so state
// holds only live holders. The second SetOrDelete is credit written out: a
// Go call costs a wasm guest tens of metered instructions, and transfers
// are most of a token's work.
func move(from, to guest.Address, amount uint64) {
	have := balances.GetOr(from, 0)
	guest.Require(have >= amount, "token: insufficient balance")
	balances.SetOrDelete(from, have-amount)
	balances.SetOrDelete(to, balances.GetOr(to, 0)+amount)
	transferred.Fields().Address(from).Address(to).Uint64(amount).Emit()
}

// credit cannot overflow: every balance is at most the supply, which mint
// keeps below 2^64.
func credit(to guest.Address, amount uint64) { balances.SetOrDelete(to, balances.GetOr(to, 0)+amount) }

func main() {}
