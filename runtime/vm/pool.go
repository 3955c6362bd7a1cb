package vm

import (
	"context"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// Pool keeps restored instances of one Code for reuse. Acquire hands out
// an idle instance (restored to its post-_initialize snapshot) or a new
// one; Release keeps a healthy instance if fewer than Config.PoolIdleMax
// are idle and closes it otherwise. A pool is safe for use by several
// goroutines; an acquired instance belongs to its goroutine.
type Pool struct {
	code *Code
	max  int
	mu   sync.Mutex
	idle []*Instance
}

// NewPool returns an empty pool of c's instances.
func (c *Code) NewPool() *Pool { return &Pool{code: c, max: c.e.cfg.PoolIdleMax} }

// Acquire returns an instance in its post-_initialize state: memory and
// every global restored, gas_left 0 (the caller sets it).
func (p *Pool) Acquire(ctx context.Context) (*Instance, error) {
	p.mu.Lock()
	var in *Instance
	if n := len(p.idle); n > 0 {
		in, p.idle = p.idle[n-1], p.idle[:n-1]
	}
	p.mu.Unlock()
	if in != nil {
		in.Restore()
		return in, nil
	}
	return p.code.Instantiate(ctx, Env{})
}

// Release returns an instance after a frame. failed (the frame did not end
// normally), a grown memory or a full pool close it: a trap can leave a
// guest's runtime inconsistent, and memory cannot shrink.
func (p *Pool) Release(ctx context.Context, in *Instance, failed bool) {
	if failed || in.Discarded() || in.grew() {
		in.Close(ctx)
		return
	}
	p.mu.Lock()
	keep := len(p.idle) < p.max
	if keep {
		p.idle = append(p.idle, in)
	}
	p.mu.Unlock()
	if !keep {
		in.Close(ctx)
	}
}

// Idle is the number of idle instances.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close closes the idle instances.
func (p *Pool) Close(ctx context.Context) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, in := range idle {
		in.Close(ctx)
	}
}

// Pools hands out pooled instances by code id, compiling a module on its
// first use, with the wazero modules as handles: the shape host.Instances
// and runtime/exec need. Safe for use by several goroutines; Acquire and
// Release of one frame come from one goroutine.
type Pools struct {
	e     *Engine
	mu    sync.Mutex
	pools map[string]*Pool
	out   map[api.Module]acquired // instances handed out
}

type acquired struct {
	in   *Instance
	pool *Pool
}

// NewPools returns an empty set of pools on e.
func (e *Engine) NewPools() *Pools {
	return &Pools{e: e, pools: map[string]*Pool{}, out: map[api.Module]acquired{}}
}

// Acquire returns a post-_initialize instance of the code codeID;
// instrumented loads its instrumented bytes the first time.
func (ps *Pools) Acquire(ctx context.Context, codeID string, instrumented func() ([]byte, error)) (api.Module, error) {
	ps.mu.Lock()
	p := ps.pools[codeID]
	ps.mu.Unlock()
	if p == nil {
		b, err := instrumented()
		if err != nil {
			return nil, err
		}
		code, err := ps.e.Compile(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("code %x: %w", codeID, err)
		}
		ps.mu.Lock()
		if p = ps.pools[codeID]; p == nil { // another goroutine may have won
			p = code.NewPool()
			ps.pools[codeID] = p
		}
		ps.mu.Unlock()
	}
	in, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	ps.out[in.mod] = acquired{in, p}
	ps.mu.Unlock()
	return in.mod, nil
}

// Export returns the export name of an acquired module, cached per
// instance (nil if there is none).
func (ps *Pools) Export(mod api.Module, name string) api.Function {
	ps.mu.Lock()
	a, ok := ps.out[mod]
	ps.mu.Unlock()
	if !ok {
		return nil
	}
	return a.in.Export(name)
}

// Release hands an acquired module back; failed: the frame did not end
// normally. Releasing a module that is not out is a no-op.
func (ps *Pools) Release(mod api.Module, failed bool) {
	ps.mu.Lock()
	a, ok := ps.out[mod]
	delete(ps.out, mod)
	ps.mu.Unlock()
	if ok {
		a.pool.Release(context.Background(), a.in, failed)
	}
}

// Close closes every idle instance.
func (ps *Pools) Close(ctx context.Context) {
	ps.mu.Lock()
	pools := ps.pools
	ps.pools = map[string]*Pool{}
	ps.mu.Unlock()
	for _, p := range pools {
		p.Close(ctx)
	}
}
