package types

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

// BenchmarkVerify compares, per signature, the standard library, the
// chain's single check and batches of distinct senders' signatures (the
// shape of a gossiped transaction batch).
func BenchmarkVerify(b *testing.B) {
	const n = 64
	pubs, msgs, sigs := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i := range n {
		k := testKey(byte(i + 1))
		pubs[i], msgs[i] = k.Public().(ed25519.PublicKey), fmt.Appendf(nil, "msg %d", i)
		sigs[i] = ed25519.Sign(k, msgs[i])
	}
	b.Run("stdlib", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !ed25519.Verify(pubs[i%n], msgs[i%n], sigs[i%n]) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("single", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !VerifySignature(pubs[i%n], msgs[i%n], sigs[i%n]) {
				b.Fatal("rejected")
			}
		}
	})
	for _, size := range []int{minBatch, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			batch := NewSigBatch(size)
			for b.Loop() {
				for i := range size {
					batch.Add(pubs[i], msgs[i], sigs[i])
				}
				for _, ok := range batch.Verify() {
					if !ok {
						b.Fatal("rejected")
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size)/1e3, "µs/sig")
		})
	}
}
