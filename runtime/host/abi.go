package host

// Limits of ABI version 1 (docs/abi.md section 5). A guest that exceeds
// one is stopped with status trapped.
const (
	MethodNameLenMax = 64
	InputLenMax      = 65536
	ReturnLenMax     = 65536
	KeyLenMax        = 1024
	ValueLenMax      = 65536
	IteratorsOpenMax = 8
	EventTopicLenMax = 32
	EventDataLenMax  = 4096
	EventsPerTxMax   = 64
	CallDepthMax     = 8
	HashInputLenMax  = 65536
	AbortMsgLenMax   = 1024
	DebugLogLenMax   = 1024
	// InitGasMax is the gas budget of _initialize (docs/abi.md 8.1); the
	// engine that runs _initialize applies it.
	InitGasMax = 50_000_000
)

// Gas constants of ABI version 1 (docs/abi.md section 6).
const (
	GasHostCall       = 50
	GasByte           = 1
	GasStateRead      = 500
	GasStateWrite     = 2000
	GasStateWriteByte = 10
	GasIterOpen       = 500
	GasIterNext       = 200
	GasEvent          = 500
	GasEventByte      = 5
	GasCall           = 5000
	GasSha256         = 100
	GasSha256Byte     = 1
	GasEd25519Verify  = 5000
)

// Result codes of kairos.call (docs/abi.md section 4.6).
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

// addressLen is the size of an address in guest memory.
const addressLen = 32

// ValidMethodName reports whether s is a method name: 1 to
// MethodNameLenMax bytes of a-z, 0-9 and _, starting with a-z.
func ValidMethodName(s string) bool {
	if len(s) == 0 || len(s) > MethodNameLenMax || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ReservedMethod reports whether s is an export with a fixed role that
// transactions and call may not invoke.
func ReservedMethod(s string) bool { return s == "init" || s == "migrate" }

// validTopic reports whether b is an event topic: 1 to EventTopicLenMax
// bytes of a-z, 0-9, _ and '.'.
func validTopic(b []byte) bool {
	if len(b) == 0 || len(b) > EventTopicLenMax {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
