package policy

import (
	"context"
	"io/fs"
	"sync"
	"time"
)

// CompileCache keeps the bundles compiled with it (Options.Cache), by
// their files and their deadline, for a process that compiles the same
// policy many times: tests that start a gateway each. A bundle is
// immutable, so the bundle Compile returns from the cache shares
// everything with the one compiled first but its options, its file system
// (the scenarios its Test reads) and LoadedAt. A compile that fails is not
// kept. The zero value is ready for use; it is safe for concurrent use,
// and callers of the same files wait for one compile.
type CompileCache struct {
	mu      sync.Mutex
	bundles map[compileKey]*compiled
}

// compileKey: the seeds evaluated at compile are bounded by the deadline.
type compileKey struct {
	version string
	seed    time.Duration
}

type compiled struct {
	done chan struct{} // closed when b and err are set
	b    *Bundle
	err  error
}

func (c *CompileCache) compile(ctx context.Context, fsys fs.FS, files []policyFile, opts Options) (*Bundle, error) {
	key := compileKey{version: digest(files), seed: seedTimeout(opts.Timeout)}
	for {
		c.mu.Lock()
		if c.bundles == nil {
			c.bundles = map[compileKey]*compiled{}
		}
		e, found := c.bundles[key]
		if !found {
			e = &compiled{done: make(chan struct{})}
			c.bundles[key] = e
		}
		c.mu.Unlock()
		if !found {
			e.b, e.err = compile(ctx, fsys, files, opts)
			if e.err != nil {
				c.mu.Lock()
				delete(c.bundles, key)
				c.mu.Unlock()
			}
			close(e.done)
			return e.b, e.err
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err == nil {
			b := *e.b
			b.fsys, b.opts, b.LoadedAt = fsys, opts, time.Now().UTC()
			return &b, nil
		}
		// That compile failed (perhaps by its own context): this caller
		// compiles, or waits for whoever came first.
	}
}
