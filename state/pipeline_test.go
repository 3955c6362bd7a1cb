package state

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
)

// TestCommitAsyncAgainstModel pipelines random blocks with CommitAsync
// (the next block's tree update runs while the previous one is written),
// pruning after each, while readers poll Latest and read the latest version
// through the flat index and a View. Every root must equal the reference
// root of the model; a reader must never see a version above the highest
// one committed, nor one whose wait has not returned as missing; after
// CommitAsync(h) returns, version h-1 is visible; after h's wait returns, h
// is. The node cache holds almost nothing (1 byte), so the next update
// finds the previous version's nodes evicted and must wait for its write
// before loading them: without that wait it reads records not yet written
// (ErrCorrupt). The store ends audit-clean.
func TestCommitAsyncAgainstModel(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T, cache int) *Store
	}{
		{"memory", func(t *testing.T, cache int) *Store {
			s, err := OpenMemory(Options{KeepVersions: 3, CacheBytes: cache, PruneChunk: 7})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"pebble", func(t *testing.T, cache int) *Store {
			s, err := OpenPebble(filepath.Join(t.TempDir(), "db"), Options{KeepVersions: 3, CacheBytes: cache, PruneChunk: 7})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, be := range backends {
		for _, cache := range []int{1, DefaultCacheBytes} {
			t.Run(be.name+"/cache="+strconv.Itoa(cache), func(t *testing.T) {
				runs := max(1, seeds()/4)
				if RaceEnabled {
					runs = 1
				}
				for seed := 0; seed < runs; seed++ {
					s := be.open(t, cache)
					runCommitAsync(t, s, uint64(seed))
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

func runCommitAsync(t *testing.T, s *Store, seed uint64) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 11))
	m := newModel()
	const blocks = 12
	// Most blocks have parallelMin writes or more: the parallel update.
	ws := make([][]Write, blocks+1)
	for h := 1; h <= blocks; h++ {
		ws[h] = randWrites(r, 100+r.IntN(300), 400)
		m.apply(ws[h])
		m.roots = append(m.roots, refRoot(m.versions[h]))
	}

	var committed atomic.Uint64 // highest height handed to CommitAsync
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readErr := make(chan error, 2)
	for g := 0; g < 2; g++ {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := readLatest(ctx, s, m, &committed); err != nil {
					readErr <- err
					return
				}
			}
		})
	}

	// Stop the readers before anything returns, also on a failure: the
	// caller closes the store.
	stopped := false
	stopReaders := func() {
		if !stopped {
			stopped = true
			close(stop)
			readers.Wait()
		}
	}
	defer stopReaders()

	waits := make([]func() error, blocks+1)
	for h := uint64(1); h <= blocks; h++ {
		committed.Store(h)
		root, wait, err := s.CommitAsync(ctx, h, ws[h])
		if err != nil {
			t.Fatalf("seed %d: commit %d: %v", seed, h, err)
		}
		if root != m.roots[h] {
			t.Fatalf("seed %d: version %d root %s, reference %s", seed, h, root, m.roots[h])
		}
		if got, _ := s.Latest(); got < h-1 {
			t.Fatalf("seed %d: CommitAsync(%d) returned with version %d latest", seed, h, got)
		}
		waits[h] = wait
		if _, err := s.Prune(ctx); err != nil {
			t.Fatalf("seed %d: prune after %d: %v", seed, h, err)
		}
	}
	for h := uint64(1); h <= blocks; h++ {
		if err := waits[h](); err != nil {
			t.Fatalf("seed %d: wait %d: %v", seed, h, err)
		}
	}
	if got, root := s.Latest(); got != blocks || root != m.roots[blocks] {
		t.Fatalf("seed %d: latest %d %s after every wait, want %d %s", seed, got, root, blocks, m.roots[blocks])
	}
	stopReaders()
	select {
	case err := <-readErr:
		t.Fatalf("seed %d: reader: %v", seed, err)
	default:
	}
	auditClean(t, s)
}

// readLatest checks what a reader sees while commits are in flight: a
// version no higher than the highest committed (read before Latest), with
// the model's root, and the model's value for a key through the flat index
// and through a View (which may meet ErrPruned, never a missing node).
func readLatest(ctx context.Context, s *Store, m *model, committed *atomic.Uint64) error {
	h, root := s.Latest()
	if c := committed.Load(); h > c {
		return errors.New("latest " + strconv.FormatUint(h, 10) + " above the committed " + strconv.FormatUint(c, 10))
	}
	if h >= uint64(len(m.roots)) || root != m.roots[h] {
		return errors.New("latest " + strconv.FormatUint(h, 10) + " has a root the model never had")
	}
	v, err := s.View(ctx, h)
	if errors.Is(err, ErrPruned) {
		return nil // pruned meanwhile
	}
	if err != nil {
		return err
	}
	defer v.Close()
	for k, want := range m.versions[h] {
		got, err := v.Get(ctx, splitKey(k))
		if err != nil {
			return err
		}
		if string(got) != string(want) {
			return errors.New("view " + strconv.FormatUint(h, 10) + ": wrong value")
		}
		break // one key per round: keep the readers light
	}
	return nil
}

// errFailCommit is what failCommitDS's batches return once armed.
var errFailCommit = errors.New("test: batch commit failed")

// failCommitDS applies a batch all at once, or, once armed, nothing and
// fails: an atomic backend whose write fails (a full disk).
type failCommitDS struct {
	ds.Batching
	armed atomic.Bool
}

func (f *failCommitDS) Batch(context.Context) (ds.Batch, error) { return &failCommitBatch{f: f}, nil }

type failCommitBatch struct {
	f   *failCommitDS
	ops []func(context.Context) error
}

func (b *failCommitBatch) Put(_ context.Context, k ds.Key, v []byte) error {
	b.ops = append(b.ops, func(ctx context.Context) error { return b.f.Batching.Put(ctx, k, v) })
	return nil
}

func (b *failCommitBatch) Delete(_ context.Context, k ds.Key) error {
	b.ops = append(b.ops, func(ctx context.Context) error { return b.f.Batching.Delete(ctx, k) })
	return nil
}

func (b *failCommitBatch) Commit(ctx context.Context) error {
	if b.f.armed.Load() {
		return errFailCommit
	}
	for _, op := range b.ops {
		if err := op(ctx); err != nil {
			return err
		}
	}
	return nil
}

// TestCommitAsyncFailedWrite: when the write of version 6 fails (torn on a
// backend without atomic batches, or refused whole on an atomic one) while
// version 7 is already updated in memory, 6's wait reports the failure with
// ErrNeedsReopen, 7 fails too (its CommitAsync or its wait) without being
// written, and every later call is refused. Reopening recovers version 5
// exactly, and the store audits clean.
func TestCommitAsyncFailedWrite(t *testing.T) {
	ctx := context.Background()
	for _, atomicBatches := range []bool{false, true} {
		t.Run("atomic="+strconv.FormatBool(atomicBatches), func(t *testing.T) {
			r := rand.New(rand.NewPCG(4, 4))
			base := dssync.MutexWrap(ds.NewMapDatastore())
			var d ds.Batching
			var arm func()
			var cause error
			if atomicBatches {
				f := &failCommitDS{Batching: base}
				d, arm, cause = f, func() { f.armed.Store(true) }, errFailCommit
			} else {
				// Its own generator: the background write tears batches while
				// the test draws blocks.
				f := &tornDS{Batching: base, r: rand.New(rand.NewPCG(5, 5))}
				d, arm, cause = f, func() { f.armed = true }, errTorn
			}
			opts := Options{KeepVersions: 3, AtomicBatches: atomicBatches}
			s, err := Open(ctx, d, opts)
			if err != nil {
				t.Fatal(err)
			}
			m := newModel()
			for h := uint64(1); h <= 5; h++ {
				ws := randWrites(r, 300, 400)
				m.apply(ws)
				m.roots = append(m.roots, mustCommit(t, s, h, ws))
			}
			arm()
			_, wait6, err := s.CommitAsync(ctx, 6, randWrites(r, 300, 400))
			if err != nil {
				t.Fatalf("CommitAsync 6: %v", err)
			}
			_, wait7, err := s.CommitAsync(ctx, 7, randWrites(r, 300, 400))
			if err == nil {
				err = wait7()
			}
			if !errors.Is(err, ErrNeedsReopen) {
				t.Fatalf("version 7 after a failed write of 6: %v", err)
			}
			if err := wait6(); !errors.Is(err, cause) || !errors.Is(err, ErrNeedsReopen) {
				t.Fatalf("wait 6: %v", err)
			}
			if _, _, err := s.CommitAsync(ctx, 7, nil); !errors.Is(err, ErrNeedsReopen) {
				t.Fatalf("CommitAsync after the failure: %v", err)
			}
			if h, _ := s.Latest(); h != 5 {
				t.Fatalf("latest %d after failed writes, want 5", h)
			}

			s2, err := Open(ctx, base, opts)
			if err != nil {
				t.Fatal(err)
			}
			if h, root := s2.Latest(); h != 5 || root != m.roots[5] {
				t.Fatalf("reopened at %d %s, want 5 %s", h, root, m.roots[5])
			}
			auditClean(t, s2)
			ws := randWrites(r, 300, 400)
			m.apply(ws)
			if root := mustCommit(t, s2, 6, ws); root != refRoot(m.versions[6]) {
				t.Fatal("commit after recovery: wrong root")
			}
			auditClean(t, s2)
		})
	}
}
