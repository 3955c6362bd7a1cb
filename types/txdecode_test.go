package types

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomTx builds a transaction whose fields take the values where
// encodings differ: nil against empty slices and lists, integers at every
// head length and both signs, multi-byte text. Its signature is random
// bytes (decoding does not check it).
func randomTx(rng *rand.Rand) *Tx {
	ints := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64, math.MaxUint64}
	pick := func() uint64 { return ints[rng.IntN(len(ints))] }
	bytesOf := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		default:
			b := make([]byte, []int{1, 23, 24, 300}[rng.IntN(4)])
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		}
	}
	addr := func() (a Address) {
		if rng.IntN(2) == 0 {
			a[rng.IntN(AddressLen)] = byte(1 + rng.IntN(255))
		}
		return a
	}
	texts := []string{"", "kairos", "ключ", "日本語のメソッド", string(make([]byte, 30))}
	tx := &Tx{Body: TxBody{
		ChainID:    texts[rng.IntN(len(texts))],
		Sender:     bytesOf(),
		Nonce:      pick(),
		ValidUntil: int64(pick() & math.MaxInt64),
		GasLimit:   pick(),
		Payload: Payload{Kind: PayloadKind(pick() & 0xff), Module: addr(), Code: bytesOf(),
			Method: texts[rng.IntN(len(texts))], Args: bytesOf(), Admin: addr()},
	}, Sig: bytesOf()}
	if rng.IntN(3) == 0 {
		tx.Body.ValidUntil = -1 - tx.Body.ValidUntil
	}
	switch n := rng.IntN(4); n {
	case 0:
	case 1:
		tx.Body.Access = []Access{}
	default:
		for range n {
			tx.Body.Access = append(tx.Body.Access, Access{Module: addr(), Key: bytesOf(), Prefix: rng.IntN(2) == 0,
				Mode: AccessMode(pick() & 0xff)})
		}
	}
	return tx
}

// checkFastAgrees fails if decodeTxFast accepts data and Decode does not,
// or decodes it to another value.
func checkFastAgrees(t *testing.T, data []byte) (fastOK bool) {
	t.Helper()
	fast, ok := decodeTxFast(data)
	var ref Tx
	err := Decode(data, &ref)
	if ok && (err != nil || !reflect.DeepEqual(*fast, ref)) {
		t.Fatalf("%x: fast path accepted it as %+v; Decode: %v, %+v", data, *fast, err, ref)
	}
	return ok
}

// TestDecodeTxFastMatchesDecode: the fast path takes every encoding the
// canonical encoder writes for random transactions and decodes it to
// Decode's value; on mutations of those encodings (bytes changed, cut,
// inserted) it accepts only what Decode accepts, with the same value.
func TestDecodeTxFastMatchesDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	accepted := 0
	for i := range 2000 {
		data := MustEncode(randomTx(rng))
		if !checkFastAgrees(t, data) {
			t.Fatalf("tx %d: fast path refused a canonical encoding %x", i, data)
		}
		for range 10 {
			m := append([]byte(nil), data...)
			switch rng.IntN(3) {
			case 0:
				m[rng.IntN(len(m))] = byte(rng.Uint32())
			case 1:
				m = m[:rng.IntN(len(m))]
			default:
				at := rng.IntN(len(m) + 1)
				m = append(m[:at], append([]byte{byte(rng.Uint32())}, m[at:]...)...)
			}
			if checkFastAgrees(t, m) {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Fatal("no mutation was accepted: the comparison saw only refusals")
	}
}

// TestDecodeTxFastRefusesNonCanonical: forms the decoder could read but the
// canonical encoder never writes are left to Decode, which refuses them.
func TestDecodeTxFastRefusesNonCanonical(t *testing.T) {
	data := MustEncode(SignTx(callBody(), testKey(1)))
	// The nonce (1) sits after the chain id and the 32-byte sender.
	at := 1 + 1 + 1 + len(testChain) + 2 + PublicKeySize
	if data[at] != 0x01 {
		t.Fatalf("layout changed: byte %d is %x", at, data[at])
	}
	long := append(append(append([]byte(nil), data[:at]...), 0x18, 0x01), data[at+1:]...) // 1 in two bytes
	indef := append(append([]byte(nil), data[:1]...), append([]byte{0x9f}, data[2:]...)...)
	trailing := append(append([]byte(nil), data...), 0)
	for name, m := range map[string][]byte{"long head": long, "indefinite body": indef, "trailing byte": trailing} {
		if _, ok := decodeTxFast(m); ok {
			t.Fatalf("%s: fast path accepted it", name)
		}
		var tx Tx
		if Decode(m, &tx) == nil {
			t.Fatalf("%s: Decode accepted it", name)
		}
	}
}

// FuzzDecodeTxFast: whatever the fast path accepts, Decode accepts with the
// same value.
func FuzzDecodeTxFast(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 4 {
		f.Add(MustEncode(randomTx(rng)))
	}
	f.Add(MustEncode(SignTx(callBody(), testKey(1))))
	f.Fuzz(func(t *testing.T, data []byte) { checkFastAgrees(t, data) })
}

// BenchmarkDecodeTx compares the generic Decode (the baseline) with the
// fast path on a transfer-sized transaction.
func BenchmarkDecodeTx(b *testing.B) {
	data := MustEncode(SignTx(callBody(), testKey(1)))
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var tx Tx
			if err := Decode(data, &tx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeTxFast(data); !ok {
				b.Fatal("refused")
			}
		}
	})
}
