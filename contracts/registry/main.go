// Command registry maps names to owners for a period of time, measured by
// the transactions' consensus time.
//
// Methods and encodings (docs/abi.md section 7; times are i64 Unix ns):
//   - init: period i64 (> 0), the length of a registration.
//   - register: name string; free names (never registered or expired) go to
//     the caller until now + period; emits "registered" (name ‖ owner ‖
//     expires).
//   - renew: name string; owner only, before expiry; extends the expiry by
//     one period; emits "renewed" (name ‖ expires).
//   - transfer: name string ‖ to address; owner only, before expiry;
//     emits "transferred" (name ‖ from ‖ to).
//   - lookup: name string; returns found bool ‖ owner address ‖ expires
//     i64 (found is false, owner zero and expires 0 for a free name).
//
// A name is 1 to 64 bytes of a-z, 0-9 and '-'. A name is live while
// tx time < expires. Failures abort with a "registry: ..." message.
package main

import (
	"math"

	"github.com/kairos-network/kairos/sdk/guest"
)

// NameLenMax bounds a name, so a caller cannot grow one state key without
// limit.
const NameLenMax = 64

type record struct {
	owner   guest.Address
	expires int64
}

var (
	recordCodec = guest.CodecOf(
		func(e *guest.Encoder, r record) { e.PutAddress(r.owner).PutInt64(r.expires) },
		func(d *guest.Decoder) record { return record{d.Address(), d.Int64()} },
	)
	period  = guest.NewValue("period", guest.Int64Codec)
	records = guest.NewMap("name", guest.StringCodec, recordCodec)

	nameTo = guest.PairCodec(guest.StringCodec, guest.AddressCodec)
)

func validName(s string) bool {
	if len(s) == 0 || len(s) > NameLenMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func nameInput() string {
	name := guest.DecodeInput(guest.StringCodec)
	guest.Require(validName(name), "registry: bad name")
	return name
}

// live returns the record of a name that has not expired at tx time.
func live(name string) (record, bool) {
	r, ok := records.Get(name)
	if !ok || guest.TxTimeUnixNano() >= r.expires {
		return record{}, false
	}
	return r, true
}

// owned returns the live record of name and aborts unless the caller owns
// it.
func owned(name string) record {
	r, ok := live(name)
	guest.Require(ok, "registry: name not registered or expired")
	guest.Require(r.owner == guest.Caller(), "registry: not the owner")
	return r
}

func addPeriod(t int64) int64 {
	p := period.GetOr(0)
	guest.Require(t <= math.MaxInt64-p, "registry: expiry overflow")
	return t + p
}

//go:wasmexport init
func initRegistry() {
	p := guest.DecodeInput(guest.Int64Codec)
	guest.Require(p > 0, "registry: period must be positive")
	period.Set(p)
}

//go:wasmexport register
func register() {
	name := nameInput()
	_, taken := live(name)
	guest.Require(!taken, "registry: name taken")
	r := record{owner: guest.Caller(), expires: addPeriod(guest.TxTimeUnixNano())}
	records.Set(name, r)
	guest.Emit("registered", guest.NewEncoder().PutString(name).PutAddress(r.owner).PutInt64(r.expires).Bytes())
}

//go:wasmexport renew
func renew() {
	name := nameInput()
	r := owned(name)
	r.expires = addPeriod(r.expires)
	records.Set(name, r)
	guest.Emit("renewed", guest.NewEncoder().PutString(name).PutInt64(r.expires).Bytes())
}

//go:wasmexport transfer
func transfer() {
	in := guest.DecodeInput(nameTo)
	guest.Require(validName(in.First), "registry: bad name")
	r := owned(in.First)
	from := r.owner
	r.owner = in.Second
	records.Set(in.First, r)
	guest.Emit("transferred", guest.NewEncoder().PutString(in.First).PutAddress(from).PutAddress(in.Second).Bytes())
}

//go:wasmexport lookup
func lookup() {
	r, ok := live(nameInput())
	guest.Return(guest.NewEncoder().PutBool(ok).PutAddress(r.owner).PutInt64(r.expires).Bytes())
}

func main() {}
