package types

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// Encodings used by the edge cases (little-endian field elements).
var (
	// identityEnc is the canonical encoding of the neutral point (y = 1).
	identityEnc = append([]byte{1}, make([]byte, 31)...)
	// identityNonCanonical encodes y = p + 1 ≡ 1: the neutral point again.
	identityNonCanonical = append(append([]byte{0xee}, bytes.Repeat([]byte{0xff}, 30)...), 0x7f)
	// order2Enc encodes (0, -1), y = p - 1: a point of order 2.
	order2Enc = append(append([]byte{0xec}, bytes.Repeat([]byte{0xff}, 30)...), 0x7f)
	// groupOrder is ℓ = 2^252 + 27742317777372353535851937790883648493.
	groupOrder = []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	zero32 = make([]byte, 32)
)

func cat(a, b []byte) []byte { return append(append([]byte(nil), a...), b...) }

// TestVerifyRule pins the chain's rule (ZIP-215) on cases where ed25519
// implementations disagree, and checks that a batch decides each case as a
// single check does, both alone and mixed into a batch of honest
// signatures (where the batch equation, not the fallback, decides).
func TestVerifyRule(t *testing.T) {
	key := testKey(7)
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("kairos")
	good := ed25519.Sign(key, msg)
	flipped := append([]byte(nil), good...)
	flipped[5] ^= 1
	highS := cat(good[:32], good[32:])
	highS[63] |= 0xe0
	cases := []struct {
		name     string
		pub, sig []byte
		msg      []byte
		want     bool
	}{
		{"honest", pub, good, msg, true},
		{"wrong message", pub, good, []byte("kairoz"), false},
		{"flipped R bit", pub, flipped, msg, false},
		{"S with high bits", pub, highS, msg, false},
		// [8]([0]B - R - kA) = 0 when A and R are of small order: ZIP-215
		// accepts small-order and non-canonical A and R for any message.
		{"neutral A and R, S=0", identityEnc, cat(identityEnc, zero32), msg, true},
		{"order-2 A", order2Enc, cat(identityEnc, zero32), msg, true},
		{"order-2 R", identityEnc, cat(order2Enc, zero32), msg, true},
		{"non-canonical A", identityNonCanonical, cat(identityEnc, zero32), msg, true},
		{"non-canonical R", identityEnc, cat(identityNonCanonical, zero32), msg, true},
		// S must be reduced: S = ℓ satisfies the equation but is refused.
		{"S = group order", identityEnc, cat(identityEnc, groupOrder), msg, false},
		{"short key", pub[:31], good, msg, false},
		{"long key", cat(pub, []byte{0}), good, msg, false},
		{"short signature", pub, good[:63], msg, false},
		{"no signature", pub, nil, msg, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Cold (keys expanded for this check) and warm (taken from
			// the cache, where the first check put them if it passed).
			keys.reset()
			for _, state := range []string{"cold", "warm"} {
				if got := VerifySignature(c.pub, c.msg, c.sig); got != c.want {
					t.Fatalf("single, %s: %v, want %v", state, got, c.want)
				}
			}
			// A key is expanded at each check until a signature under it
			// passed; wrong lengths are refused before any lookup.
			want := uint64(2)
			switch {
			case len(c.pub) != PublicKeySize || len(c.sig) != SignatureSize:
				want = 0
			case c.want:
				want = 1
			}
			if keys.misses.Load() != want {
				t.Fatalf("%d misses, want %d", keys.misses.Load(), want)
			}
			// Alone (one-by-one path) and amid honest signatures (batch
			// equation), at every position of a batch.
			for _, size := range []int{1, minBatch, 2 * minBatch, 100} {
				for pos := range size {
					if pos%(1+size/8) != 0 && pos != size-1 {
						continue // a sample of positions in the large batch
					}
					if pos%2 == 0 {
						keys.reset()
					}
					b := NewSigBatch(size)
					for i := range size {
						if i == pos {
							b.Add(c.pub, c.msg, c.sig)
							continue
						}
						m := fmt.Appendf(nil, "m%d", i)
						b.Add(pub, m, ed25519.Sign(key, m))
					}
					ok := b.Verify()
					for i, v := range ok {
						if want := i != pos || c.want; v != want {
							t.Fatalf("batch of %d, case at %d: entry %d = %v, want %v", size, pos, i, v, want)
						}
					}
				}
			}
		})
	}
}

// TestSigBatchFindsBad mixes wrong signatures into batches of honest ones
// and checks that exactly those are reported, as single checks report.
func TestSigBatchFindsBad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []ed25519.PrivateKey{testKey(1), testKey(2), testKey(3)}
	b := NewSigBatch(0)
	for round := range 40 {
		n := 1 + rng.IntN(80)
		bad := map[int]bool{}
		type item struct{ pub, msg, sig []byte }
		items := make([]item, n)
		for i := range items {
			k := keys[rng.IntN(len(keys))]
			msg := fmt.Appendf(nil, "tx %d/%d", round, i)
			it := item{k.Public().(ed25519.PublicKey), msg, ed25519.Sign(k, msg)}
			if rng.IntN(8) == 0 {
				bad[i] = true
				switch rng.IntN(4) {
				case 0:
					it.sig = append([]byte(nil), it.sig...)
					it.sig[rng.IntN(64)] ^= 1 << rng.IntN(8)
				case 1:
					it.msg = append(it.msg, '!')
				case 2:
					it.pub = keys[(rng.IntN(2)+1+indexOf(keys, k))%len(keys)].Public().(ed25519.PublicKey)
				default:
					it.sig = make([]byte, rng.IntN(70))
				}
			}
			items[i] = it
			b.Add(it.pub, it.msg, it.sig)
		}
		if b.Len() != n {
			t.Fatalf("round %d: Len %d, want %d", round, b.Len(), n)
		}
		ok := b.Verify()
		for i, it := range items {
			single := VerifySignature(it.pub, it.msg, it.sig)
			// Batch and single agree, and with how the item was built.
			if ok[i] != single || ok[i] == bad[i] {
				t.Fatalf("round %d item %d: batch %v, single %v, built bad %v", round, i, ok[i], single, bad[i])
			}
		}
		if b.Len() != 0 {
			t.Fatalf("Verify left %d queued", b.Len())
		}
	}
}

func indexOf(keys []ed25519.PrivateKey, k ed25519.PrivateKey) int {
	for i := range keys {
		if bytes.Equal(keys[i], k) {
			return i
		}
	}
	return -1
}

// TestDecodeTxsMatchesDecodeTx: the batch decoder refuses and accepts
// exactly what DecodeTx does, with the same error sentinel and id.
func TestDecodeTxsMatchesDecodeTx(t *testing.T) {
	var raws [][]byte
	for i := range 12 {
		body := callBody()
		body.Nonce = uint64(i + 1)
		tx := SignTx(body, testKey(byte(i%3+1)))
		switch i % 4 {
		case 1:
			tx.Sig[3] ^= 0x10 // bad signature
		case 2:
			tx.Body.ChainID = "other" // fails before the signature
		}
		raw := MustEncode(tx)
		if i == 7 {
			raw = raw[:len(raw)-1] // malformed
		}
		raws = append(raws, raw)
	}
	out := DecodeTxs(raws, testChain, 1_000, DefaultTxLimits, nil)
	for i, raw := range raws {
		tx, err := DecodeTx(raw, testChain, 1_000, DefaultTxLimits)
		got := out[i]
		if (err == nil) != (got.Err == nil) || (err != nil && err.Error() != got.Err.Error()) {
			t.Fatalf("tx %d: DecodeTxs err %v, DecodeTx err %v", i, got.Err, err)
		}
		if err == nil && (got.ID != tx.ID() || !bytes.Equal(MustEncode(got.Tx), raw)) {
			t.Fatalf("tx %d: decoded differently", i)
		}
		if i%4 == 1 && got.Err == nil {
			t.Fatalf("tx %d: bad signature accepted", i)
		}
	}
}

// TestDecodeTxsKnown: known is asked about every payload of the
// transaction shape, before decoding, with the id DecodeTx would give it;
// a payload it vouches for is neither decoded nor checked (the caller
// holds those exact bytes as a valid transaction), unless its validity
// window no longer holds at now, when it gets DecodeTx's verdict.
func TestDecodeTxsKnown(t *testing.T) {
	goodTx := SignTx(callBody(), testKey(1))
	good := MustEncode(goodTx)
	badTx := SignTx(callBody(), testKey(2))
	badTx.Sig[0] ^= 1
	bad := MustEncode(badTx)
	wrongChain := callBody()
	wrongChain.ChainID = "other"
	other := MustEncode(SignTx(wrongChain, testKey(3)))
	var asked []Hash
	// known vouches for bad: a wrong claim, so the test sees that it was
	// believed (no signature check) rather than checked.
	known := func(id Hash, raw []byte) *Tx {
		asked = append(asked, id)
		if bytes.Equal(raw, bad) {
			return badTx
		}
		return nil
	}
	raws := [][]byte{good, bad, other, good[:len(good)-1]}
	out := DecodeTxs(raws, testChain, 1_000, DefaultTxLimits, known)
	if out[0].Err != nil || out[1].Err != nil || !errors.Is(out[2].Err, ErrTxChain) || !errors.Is(out[3].Err, ErrTxMalformed) {
		t.Fatalf("outcomes %v, %v, %v, %v", out[0].Err, out[1].Err, out[2].Err, out[3].Err)
	}
	if out[0].Known || !out[1].Known || out[1].Tx != badTx || out[1].ID != badTx.ID() || out[0].ID != goodTx.ID() {
		t.Fatalf("known flags %v %v, ids or tx not the caller's", out[0].Known, out[1].Known)
	}
	// The truncated payload is not of the transaction's shape: not asked.
	if len(asked) != 3 || asked[0] != goodTx.ID() || asked[1] != badTx.ID() {
		t.Fatalf("known asked %d times, want 3 with the payloads' ids", len(asked))
	}
	// Past the window, the held payload is decoded and refused as DecodeTx
	// would refuse it.
	late := badTx.Body.ValidUntil + 1
	if out := DecodeTxs([][]byte{bad}, testChain, late, DefaultTxLimits, known); out[0].Known || !errors.Is(out[0].Err, ErrTxExpired) {
		t.Fatalf("expired held payload: known %v, err %v", out[0].Known, out[0].Err)
	}
	if out := DecodeTxs([][]byte{bad}, testChain, 1_000, DefaultTxLimits, nil); !errors.Is(out[0].Err, ErrTxSignature) {
		t.Fatalf("without known: %v", out[0].Err)
	}
}

// TestDecodeBodiesMatchesDecodeTx: DecodeBodies gives each transaction
// DecodeTx's verdict at that transaction's own ValidUntil, so one expired
// or far in the future by any clock is still a valid body; every other
// rule (signature, chain, shape) still refuses.
func TestDecodeBodiesMatchesDecodeTx(t *testing.T) {
	var raws [][]byte
	for i := range 12 {
		body := callBody()
		body.Nonce = uint64(i + 1)
		body.ValidUntil = int64(1+i%3) * DefaultTxLimits.MaxValidity * 10 // spread far apart
		tx := SignTx(body, testKey(byte(i%3+1)))
		switch i % 4 {
		case 1:
			tx.Sig[3] ^= 0x10 // bad signature
		case 2:
			tx.Body.ChainID = "other"
		}
		raw := MustEncode(tx)
		if i == 7 {
			raw = raw[:len(raw)-1] // malformed
		}
		raws = append(raws, raw)
	}
	out := DecodeBodies(raws, testChain, DefaultTxLimits)
	for i, raw := range raws {
		var at int64
		var tx Tx
		if Decode(raw, &tx) == nil {
			at = tx.Body.ValidUntil
		}
		want, err := DecodeTx(raw, testChain, at, DefaultTxLimits)
		got := out[i]
		if (err == nil) != (got.Err == nil) || (err != nil && err.Error() != got.Err.Error()) {
			t.Fatalf("tx %d: DecodeBodies err %v, DecodeTx at ValidUntil err %v", i, got.Err, err)
		}
		if err == nil && (got.ID != want.ID() || !bytes.Equal(MustEncode(got.Tx), raw)) {
			t.Fatalf("tx %d: decoded differently", i)
		}
		if want := i%4 == 0 || i%4 == 3 && i != 7; (got.Err == nil) != want {
			t.Fatalf("tx %d: err %v, want ok %v", i, got.Err, want)
		}
	}
}
