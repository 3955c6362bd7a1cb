package state

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// crashDir is where the crash tests keep the database inside a MemFS.
const crashDir = "/db"

// OpenOnFS (exported for the state_test package) opens go-ds-pebble on fs with synced (or, for the negative
// control, unsynced) writes. The pebble logger is silenced: the crash tests
// open hundreds of databases.
func OpenOnFS(t testing.TB, fs vfs.FS, sync bool) *pebbleds.Datastore {
	t.Helper()
	wo := pebble.Sync
	if !sync {
		wo = pebble.NoSync
	}
	// Pebble's defaults (small memtables: the tests flush and compact),
	// with the store's span policy, so that the crashes also fall while
	// tables are cut at namespace bounds.
	o := &pebble.Options{FS: fs, Logger: quietLogger{}}
	o.Experimental.SpanPolicyFunc = namespaceSpans
	d, err := pebbleds.NewDatastore(crashDir,
		pebbleds.WithPebbleOpts(o),
		pebbleds.WithPebbleWriteOptions(wo))
	if err != nil {
		t.Fatalf("open pebble on crash fs: %v", err)
	}
	return d
}

// Crash simulates a power loss: the returned filesystem holds only what was
// synced on fs. The caller abandons the database open on fs without closing
// it, since Close would flush memtables that a real crash loses.
func Crash(fs *vfs.MemFS) *vfs.MemFS { return fs.CrashClone(vfs.CrashCloneCfg{}) }

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic("pebble fatal: " + format)
}

// CrashPointFS counts the write-side operations that reach a crashable
// MemFS (file writes and syncs, creates, renames, removes, links) and, when
// the count reaches Target, takes a crash clone of the filesystem at that
// exact moment. Pebble's background flushes and compactions go through it
// too, so the clone can fall inside any of them. OnCrash runs in the
// goroutine that hit the point, before the operation itself.
type CrashPointFS struct {
	vfs.FS
	mem    *vfs.MemFS
	cfg    vfs.CrashCloneCfg
	target int64
	n      atomic.Int64
	once   sync.Once

	// OnCrash, if set, is called once when the clone is taken.
	OnCrash func()
	clone   atomic.Pointer[vfs.MemFS]
}

// NewCrashPointFS wraps mem; target 0 never crashes (it only counts).
func NewCrashPointFS(mem *vfs.MemFS, target int64, cfg vfs.CrashCloneCfg) *CrashPointFS {
	return &CrashPointFS{FS: mem, mem: mem, target: target, cfg: cfg}
}

// Ops is the number of operations seen so far.
func (c *CrashPointFS) Ops() int64 { return c.n.Load() }

// Clone returns the filesystem as of the crash point, or nil if the point
// was not reached.
func (c *CrashPointFS) Clone() *vfs.MemFS { return c.clone.Load() }

func (c *CrashPointFS) point() {
	if c.n.Add(1) == c.target {
		c.once.Do(func() {
			if c.OnCrash != nil {
				c.OnCrash()
			}
			c.clone.Store(c.mem.CrashClone(c.cfg))
		})
	}
}

func (c *CrashPointFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &crashPointFile{File: f, fs: c}, nil
}

func (c *CrashPointFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	c.point()
	return c.wrap(c.FS.Create(name, cat))
}

func (c *CrashPointFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return c.wrap(c.FS.OpenReadWrite(name, cat, opts...))
}

func (c *CrashPointFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	c.point()
	return c.wrap(c.FS.ReuseForWrite(oldname, newname, cat))
}

func (c *CrashPointFS) OpenDir(name string) (vfs.File, error) { return c.wrap(c.FS.OpenDir(name)) }

func (c *CrashPointFS) Link(oldname, newname string) error {
	c.point()
	return c.FS.Link(oldname, newname)
}

func (c *CrashPointFS) Remove(name string) error {
	c.point()
	return c.FS.Remove(name)
}

func (c *CrashPointFS) Rename(oldname, newname string) error {
	c.point()
	return c.FS.Rename(oldname, newname)
}

type crashPointFile struct {
	vfs.File
	fs *CrashPointFS
}

func (f *crashPointFile) Write(p []byte) (int, error) {
	f.fs.point()
	return f.File.Write(p)
}

func (f *crashPointFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.point()
	return f.File.WriteAt(p, off)
}

func (f *crashPointFile) Sync() error {
	f.fs.point()
	return f.File.Sync()
}

func (f *crashPointFile) SyncData() error {
	f.fs.point()
	return f.File.SyncData()
}

func (f *crashPointFile) SyncTo(length int64) (bool, error) {
	f.fs.point()
	return f.File.SyncTo(length)
}

// OpenOnFSStore opens a store over OpenOnFS with synced, atomic batches, as
// OpenPebble does on disk.
func OpenOnFSStore(t testing.TB, fs vfs.FS, opts Options) *Store {
	t.Helper()
	d := OpenOnFS(t, fs, true)
	opts.AtomicBatches = true
	s, err := Open(context.Background(), d, opts)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	s.closer = d
	// As OpenPebble does: commits and pruner chunks go to pebble directly
	// (sized synced batches, unsynced chunks), so the crash tests cover
	// those paths.
	s.pdb = d.DB
	t.Cleanup(func() { s.Close() })
	return s
}
