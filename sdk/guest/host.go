package guest

import "github.com/kairos-network/kairos/sdk/guest/internal/abi"

// Input returns this call's input: the transaction's input for the
// method a transaction called, the input argument of Call for a callee,
// the deploy or upgrade input in init and migrate.
func Input() []byte { return abi.Input() }

// DecodeInput decodes the whole input as one T and aborts the call if it
// does not decode (short, trailing bytes, bad field). Unlike
// Decode(c, Input()) it allocates nothing but the byte fields it returns.
func DecodeInput[T any](c Codec[T]) T {
	s := takeScratch()
	v, err := decodeWith(s, c, s.input())
	Check(err)
	s.release()
	return v
}

// Return sets the call's result, replacing an earlier one. Longer than
// ReturnLenMax aborts.
func Return(b []byte) {
	if len(b) > ReturnLenMax {
		Abort("guest: return data longer than ReturnLenMax")
	}
	abi.SetReturn(b)
}

// ReturnWith sets the call's result to what build appends to e, an Encoder
// over a buffer the SDK reuses: unlike Return(Encode(...)) it allocates
// nothing for a result that fits (RATIONALE.md, "Why does the Go SDK read
// and encode state through package-level buffers?"). e is valid only
// during build.
func ReturnWith(build func(e *Encoder)) {
	s := takeScratch()
	s.val.buf = s.valArr[:0]
	build(&s.val)
	Return(s.val.buf)
	s.release()
}

// Abort ends the call with status "aborted": writes and events of the call
// are discarded and msg (truncated to AbortMsgLenMax bytes) is reported.
// It never returns.
func Abort(msg string) { abi.Abort(msg) }

// Require aborts with msg unless cond holds.
func Require(cond bool, msg string) {
	if !cond {
		Abort(msg)
	}
}

// Check aborts with err's text if err is not nil.
func Check(err error) {
	if err != nil {
		Abort(err.Error())
	}
}

// Log writes msg to the node log in simulation and tests; in consensus
// execution it only costs gas (docs/abi.md section 4.8).
func Log(msg string) { abi.DebugLog(msg) }

// Caller returns the immediate caller: the transaction's sender in the
// method a transaction called, the calling module inside Call, the
// deployer in init, the admin in migrate.
func Caller() Address { return abi.Caller() }

// Self returns this module instance's address.
func Self() Address { return abi.Self() }

// TxTimeUnixNano returns the transaction's consensus timestamp in Unix
// nanoseconds. It is the same in every call of the transaction and never
// decreases along a block.
func TxTimeUnixNano() int64 { return abi.TxTime() }

// BlockHeight returns the height of the block that holds the transaction.
func BlockHeight() uint64 { return uint64(abi.BlockHeight()) }

// Sha256 returns the SHA-256 digest of b, computed by the host. Longer
// than HashInputLenMax aborts.
func Sha256(b []byte) [32]byte {
	if len(b) > HashInputLenMax {
		Abort("guest: sha256 input longer than HashInputLenMax")
	}
	return abi.Sha256(b)
}

// VerifyEd25519 reports whether sig is a valid RFC 8032 signature of msg
// under pub.
func VerifyEd25519(pub [32]byte, msg []byte, sig [64]byte) bool {
	if len(msg) > HashInputLenMax {
		Abort("guest: ed25519 message longer than HashInputLenMax")
	}
	return abi.Ed25519Verify(&pub, msg, &sig)
}

// EmitWith emits an event whose data is what build appends to e, an
// Encoder over a buffer the SDK reuses: unlike Emit(topic,
// NewEncoder()...Bytes()) it allocates nothing for data that fits. e is
// valid only during build.
func EmitWith(topic string, build func(e *Encoder)) {
	s := takeScratch()
	s.val.buf = s.valArr[:0]
	build(&s.val)
	Emit(topic, s.val.buf)
	s.release()
}

// Emit appends an event with the given topic and data (usually built with
// an Encoder) to the transaction. A topic outside the grammar of
// ValidEventTopic or data longer than EventDataLenMax aborts.
func Emit(topic string, data []byte) {
	if !ValidEventTopic(topic) {
		Abort("guest: bad event topic " + topic)
	}
	if len(data) > EventDataLenMax {
		Abort("guest: event data longer than EventDataLenMax")
	}
	abi.EmitEvent(topic, data)
}
