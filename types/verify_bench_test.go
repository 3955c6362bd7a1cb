package types

import (
	"crypto/ed25519"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

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
	// The batches report the process's CPU time per signature (getrusage):
	// on a shared machine wall time says more about the neighbours.
	var cpu0 time.Duration
	start := func(b *testing.B) { cpu0 = processCPU(b) }
	perSig := func(b *testing.B, size int) {
		b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*size)/1e3, "cpu-µs/sig")
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
			start(b)
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
				start(b)
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

// processCPU returns the process's user and system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
