package types

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/big"
	"testing"
)

const testChain = "kairos-test"

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func callBody() TxBody {
	var mod Address
	mod[0] = 9
	return TxBody{
		ChainID:    testChain,
		Nonce:      1,
		ValidUntil: 2_000,
		GasLimit:   100_000,
		Access:     []Access{{Module: mod, Key: []byte("bal/"), Prefix: true, Mode: Write}},
		Payload:    Payload{Kind: Call, Module: mod, Method: "transfer", Args: []byte{1, 2}},
	}
}

func TestTxSignDecode(t *testing.T) {
	tx := SignTx(callBody(), testKey(1))
	data := MustEncode(tx)
	got, err := DecodeTx(data, testChain, 1_000, DefaultTxLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != tx.ID() || got.SenderAddress() != AddressFromPublicKey(testKey(1).Public().(ed25519.PublicKey)) {
		t.Fatal("decoded tx differs")
	}
	// The id does not cover the signature, but does cover every body field.
	other := callBody()
	other.Nonce = 2
	if SignTx(other, testKey(1)).ID() == tx.ID() {
		t.Fatal("nonce not covered by id")
	}
}

func TestTxRejects(t *testing.T) {
	key := testKey(1)
	mutate := func(f func(b *TxBody)) []byte {
		b := callBody()
		f(&b)
		return MustEncode(SignTx(b, key))
	}
	good := SignTx(callBody(), key)
	// Ed25519 malleability: S + L is rejected by crypto/ed25519.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	malleated := *good
	malleated.Sig = append([]byte(nil), good.Sig...)
	s := new(big.Int).SetBytes(reverse(malleated.Sig[32:]))
	s.Add(s, l)
	sb := s.FillBytes(make([]byte, 32))
	copy(malleated.Sig[32:], reverse(sb))
	flipped := *good
	flipped.Sig = append([]byte(nil), good.Sig...)
	flipped.Sig[5] ^= 1
	otherSigner := *good
	otherSigner.Body.Sender = testKey(2).Public().(ed25519.PublicKey)

	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"bad signature", MustEncode(&flipped), ErrTxSignature},
		{"malleated signature", MustEncode(&malleated), ErrTxSignature},
		{"signature of another key", MustEncode(&otherSigner), ErrTxSignature},
		{"wrong chain", mutate(func(b *TxBody) { b.ChainID = "other" }), ErrTxChain},
		{"expired", mutate(func(b *TxBody) { b.ValidUntil = 999 }), ErrTxExpired},
		{"far future", mutate(func(b *TxBody) { b.ValidUntil = 1_000 + DefaultTxLimits.MaxValidity + 1 }), ErrTxFarFuture},
		{"zero gas", mutate(func(b *TxBody) { b.GasLimit = 0 }), ErrTxGas},
		{"too much gas", mutate(func(b *TxBody) { b.GasLimit = DefaultTxLimits.MaxGas + 1 }), ErrTxGas},
		{"access list too long", mutate(func(b *TxBody) {
			b.Access = make([]Access, DefaultTxLimits.MaxAccess+1)
			for i := range b.Access {
				b.Access[i].Mode = Read
			}
		}), ErrTxAccessList},
		{"access mode", mutate(func(b *TxBody) { b.Access[0].Mode = 7 }), ErrTxAccessList},
		{"access key too long", mutate(func(b *TxBody) { b.Access[0].Key = make([]byte, StateKeyMax+1) }), ErrTxAccessList},
		{"call without method", mutate(func(b *TxBody) { b.Payload.Method = "" }), ErrTxPayload},
		{"call with code", mutate(func(b *TxBody) { b.Payload.Code = []byte{0} }), ErrTxPayload},
		{"unknown payload", mutate(func(b *TxBody) { b.Payload.Kind = 9 }), ErrTxPayload},
		{"deploy without code", mutate(func(b *TxBody) { b.Payload = Payload{Kind: Deploy} }), ErrTxPayload},
		{"oversized call", mutate(func(b *TxBody) { b.Payload.Args = make([]byte, DefaultTxLimits.MaxBytes) }), ErrTxTooLarge},
		{"trailing bytes", append(MustEncode(good), 0), ErrTxMalformed},
		{"truncated", MustEncode(good)[:40], ErrTxMalformed},
		{"not a tx", []byte{0x01}, ErrTxMalformed},
		{"way too large", make([]byte, DefaultTxLimits.MaxCodeTxBytes+1), ErrTxTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := DecodeTx(c.data, testChain, 1_000, DefaultTxLimits); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestAccessCovers(t *testing.T) {
	var m, other Address
	m[0], other[0] = 1, 2
	exact := Access{Module: m, Key: []byte("ab"), Mode: Read}
	prefix := Access{Module: m, Key: []byte("ab"), Prefix: true, Mode: Write}
	cases := []struct {
		a    Access
		mod  Address
		key  string
		mode AccessMode
		want bool
	}{
		{exact, m, "ab", Read, true},
		{exact, m, "ab", Write, false},
		{exact, m, "abc", Read, false},
		{exact, other, "ab", Read, false},
		{prefix, m, "abc", Write, true},
		{prefix, m, "ab", Read, true},
		{prefix, m, "a", Read, false},
		{prefix, other, "abc", Read, false},
	}
	for i, c := range cases {
		if got := c.a.Covers(c.mod, []byte(c.key), c.mode); got != c.want {
			t.Errorf("case %d: Covers = %v, want %v", i, got, c.want)
		}
	}
}

func TestBlockID(t *testing.T) {
	b := Block{Height: 1, Time: 5, Watermark: 6, Txs: []OrderedTx{{ID: Hash{1}, TS: 5}}}
	id := b.ID()
	b.Txs[0].TS = 4
	if b.ID() == id {
		t.Fatal("block id ignores tx timestamps")
	}
	var back Block
	if err := Decode(MustEncode(&b), &back); err != nil || back.ID() != b.ID() {
		t.Fatalf("block round trip: %v", err)
	}
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

// FuzzDecodeTx checks that transaction decoding never panics and that an
// accepted transaction re-encodes to its input.
func FuzzDecodeTx(f *testing.F) {
	f.Add(MustEncode(SignTx(callBody(), testKey(1))))
	f.Add([]byte{0x82, 0x80, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		tx, err := DecodeTx(data, testChain, 1_000, DefaultTxLimits)
		if err == nil && !bytes.Equal(MustEncode(tx), data) {
			t.Fatalf("accepted non-canonical tx %x", data)
		}
		if err == nil && tx.SenderAddress() != AddressFromPublicKey(tx.Body.Sender) {
			t.Fatalf("%x: cached sender differs from the key's hash", data)
		}
	})
}

// TestSenderAddressNeverStale: a transaction from SignTx, DecodeTx or
// DecodeBodies answers SenderAddress with the hash of the key it holds now,
// whether the key was kept, replaced, written in place, cut or emptied
// after the address was cached; the cache is not encoded.
func TestSenderAddressNeverStale(t *testing.T) {
	hashOf := func(tx *Tx) Address { return AddressFromPublicKey(tx.Body.Sender) }
	edits := []struct {
		name string
		edit func(tx *Tx)
	}{
		{"kept", func(*Tx) {}},
		{"replaced", func(tx *Tx) { tx.Body.Sender = testKey(7).Public().(ed25519.PublicKey) }},
		{"in place", func(tx *Tx) { tx.Body.Sender[5] ^= 1 }},
		{"cut", func(tx *Tx) { tx.Body.Sender = tx.Body.Sender[:16] }},
		{"nil", func(tx *Tx) { tx.Body.Sender = nil }},
	}
	signed := SignTx(callBody(), testKey(1))
	raw := MustEncode(signed)
	makers := map[string]func() *Tx{
		"SignTx": func() *Tx { return SignTx(callBody(), testKey(1)) },
		"DecodeTx": func() *Tx {
			tx, err := DecodeTx(raw, testChain, 1_000, DefaultTxLimits)
			if err != nil {
				t.Fatal(err)
			}
			return tx
		},
		"DecodeBodies": func() *Tx {
			out := DecodeBodies([][]byte{raw}, testChain, DefaultTxLimits)
			if out[0].Err != nil {
				t.Fatal(out[0].Err)
			}
			return out[0].Tx
		},
	}
	want := AddressFromPublicKey(testKey(1).Public().(ed25519.PublicKey))
	for name, mk := range makers {
		for _, e := range edits {
			tx := mk()
			if !tx.sender.set || tx.sender.addr != want {
				t.Fatalf("%s: no address cached", name)
			}
			e.edit(tx)
			if got := tx.SenderAddress(); got != hashOf(tx) {
				t.Fatalf("%s, key %s: address %s, want %s", name, e.name, got, hashOf(tx))
			}
		}
	}
	if !bytes.Equal(MustEncode(signed), MustEncode(&Tx{Body: signed.Body, Sig: signed.Sig})) {
		t.Fatal("the cached address changed the encoding")
	}
}

// TestIDOfEncoding: the id read from a transaction's canonical encoding is
// the id of its decoded body, for bodies of every payload kind and size
// (the reference is Tx.ID, which encodes the body again).
func TestIDOfEncoding(t *testing.T) {
	for i := range 64 {
		body := callBody()
		body.Nonce = uint64(i) << (i % 60)
		body.Payload.Args = bytes.Repeat([]byte{byte(i)}, i*i*7) // heads of 1, 2 and 3 bytes
		body.Access = body.Access[:i%2]
		if i%5 == 0 {
			body.Payload = Payload{Kind: Deploy, Code: bytes.Repeat([]byte{1}, i*300)}
		}
		tx := SignTx(body, testKey(byte(i)))
		raw := MustEncode(tx)
		var back Tx
		if err := Decode(raw, &back); err != nil {
			t.Fatal(err)
		}
		if got, want := idOfEncoding(&back, raw), tx.ID(); got != want {
			t.Fatalf("tx %d: id of encoding %s, want %s", i, got, want)
		}
	}
	// A signature of another length is not read from the encoding.
	tx := SignTx(callBody(), testKey(1))
	tx.Sig = tx.Sig[:10]
	if got := idOfEncoding(tx, MustEncode(tx)); got != tx.ID() {
		t.Fatalf("short signature: %s, want %s", got, tx.ID())
	}
}
