package guest

import (
	"unsafe"

	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// Args decodes a method's input as one T. Declare one per input layout as
// a package variable (NewArgs runs at package initialization):
//
//	var transferArgs = guest.NewArgs(guest.PairCodec(guest.AddressCodec, guest.Uint64Codec))
//	...
//	in := transferArgs.Decode()
//
// Decode is DecodeInput(c), with the same results and aborts, but when c
// is built from fixed-size field codecs only (the field codecs of fixed.go
// and Pairs of them, nested to any depth) NewArgs resolves its layout once
// and Decode reads the input into a stack array and the fields straight
// into the T, without the scratch buffers, a Decoder or codec calls: the
// generic DecodeInput spent ~1 300 of the Go token transfer's guest gas,
// this path ~500, and ~360 for an address and a u64, which it reads
// without a loop (RATIONALE.md, "Why do Args and Event exist beside
// DecodeInput and EmitWith?" and "Why does Track mark a run of stack
// writes once…?").
//
// An Args must come from NewArgs: the zero value has no layout and its
// Decode panics.
type Args[T any] struct {
	// d is shared by copies: Decode's receiver is one word, not the
	// layout (a 64-byte copy a wasm guest pays on every call).
	d *argsDef[T]
}

type argsDef[T any] struct {
	c      Codec[T]
	fields []fixedField // the flat layout of c; nil when c is not fixed
	size   int          // the encoded length of a T when fields != nil
	// addr64: the layout is an address then a u64 or i64 (at off64 in
	// the Go value), the input of transfers and approvals, which Decode
	// reads in straight-line code without readFixed's loop.
	addr64 bool
	off64  uintptr
}

// argsFixedMax bounds the input of Args's fixed path (its stack array);
// a longer fixed layout decodes through DecodeInput.
const argsFixedMax = 128

// fixedField is one field of a codec's flat fixed layout: its kind, where
// its bytes start in the encoding and where it lives in the Go value.
type fixedField struct {
	kind fieldKind
	at   uintptr // offset in the encoding
	off  uintptr // offset in the Go value
}

// NewArgs returns the decoder of inputs encoded with c.
func NewArgs[T any](c Codec[T]) Args[T] {
	a := &argsDef[T]{c: c}
	if fields := layoutOf(c); len(fields) > 0 {
		last := fields[len(fields)-1]
		if size := int(last.at) + last.kind.size(); size <= argsFixedMax {
			a.fields, a.size = fields, size
		}
	}
	if f := a.fields; len(f) == 2 && f[0].kind == kindAddress && f[0].off == 0 && (f[1].kind == kindUint64 || f[1].kind == kindInt64) {
		a.addr64, a.off64 = true, f[1].off
	}
	return Args[T]{a}
}

// Decode decodes the whole input as one T and aborts the call if it does
// not decode (short, trailing bytes, bad field), with DecodeInput's message.
func (args Args[T]) Decode() (v T) {
	a := args.d
	if !a.addr64 {
		return a.decode()
	}
	// Straight-line code for the common layout, the rest out of line, as
	// in Map.Get; the fields go straight into the result.
	var buf [AddressLen + 8]byte
	if abi.InputReadPtr(unsafe.Pointer(&buf), uint32(len(buf))) != int32(len(buf)) {
		return DecodeInput(a.c) // short or long: the generic path aborts with its message
	}
	copyAddress(unsafe.Pointer(&v), unsafe.Pointer(&buf))
	*(*uint64)(unsafe.Add(unsafe.Pointer(&v), a.off64)) = getBE64(unsafe.Pointer(&buf[AddressLen]))
	return v
}

// DecodeCaller is Decode that also writes Caller's address to *caller,
// with the same results and aborts, in one host call for a fixed layout
// (kairos.input_caller, docs/abi.md section 4.2) where Decode and Caller
// make two (a layout without one still makes both): most methods
// begin with both, and a host call's fixed cost is mostly the exit from
// wasm. The address goes through a pointer, not a second result: the host
// writes it straight into the caller's variable (a second result was ~60
// metered instructions more per call in the Go token; RATIONALE.md, "Why
// does the Go SDK read the input and the caller in one host call…?").
func (args Args[T]) DecodeCaller(caller *Address) (v T) {
	a := args.d
	if !a.addr64 {
		return a.decodeCaller(caller)
	}
	var buf [AddressLen + 8]byte
	if abi.InputCallerPtr(unsafe.Pointer(&buf), uint32(len(buf)), unsafe.Pointer(caller)) != int32(len(buf)) {
		return DecodeInput(a.c) // short or long: the generic path aborts with its message
	}
	copyAddress(unsafe.Pointer(&v), unsafe.Pointer(&buf))
	*(*uint64)(unsafe.Add(unsafe.Pointer(&v), a.off64)) = getBE64(unsafe.Pointer(&buf[AddressLen]))
	return v
}

// decode is Decode off the address-and-u64 layout.
func (a *argsDef[T]) decode() T {
	if a.fields != nil {
		var buf [argsFixedMax]byte
		if int(abi.InputReadPtr(unsafe.Pointer(&buf), uint32(a.size))) == a.size {
			var v T
			if readFixed(a.fields, unsafe.Pointer(&buf), unsafe.Pointer(&v)) {
				return v
			}
		}
		// Short or long input, or a bool that is not 0 or 1: the generic
		// path aborts with its message.
	}
	return DecodeInput(a.c)
}

// decodeCaller is DecodeCaller off the address-and-u64 layout: decode
// with input_caller, a function of its own so that Decode's paths keep
// their code (and gas).
func (a *argsDef[T]) decodeCaller(caller *Address) T {
	if a.fields == nil {
		*caller = Caller()
		return DecodeInput(a.c)
	}
	var buf [argsFixedMax]byte
	if int(abi.InputCallerPtr(unsafe.Pointer(&buf), uint32(a.size), unsafe.Pointer(caller))) == a.size {
		var v T
		if readFixed(a.fields, unsafe.Pointer(&buf), unsafe.Pointer(&v)) {
			return v
		}
	}
	return DecodeInput(a.c) // aborts, as in decode
}

// readFixed decodes the fields at src into the value at dst; false for a
// bool that is neither 0 nor 1. Addresses and u64s, the common fields,
// are moved here rather than through get (a call per field).
func readFixed(fields []fixedField, src, dst unsafe.Pointer) bool {
	for _, f := range fields {
		from, to := unsafe.Add(src, f.at), unsafe.Add(dst, f.off)
		switch f.kind {
		case kindAddress:
			copyAddress(to, from)
		case kindUint64, kindInt64:
			*(*uint64)(to) = getBE64(from)
		default:
			if !f.kind.get(from, to) {
				return false
			}
		}
	}
	return true
}

// layouter is a composite codec that knows its flat layout (pairCodec).
type layouter interface{ layout() []fixedField }

// layoutOf returns the flat fixed layout of c, or nil when some field of c
// is not of fixed size. Called at package initialization only: the type
// assertion builds an itab, which a transaction would build again every
// time (the snapshot every transaction starts from has only init's).
func layoutOf[T any](c Codec[T]) []fixedField {
	if k := kindOf(c); k != kindNone {
		return []fixedField{{kind: k}}
	}
	if l, ok := c.(layouter); ok {
		return l.layout()
	}
	return nil
}

// layout is the first codec's fields then the second's, after them in the
// encoding and at Second's offset in the Go value.
func (c pairCodec[A, B]) layout() []fixedField {
	a, b := layoutOf(c.a), layoutOf(c.b)
	if a == nil || b == nil {
		return nil
	}
	last := a[len(a)-1]
	at := last.at + uintptr(last.kind.size())
	var p Pair[A, B]
	off := unsafe.Offsetof(p.Second)
	out := append([]fixedField(nil), a...)
	for _, f := range b {
		out = append(out, fixedField{kind: f.kind, at: f.at + at, off: f.off + off})
	}
	return out
}
