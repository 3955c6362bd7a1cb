package types

import "crypto/sha256"

// Status is the outcome of a transaction. Guest failures are statuses in
// receipts, never node errors.
type Status uint8

// Transaction statuses.
const (
	StatusOK              Status = 0
	StatusOutOfGas        Status = 1
	StatusTrapped         Status = 2
	StatusAborted         Status = 3
	StatusAccessViolation Status = 4
	// StatusInvalid marks a transaction that reached a block but failed a
	// state-dependent check (nonce, expiry at block time, unknown module).
	StatusInvalid Status = 5
)

var statusNames = [...]string{"ok", "out_of_gas", "trapped", "aborted", "access_violation", "invalid"}

// String returns the stable name used in the API.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Event is what a module emits during a transaction.
type Event struct {
	_      struct{} `cbor:",toarray"`
	Module Address
	Topic  string
	Data   []byte
}

// Receipt is the result of one transaction in a block.
type Receipt struct {
	_       struct{} `cbor:",toarray"`
	TxID    Hash
	Status  Status
	GasUsed uint64
	Return  []byte
	Events  []Event
	Error   string // why a failed transaction failed, for humans
}

// OrderedTx is a transaction's place in the fair order: its id and its
// consensus timestamp (unix ns).
type OrderedTx struct {
	_  struct{} `cbor:",toarray"`
	ID Hash
	TS int64
}

// Block is a released batch of transactions in consensus order, sorted by
// (TS, ID). Its boundaries are a pure function of the committed DAG.
type Block struct {
	_         struct{} `cbor:",toarray"`
	Height    uint64
	Parent    Hash  // id of the block at Height-1 (zero for the first)
	Time      int64 // ts of the last tx: the block's execution time
	Watermark int64 // the stability watermark that released it
	Txs       []OrderedTx
}

// ID returns the block id: sha256 of a domain tag and the canonical block.
func (b *Block) ID() Hash {
	h := sha256.New()
	h.Write([]byte(blockTag))
	h.Write(MustEncode(b))
	var d Hash
	h.Sum(d[:0])
	return d
}
