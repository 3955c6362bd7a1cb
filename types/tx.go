package types

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// String returns the hex digest.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*HashLen {
		return fmt.Errorf("types: hash text of %d characters, want %d", len(b), 2*HashLen)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// AccessMode says whether a transaction reads or writes a key. Write
// implies read.
type AccessMode uint8

// Access modes.
const (
	Read  AccessMode = 1
	Write AccessMode = 2
)

// Access is one entry of a transaction's declared access list: a key, or
// every key with a prefix, of one module instance.
type Access struct {
	_      struct{} `cbor:",toarray"`
	Module Address
	Key    []byte
	Prefix bool
	Mode   AccessMode
}

// Covers reports whether the entry grants mode on key of module.
func (a Access) Covers(module Address, key []byte, mode AccessMode) bool {
	if a.Module != module || a.Mode < mode {
		return false
	}
	if a.Prefix {
		return len(key) >= len(a.Key) && string(key[:len(a.Key)]) == string(a.Key)
	}
	return string(a.Key) == string(key)
}

// PayloadKind selects what a transaction does.
type PayloadKind uint8

// Payload kinds.
const (
	// Deploy stores Code and creates a module instance; Admin (if set)
	// may later upgrade it.
	Deploy PayloadKind = 1
	// Call invokes Method of Module with Args.
	Call PayloadKind = 2
	// Upgrade replaces Module's code with Code; only its admin may, and
	// the new code's optional `migrate` export runs in the same tx with Args.
	Upgrade PayloadKind = 3
	// SetAdmin hands Module's admin role to Admin.
	SetAdmin PayloadKind = 4
	// ClearAdmin makes Module immutable forever.
	ClearAdmin PayloadKind = 5
)

var payloadNames = map[PayloadKind]string{Deploy: "deploy", Call: "call", Upgrade: "upgrade", SetAdmin: "set-admin", ClearAdmin: "clear-admin"}

// String names the kind.
func (k PayloadKind) String() string {
	if s, ok := payloadNames[k]; ok {
		return s
	}
	return fmt.Sprintf("payload(%d)", uint8(k))
}

// Payload is the action of a transaction. Which fields are used depends on
// Kind; unused fields must be empty, so each action has one encoding.
type Payload struct {
	_      struct{} `cbor:",toarray"`
	Kind   PayloadKind
	Module Address // Call, Upgrade, SetAdmin, ClearAdmin
	Code   []byte  // Deploy, Upgrade
	Method string  // Call
	Args   []byte  // Call; Deploy and Upgrade (init / migrate input)
	Admin  Address // Deploy (zero = immutable), SetAdmin
}

// TxBody is the signed part of a transaction.
type TxBody struct {
	_          struct{} `cbor:",toarray"`
	ChainID    string
	Sender     []byte // ed25519 public key
	Nonce      uint64
	ValidUntil int64 // unix nanoseconds; the tx is invalid in blocks timed after it
	GasLimit   uint64
	Access     []Access
	Payload    Payload
}

// Tx is a signed transaction.
type Tx struct {
	_    struct{} `cbor:",toarray"`
	Body TxBody
	Sig  []byte

	// sender is the sender's address as the decoders and SignTx computed
	// it, so a node hashes a transaction's key once (the mempool and every
	// block's executor ask for it). Unexported, so neither encoded nor set
	// by a caller.
	sender senderCache
}

// senderCache holds an address with a copy of the key it was derived
// from: SenderAddress uses it only while Body.Sender still holds exactly
// that key, so a key changed after decoding (replaced or written in place)
// is hashed again and never answered with a stale address. Comparing 32
// bytes costs a fraction of the hash.
type senderCache struct {
	key  [PublicKeySize]byte
	addr Address
	set  bool
}

// cacheSender fills tx's sender cache from its current key. Only the code
// that makes a Tx calls it, before the Tx is shared: SenderAddress reads
// the cache without synchronization.
func (tx *Tx) cacheSender() {
	if len(tx.Body.Sender) != PublicKeySize {
		return
	}
	tx.sender = senderCache{key: [PublicKeySize]byte(tx.Body.Sender), addr: AddressFromPublicKey(tx.Body.Sender), set: true}
}

// Limits a transaction must respect. They are chain parameters.
type TxLimits struct {
	// MaxBytes caps the encoded size of any transaction but a deploy or
	// upgrade; MaxCodeTxBytes caps those, which carry module code.
	MaxBytes, MaxCodeTxBytes int
	MaxAccess                int    // entries in the access list
	MaxMethod                int    // bytes of a method name
	MaxChainID               int    // bytes of the chain id
	MaxGas                   uint64 // gas limit of one transaction
	MaxValidity              int64  // ns a tx may be valid into the future
}

// DefaultTxLimits are the limits of a new chain.
var DefaultTxLimits = TxLimits{
	MaxBytes:       64 << 10,
	MaxCodeTxBytes: 4 << 20,
	MaxAccess:      256,
	MaxMethod:      64,
	MaxChainID:     64,
	MaxGas:         1 << 32,
	MaxValidity:    int64(3600e9),
}

// Transaction validation errors; each is wrapped with detail.
var (
	ErrTxMalformed  = errors.New("types: malformed transaction")
	ErrTxTooLarge   = errors.New("types: transaction too large")
	ErrTxSignature  = errors.New("types: bad transaction signature")
	ErrTxChain      = errors.New("types: wrong chain id")
	ErrTxExpired    = errors.New("types: transaction expired")
	ErrTxFarFuture  = errors.New("types: transaction valid too far into the future")
	ErrTxAccessList = errors.New("types: access list over its limit")
	ErrTxPayload    = errors.New("types: invalid payload")
	ErrTxGas        = errors.New("types: gas limit out of range")
)

const (
	txIDTag  = "kairos/tx\x00"
	blockTag = "kairos/block\x00"
)

// SigningDigest returns the digest the sender signs, which is also the
// transaction id: sha256 of a domain tag and the canonical body. The id
// leaves the signature out so a re-signed body is the same transaction.
func (b *TxBody) SigningDigest() Hash {
	h := sha256.New()
	h.Write([]byte(txIDTag))
	h.Write(MustEncode(b))
	var d Hash
	h.Sum(d[:0])
	return d
}

// ID returns the transaction id.
func (tx *Tx) ID() Hash { return tx.Body.SigningDigest() }

// sigEncodingLen is the length of a signature's canonical encoding: a
// byte string head of two bytes (0x58, 64) and the 64 bytes.
const sigEncodingLen = 2 + SignatureSize

// idOfEncoding returns the id of tx, whose canonical encoding is data,
// without encoding the body again (see encodedID). Anything else falls
// back to ID.
func idOfEncoding(tx *Tx, data []byte) Hash {
	if len(tx.Sig) == SignatureSize {
		if id, ok := encodedID(data); ok {
			return id
		}
	}
	return tx.ID()
}

// encodedID returns the id of the transaction whose canonical encoding is
// data, from the bytes alone: data is the array head (0x82), the body's
// canonical encoding, then the signature's (0x58, 64, the 64 bytes), so
// the body is what lies between. ok is false when data is not of that
// shape. For bytes that are no transaction's canonical encoding the id
// means nothing; idOfEncoding asks for it only after decoding, and
// DecodeTxs's known only with the bytes themselves to compare.
func encodedID(data []byte) (id Hash, ok bool) {
	n := len(data) - sigEncodingLen
	if n < 1 || data[0] != 0x82 || data[n] != 0x58 || data[n+1] != SignatureSize {
		return Hash{}, false
	}
	h := sha256.New()
	h.Write([]byte(txIDTag))
	h.Write(data[1:n])
	h.Sum(id[:0])
	return id, true
}

// SenderAddress returns the sender's account address: the one computed
// when tx was decoded or signed if its key is still the same, else the
// hash of the key.
func (tx *Tx) SenderAddress() Address {
	if c := &tx.sender; c.set && len(tx.Body.Sender) == PublicKeySize && [PublicKeySize]byte(tx.Body.Sender) == c.key {
		return c.addr
	}
	return AddressFromPublicKey(tx.Body.Sender)
}

// SignTx signs body with priv and returns the transaction.
func SignTx(body TxBody, priv ed25519.PrivateKey) *Tx {
	body.Sender = append([]byte(nil), priv.Public().(ed25519.PublicKey)...)
	d := body.SigningDigest()
	tx := &Tx{Body: body, Sig: ed25519.Sign(priv, d[:])}
	tx.cacheSender()
	return tx
}

// DecodeTx decodes and statelessly validates the canonical encoding of a
// transaction. now is the caller's notion of time (unix ns): the local
// clock in the mempool, the block time in execution.
func DecodeTx(data []byte, chainID string, now int64, lim TxLimits) (*Tx, error) {
	tx, err := decodeUnsigned(data, chainID, &now, lim)
	if err != nil {
		return nil, err
	}
	d := idOfEncoding(tx, data) // the signing digest, without encoding the body again
	if !VerifySignature(tx.Body.Sender, d[:], tx.Sig) {
		return nil, fmt.Errorf("%w: does not verify", ErrTxSignature)
	}
	return tx, nil
}

// decodeUnsigned is DecodeTx without the signature check, at now or, when
// now is nil, at the transaction's own ValidUntil (no validity window).
func decodeUnsigned(data []byte, chainID string, now *int64, lim TxLimits) (*Tx, error) {
	if len(data) > max(lim.MaxBytes, lim.MaxCodeTxBytes) {
		return nil, fmt.Errorf("%w: %d bytes", ErrTxTooLarge, len(data))
	}
	tx, ok := decodeTxFast(data)
	if !ok {
		tx = new(Tx)
		if err := Decode(data, tx); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTxMalformed, err)
		}
	}
	// Decode accepted only the canonical form, so len(data) is the
	// encoded size: no need to encode the transaction again to measure it.
	at := tx.Body.ValidUntil
	if now != nil {
		at = *now
	}
	if err := tx.validateUnsigned(len(data), chainID, at, lim); err != nil {
		return nil, err
	}
	tx.cacheSender()
	return tx, nil
}

// Validate checks everything about tx that needs no state: size, chain,
// validity window, limits, payload shape and signature (checked last, as
// it is the expensive part).
func (tx *Tx) Validate(chainID string, now int64, lim TxLimits) error {
	return tx.validate(len(MustEncode(tx)), chainID, now, lim)
}

// validate is Validate with the encoded size already known.
func (tx *Tx) validate(size int, chainID string, now int64, lim TxLimits) error {
	if err := tx.validateUnsigned(size, chainID, now, lim); err != nil {
		return err
	}
	d := tx.Body.SigningDigest()
	if !VerifySignature(tx.Body.Sender, d[:], tx.Sig) {
		return fmt.Errorf("%w: does not verify", ErrTxSignature)
	}
	return nil
}

// validateUnsigned is validate without the signature check (DecodeTxs
// checks the signatures of many transactions at once).
func (tx *Tx) validateUnsigned(size int, chainID string, now int64, lim TxLimits) error {
	b := &tx.Body
	limit := lim.MaxBytes
	if b.Payload.Kind == Deploy || b.Payload.Kind == Upgrade {
		limit = lim.MaxCodeTxBytes
	}
	if size > limit {
		return fmt.Errorf("%w: %d bytes > %d for %s", ErrTxTooLarge, size, limit, b.Payload.Kind)
	}
	if len(b.ChainID) > lim.MaxChainID || b.ChainID != chainID {
		return fmt.Errorf("%w: %q, want %q", ErrTxChain, b.ChainID, chainID)
	}
	if err := b.checkWindow(now, lim); err != nil {
		return err
	}
	if b.GasLimit == 0 || b.GasLimit > lim.MaxGas {
		return fmt.Errorf("%w: %d not in [1, %d]", ErrTxGas, b.GasLimit, lim.MaxGas)
	}
	if len(b.Access) > lim.MaxAccess {
		return fmt.Errorf("%w: %d entries > %d", ErrTxAccessList, len(b.Access), lim.MaxAccess)
	}
	for i, a := range b.Access {
		if len(a.Key) > StateKeyMax {
			return fmt.Errorf("%w: entry %d key of %d bytes > %d", ErrTxAccessList, i, len(a.Key), StateKeyMax)
		}
		if a.Mode != Read && a.Mode != Write {
			return fmt.Errorf("%w: entry %d mode %d", ErrTxAccessList, i, a.Mode)
		}
	}
	if err := b.Payload.validate(lim); err != nil {
		return err
	}
	if len(b.Sender) != PublicKeySize || len(tx.Sig) != SignatureSize {
		return fmt.Errorf("%w: key %d bytes, signature %d bytes", ErrTxSignature, len(b.Sender), len(tx.Sig))
	}
	return nil
}

// checkWindow refuses a body that is expired at now or valid too far
// beyond it: the only rules of validateUnsigned that change with time.
func (b *TxBody) checkWindow(now int64, lim TxLimits) error {
	if b.ValidUntil < now {
		return fmt.Errorf("%w: valid until %d < now %d", ErrTxExpired, b.ValidUntil, now)
	}
	if b.ValidUntil-now > lim.MaxValidity {
		return fmt.Errorf("%w: valid until %d, now %d, max %d ns ahead", ErrTxFarFuture, b.ValidUntil, now, lim.MaxValidity)
	}
	return nil
}

func (p *Payload) validate(lim TxLimits) error {
	var zero Address
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrTxPayload, p.Kind, fmt.Sprintf(format, args...))
	}
	switch p.Kind {
	case Deploy:
		if len(p.Code) == 0 || p.Module != zero || p.Method != "" {
			return bad("needs code and no module or method")
		}
	case Call:
		if p.Module == zero || p.Method == "" || len(p.Method) > lim.MaxMethod || len(p.Code) != 0 || p.Admin != zero {
			return bad("needs a module and a method of 1..%d bytes, and no code or admin", lim.MaxMethod)
		}
	case Upgrade:
		if p.Module == zero || len(p.Code) == 0 || p.Method != "" || p.Admin != zero {
			return bad("needs a module and code, and no method or admin")
		}
	case SetAdmin:
		if p.Module == zero || p.Admin == zero || len(p.Code)+len(p.Method)+len(p.Args) != 0 {
			return bad("needs a module and an admin only")
		}
	case ClearAdmin:
		if p.Module == zero || p.Admin != zero || len(p.Code)+len(p.Method)+len(p.Args) != 0 {
			return bad("needs a module only")
		}
	default:
		return bad("unknown kind")
	}
	return nil
}
