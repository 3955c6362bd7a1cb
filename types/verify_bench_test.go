package types

import (
	"crypto/ed25519"
	"fmt"
	"runtime"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// BenchmarkVerify compares, per signature, the standard library, the
// chain's single check and batches of distinct senders' signatures (the
// shape of a gossiped transaction batch): "plain" is voi without expanded
// keys (the baseline, as before the key cache), "cold" SigBatch with every
// key expanded anew (a cache miss each), "warm" SigBatch with the keys
// cached. "expand" is one key's expansion, with its heap bytes.
func BenchmarkVerify(b *testing.B) {
	const n = 256
	pubs, msgs, sigs := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i := range n {
		k := testKey(byte(i + 1))
		pubs[i], msgs[i] = k.Public().(ed25519.PublicKey), fmt.Appendf(nil, "msg %d", i)
		sigs[i] = ed25519.Sign(k, msgs[i])
	}
	perSig := func(b *testing.B, size int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size)/1e3, "µs/sig")
	}
	b.Run("stdlib", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !ed25519.Verify(pubs[i%n], msgs[i%n], sigs[i%n]) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("single/plain", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !voi.VerifyWithOptions(pubs[i%n], msgs[i%n], sigs[i%n], verifyOptions) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("single/warm", func(b *testing.B) {
		useKeyCache(b, n)
		for i := 0; b.Loop(); i++ {
			if !VerifySignature(pubs[i%n], msgs[i%n], sigs[i%n]) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("expand", func(b *testing.B) {
		b.ReportAllocs()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for i := 0; b.Loop(); i++ {
			if _, err := voi.NewExpandedPublicKey(pubs[i%n]); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "heap-B/key")
	})
	for _, size := range []int{minBatch, 16, 64, 93, 128, 256} {
		b.Run(fmt.Sprintf("batch=%d/plain", size), func(b *testing.B) {
			v := voi.NewBatchVerifierWithCapacity(size)
			for b.Loop() {
				v.Reset().ForceNoPublicKeyExpansion()
				for i := range size {
					v.AddWithOptions(pubs[i], msgs[i], sigs[i], verifyOptions)
				}
				if ok, _ := v.Verify(nil); !ok {
					b.Fatal("rejected")
				}
			}
			perSig(b, size)
		})
		for _, warm := range []bool{false, true} {
			name := map[bool]string{false: "cold", true: "warm"}[warm]
			b.Run(fmt.Sprintf("batch=%d/%s", size, name), func(b *testing.B) {
				c := useKeyCache(b, n)
				batch := NewSigBatch(size)
				for b.Loop() {
					if !warm {
						c.reset()
					}
					for i := range size {
						batch.Add(pubs[i], msgs[i], sigs[i])
					}
					for _, ok := range batch.Verify() {
						if !ok {
							b.Fatal("rejected")
						}
					}
				}
				perSig(b, size)
			})
		}
	}
}
