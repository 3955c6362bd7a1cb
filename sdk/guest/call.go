package guest

import (
	"errors"
	"strconv"

	"github.com/kairos-network/kairos/sdk/guest/internal/abi"
)

// Result codes of the host's call function (docs/abi.md section 4.6).
const (
	CallOK        = 0
	CallOutOfGas  = 1
	CallTrapped   = 2
	CallAborted   = 3
	CallNoModule  = 4
	CallNoMethod  = 5
	CallDepth     = 6
	CallReentrant = 7
)

// Errors of Call, one per failure code; a *CallError unwraps to one.
var (
	ErrCallOutOfGas  = errors.New("guest: callee ran out of gas")
	ErrCallTrapped   = errors.New("guest: callee trapped")
	ErrCallAborted   = errors.New("guest: callee aborted")
	ErrCallNoModule  = errors.New("guest: no module at address")
	ErrCallNoMethod  = errors.New("guest: no such method")
	ErrCallDepth     = errors.New("guest: call depth limit")
	ErrCallReentrant = errors.New("guest: reentrant call")
	ErrCallUnknown   = errors.New("guest: unknown call result code")
)

var callErrs = map[int32]error{
	CallOutOfGas: ErrCallOutOfGas, CallTrapped: ErrCallTrapped, CallAborted: ErrCallAborted,
	CallNoModule: ErrCallNoModule, CallNoMethod: ErrCallNoMethod, CallDepth: ErrCallDepth,
	CallReentrant: ErrCallReentrant,
}

// CallError reports a failed Call: the host's code and, for an aborted
// callee, its abort message.
type CallError struct {
	Code    int32
	Message string
}

func (e *CallError) Error() string {
	s := e.Unwrap().Error()
	if _, known := callErrs[e.Code]; !known {
		s += " " + strconv.Itoa(int(e.Code))
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the sentinel error of the code.
func (e *CallError) Unwrap() error {
	if err, ok := callErrs[e.Code]; ok {
		return err
	}
	return ErrCallUnknown
}

// Call runs method of the module at addr with input, forwarding at most
// gas (0 or less: all the host allows, which keeps 1/64 for the caller).
// On success it returns the callee's result; on failure the callee's
// writes and events are already discarded and the error is a *CallError.
// An access outside the transaction's declared access list does not come
// back here: it stops the whole transaction.
func Call(addr Address, method string, input []byte, gas int64) ([]byte, error) {
	if !ValidMethodName(method) {
		return nil, &CallError{Code: CallNoMethod}
	}
	if len(input) > InputLenMax {
		Abort("guest: call input longer than InputLenMax")
	}
	code, res := abi.Call(addr, method, input, gas)
	switch code {
	case CallOK:
		return res, nil
	case CallAborted:
		return nil, &CallError{Code: code, Message: string(res)}
	default:
		return nil, &CallError{Code: code}
	}
}
