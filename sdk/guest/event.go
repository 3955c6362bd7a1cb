package guest

import (
	"encoding/binary"
	"unsafe"

	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// Event is an event topic, checked once: declare one per topic as a
// package variable (NewEvent runs at package initialization) and emit
// through it,
//
//	var transferred = guest.NewEvent("transfer")
//	...
//	transferred.Fields().Address(from).Address(to).Uint64(amount).Emit()
//
// Fields builds data of fixed-size fields in an array on the caller's
// stack, without a closure, an Encoder or the scratch buffers; it is what
// EmitWith does at a fraction of the guest gas (the Go token's transfer
// spent ~1 100 gas in EmitWith, its closure and Emit's topic check, ~300
// through Fields: RATIONALE.md, "Why do Args and Event exist beside
// DecodeInput and EmitWith?").
type Event struct{ topic string }

// NewEvent returns the event of topic, which must be valid
// (ValidEventTopic; anything else is a programming error and panics at
// package initialization).
func NewEvent(topic string) Event {
	if !ValidEventTopic(topic) {
		panic("guest: bad event topic " + topic)
	}
	return Event{topic}
}

// Emit appends an event of this topic with data to the transaction; data
// longer than EventDataLenMax aborts.
func (ev Event) Emit(data []byte) {
	if len(data) > EventDataLenMax {
		Abort("guest: event data longer than EventDataLenMax")
	}
	abi.EmitEvent(ev.topic, data)
}

// EventFieldsLenMax bounds the data an EventFields holds: its array lives
// on the caller's stack, which Go zeroes on every use. Longer data aborts
// at Emit; build it with an Encoder and pass it to Event.Emit instead.
const EventFieldsLenMax = 128

// EventFields is event data of fixed-size fields, encoded as docs/abi.md
// section 7 says, in the order of the calls. Get one from Event.Fields
// and chain the calls: the methods are small enough for the Go compiler
// to inline, so the array stays on the caller's stack.
type EventFields struct {
	topic string
	n     int // bytes appended (> EventFieldsLenMax: Emit aborts; no chain is long enough to wrap it)
	// buf has room for one field past EventFieldsLenMax: a field is
	// written at min(n, EventFieldsLenMax), so a chain that overflows
	// writes only there, and appending takes no branch (in Go's wasm code
	// a branch is a jump through the function's dispatch loop).
	buf [EventFieldsLenMax + AddressLen]byte
}

// Fields returns empty event data of this topic.
func (ev Event) Fields() *EventFields { return &EventFields{topic: ev.topic} }

// at is where the next field goes: an unsafe.Add, not &f.buf[f.n], as
// min(n, EventFieldsLenMax) leaves room for the widest field.
func (f *EventFields) at() unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(&f.buf), min(f.n, EventFieldsLenMax))
}

// Address appends the 32 raw bytes. An assignment, not copyAddress: a
// is not addressed, so the compiler copies the caller's value straight
// into the buffer instead of into a from which copyAddress then reads.
func (f *EventFields) Address(a Address) *EventFields {
	*(*Address)(f.at()) = a
	f.n += AddressLen
	return f
}

// Uint64 appends 8 big-endian bytes.
func (f *EventFields) Uint64(v uint64) *EventFields {
	putBE64(f.at(), v)
	f.n += 8
	return f
}

// Int64 appends v in two's complement, 8 big-endian bytes.
func (f *EventFields) Int64(v int64) *EventFields { return f.Uint64(uint64(v)) }

// Uint32 appends 4 big-endian bytes.
func (f *EventFields) Uint32(v uint32) *EventFields {
	binary.BigEndian.PutUint32((*[4]byte)(f.at())[:], v)
	f.n += 4
	return f
}

// Bool appends 0x01 or 0x00.
func (f *EventFields) Bool(v bool) *EventFields {
	*(*byte)(f.at()) = *(*byte)(unsafe.Pointer(&v)) // a Go bool is stored as 0 or 1
	f.n++
	return f
}

// Emit appends the event to the transaction; data that overflowed
// EventFieldsLenMax aborts.
func (f *EventFields) Emit() {
	if f.n > EventFieldsLenMax {
		Abort("guest: event fields longer than EventFieldsLenMax")
	}
	abi.EmitEventPtr(unsafe.Pointer(unsafe.StringData(f.topic)), uint32(len(f.topic)), unsafe.Pointer(&f.buf), uint32(f.n))
}
