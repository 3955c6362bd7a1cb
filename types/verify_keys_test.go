package types

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// useKeyCache replaces the process's key cache for one test.
func useKeyCache(t testing.TB, n int) *keyCache {
	old := keys
	keys = newKeyCache(n)
	t.Cleanup(func() { keys = old })
	return keys
}

// TestKeyCacheMatchesPlain: with a cache too small for the senders (so
// keys are evicted and expanded again), single and batch checks give the
// verdicts of voi's plain check (no expansion, no cache), the reference,
// on honest, altered and random-key signatures; the cache never holds more
// than its bound and holds only keys that signed a valid signature.
func TestKeyCacheMatchesPlain(t *testing.T) {
	const bound = 6
	c := useKeyCache(t, bound)
	rng := rand.New(rand.NewPCG(3, 4))
	signers := make([]ed25519.PrivateKey, 10)
	for i := range signers {
		signers[i] = testKey(byte(40 + i))
	}
	honest := map[[PublicKeySize]byte]bool{}
	for _, k := range signers {
		honest[[PublicKeySize]byte(k.Public().(ed25519.PublicKey))] = true
	}
	b := NewSigBatch(0)
	for round := range 30 {
		n := 1 + rng.IntN(200) // across voi's switch to Pippenger at 94
		type item struct{ pub, msg, sig []byte }
		items := make([]item, n)
		for i := range items {
			k := signers[rng.IntN(len(signers))]
			msg := fmt.Appendf(nil, "r%d i%d", round, i)
			it := item{k.Public().(ed25519.PublicKey), msg, ed25519.Sign(k, msg)}
			switch rng.IntN(10) {
			case 0:
				it.sig[rng.IntN(SignatureSize)] ^= 1 << rng.IntN(8)
			case 1: // random bytes: a point or not, never the signer
				it.pub = make([]byte, PublicKeySize)
				for j := range it.pub {
					it.pub[j] = byte(rng.Uint32())
				}
			}
			items[i] = it
			b.Add(it.pub, it.msg, it.sig)
		}
		got := b.Verify()
		for i, it := range items {
			want := voi.VerifyWithOptions(voi.PublicKey(it.pub), it.msg, it.sig, verifyOptions)
			if got[i] != want {
				t.Fatalf("round %d item %d: batch %v, plain %v", round, i, got[i], want)
			}
			if single := VerifySignature(it.pub, it.msg, it.sig); single != want {
				t.Fatalf("round %d item %d: single %v, plain %v", round, i, single, want)
			}
		}
		if held := c.len(); held > bound {
			t.Fatalf("round %d: %d keys held, bound %d", round, held, bound)
		}
		c.mu.Lock()
		for _, gen := range []map[[PublicKeySize]byte]*voi.ExpandedPublicKey{c.cur, c.old} {
			for a := range gen {
				if !honest[a] {
					t.Fatalf("round %d: key %x cached without a valid signature", round, a)
				}
			}
		}
		c.mu.Unlock()
	}
	if c.hits.Load() == 0 || c.misses.Load() == 0 {
		t.Fatalf("hits %d, misses %d: the test did not exercise both", c.hits.Load(), c.misses.Load())
	}
}

// TestKeyCacheConcurrent checks from several goroutines at once (run with
// -race): every verdict is right while keys are inserted and evicted.
func TestKeyCacheConcurrent(t *testing.T) {
	useKeyCache(t, 4)
	signers := make([]ed25519.PrivateKey, 8)
	for i := range signers {
		signers[i] = testKey(byte(60 + i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			b := NewSigBatch(0)
			for i := range 60 {
				k := signers[(g+i)%len(signers)]
				msg := fmt.Appendf(nil, "g%d i%d", g, i)
				sig := ed25519.Sign(k, msg)
				if i%7 == 3 {
					sig[9] ^= 2
				}
				b.Add(k.Public().(ed25519.PublicKey), msg, sig)
				if b.Len() == 2*minBatch {
					for j, ok := range b.Verify() {
						if want := (i-2*minBatch+1+j)%7 != 3; ok != want {
							errs <- fmt.Errorf("goroutine %d, item %d: %v, want %v", g, i-2*minBatch+1+j, ok, want)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
