package guest

// Limits of ABI version 1 (docs/abi.md section 5). The host stops a
// transaction with status "trapped" when a guest exceeds one; the SDK
// checks the ones it can before calling the host, to abort with a clearer
// message. A test compares these values with the table in docs/abi.md.
const (
	MemoryPagesMax   = 512
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
	InitGasMax       = 50_000_000
)

// ValidMethodName reports whether s is a method name: 1 to
// MethodNameLenMax bytes of a-z, 0-9 and _, starting with a letter.
func ValidMethodName(s string) bool {
	if len(s) == 0 || len(s) > MethodNameLenMax || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidEventTopic reports whether s is an event topic: 1 to
// EventTopicLenMax bytes of a-z, 0-9, _ and '.'.
func ValidEventTopic(s string) bool {
	if len(s) == 0 || len(s) > EventTopicLenMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ReservedMethod reports whether a method name is an export with a fixed
// role that transactions and Call may not invoke.
func ReservedMethod(s string) bool { return s == "init" || s == "migrate" }
