package state

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestRecycledBuffersPipelined commits versions with CommitAsync, each
// update running while the version below is written, on a store that
// reuses its record chunks (records and old values), its versions' outs
// and (pebble) its committed version batches, and poisons the chunks and
// batches as they are handed back: a buffer handed back while a record,
// value or batch in it is still to be copied or read (by the batch build,
// pebble's commit, or pebble's flushable batch until its flush) is garbage
// by then, whatever the scheduling; an out taken by the next version while
// its own write still reads it loses that version's lists. The node cache holds nothing, so every
// update reads the version below's nodes back from the datastore, and the
// end reads every version back through its tree and history, with readers
// polling the latest version meanwhile. On pebble every fourth version has
// large values, so that its batch is a flushable one (pebble keeps its
// buffer until its flush) while the others are copied into the memtable and
// kept for the next versions; the memory backend builds a version's batch
// after the version below is written, beside the next update.
func TestRecycledBuffersPipelined(t *testing.T) {
	for _, backend := range []string{"memory", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			opts := Options{CacheBytes: 1}
			var s *Store
			var err error
			if backend == "memory" {
				s, err = OpenMemory(opts)
			} else {
				s, err = OpenPebble(filepath.Join(t.TempDir(), "db"), opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.chunks.poison, s.versions.poison = true, true

			const (
				space  = 2000 // keys
				blocks = 12
			)
			large := func(h uint64) bool { return backend == "pebble" && h%4 == 2 }
			m := newModel()
			ws := make([][]Write, blocks+1)
			for h := uint64(1); h <= blocks; h++ {
				// The small versions write 600 keys (the parallel update,
				// a batch well under half a memtable); a large one 2,100
				// keys of 8 KiB values, ~17 MB in the flat index alone.
				n, size, step := 600, 40, 3
				if large(h) {
					n, size, step = space, 8<<10, 1
				}
				for i := 0; i < n; i++ {
					k := (i*step + int(h)*7) % space
					v := bytes.Repeat([]byte{byte(h), byte(k)}, size/2)
					if (k+int(h))%13 == 0 && !large(h) {
						v = nil // a delete
					}
					ws[h] = append(ws[h], Write{Key: key(fmt.Sprintf("k%04d", k)), Value: v})
				}
				m.apply(ws[h])
			}

			// Readers of the latest version while versions are written.
			stop := make(chan struct{})
			var readers sync.WaitGroup
			readErr := make(chan error, 1)
			readers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					h, _ := s.Latest()
					if err := checkVersion(ctx, s, m, h, 97); err != nil {
						select {
						case readErr <- err:
						default:
						}
						return
					}
				}
			})
			defer func() {
				select {
				case <-stop:
				default:
					close(stop)
				}
				readers.Wait()
			}()

			waits := make([]func() error, blocks+1)
			reusedChunks := false
			for h := uint64(1); h <= blocks; h++ {
				if _, waits[h], err = s.CommitAsync(ctx, h, ws[h]); err != nil {
					t.Fatalf("commit %d: %v", h, err)
				}
				s.chunks.mu.Lock()
				reusedChunks = reusedChunks || len(s.chunks.free) > 0
				s.chunks.mu.Unlock()
				if h > 1 {
					if err := waits[h-1](); err != nil {
						t.Fatalf("wait %d: %v", h-1, err)
					}
					if large(h - 1) {
						// Pebble kept the flushable batch's buffer: the
						// version's batch is not among the kept ones.
						s.versions.mu.Lock()
						for _, b := range s.versions.free {
							if cap(b.Repr()) >= 16<<20 {
								t.Errorf("version %d: its flushable batch was kept", h-1)
							}
						}
						s.versions.mu.Unlock()
					}
				}
			}
			if err := waits[blocks](); err != nil {
				t.Fatal(err)
			}
			close(stop)
			readers.Wait()
			select {
			case err := <-readErr:
				t.Fatal(err)
			default:
			}
			if !reusedChunks {
				t.Error("no record chunk was handed back")
			}
			if backend == "pebble" {
				s.versions.mu.Lock()
				reused := s.versions.reused
				s.versions.mu.Unlock()
				if reused == 0 {
					t.Error("no version batch was reused")
				}
			}
			for h := uint64(1); h <= blocks; h++ {
				if err := checkVersion(ctx, s, m, h, 1); err != nil {
					t.Fatal(err)
				}
			}
			auditClean(t, s)
		})
	}
}

// checkVersion reads every step-th key of the model's key space at version
// h through a View (the tree, then the history or the flat index) and
// compares it with the model.
func checkVersion(ctx context.Context, s *Store, m *model, h uint64, step int) error {
	if h == 0 {
		return nil
	}
	v, err := s.View(ctx, h)
	if err != nil {
		return fmt.Errorf("view %d: %w", h, err)
	}
	defer v.Close()
	if got := v.Root(); got != refRoot(m.versions[h]) {
		return fmt.Errorf("version %d: root %s, reference %s", h, got, refRoot(m.versions[h]))
	}
	for k := 0; k < 2000; k += step {
		sk := key(fmt.Sprintf("k%04d", k))
		got, err := v.Get(ctx, sk)
		if err != nil {
			return fmt.Errorf("version %d, key %d: %w", h, k, err)
		}
		if want := m.versions[h][modelKey(sk)]; !bytes.Equal(got, want) {
			return fmt.Errorf("version %d, key %d: %d bytes, want %d", h, k, len(got), len(want))
		}
	}
	return nil
}

// TestKeptBatchesTooSmallDropped: a kept batch that no longer fits is
// dropped at the next miss, one per miss, so that batches kept while the
// versions were small (a growing tree's first blocks) do not stay for good
// once every version batch is a flushable one pebble keeps.
func TestKeptBatchesTooSmallDropped(t *testing.T) {
	s := openPebble(t)
	var p partBatches
	for _, n := range []int{100 << 10, 200 << 10} {
		b := s.pdb.NewBatchWithSize(n, pebble.WithMaxRetainedSizeBytes(partRetainMax))
		p.put(s.pdb, b, 2)
	}
	if len(p.free) != 2 {
		t.Fatalf("%d batches kept, want 2", len(p.free))
	}
	if b := p.get(s.pdb, 150<<10, 150<<10); cap(b.Repr()) < 200<<10 || len(p.free) != 1 {
		t.Fatalf("a fitting get took a batch of %d bytes, %d left", cap(b.Repr()), len(p.free))
	}
	p.get(s.pdb, 1<<20, 1<<20)
	if len(p.free) != 0 || p.reused != 1 {
		t.Fatalf("after a miss %d batches kept (want 0), %d reused (want 1)", len(p.free), p.reused)
	}
}
