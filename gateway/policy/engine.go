package policy

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Engine serves decisions from the last good bundle. A new bundle is
// compiled and tested aside and swapped in atomically only when all its
// tests and scenarios pass; a bad one is refused and the old one keeps
// serving.
type Engine struct {
	opts    Options
	log     *slog.Logger
	current atomic.Pointer[Bundle]

	reload      sync.Mutex // one reload at a time
	mu          sync.Mutex // guards lastErr, lastErrAt, lastRefused, onChange
	lastErr     string
	lastErrAt   time.Time
	lastRefused string
	onChange    []ChangeFunc
}

// Status describes the bundle in service and the last refused reload.
type Status struct {
	Version     string    `json:"version"`
	Modules     []string  `json:"modules"`
	LoadedAt    time.Time `json:"loaded_at"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastRefusedVersion is the digest of the files last refused.
	LastRefusedVersion string `json:"last_refused_version,omitempty"`
}

// NewEngine compiles and tests the policies of fsys and refuses to start
// unless every Rego test and scenario passes.
func NewEngine(ctx context.Context, fsys fs.FS, opts Options) (*Engine, error) {
	opts = opts.withDefaults()
	e := &Engine{opts: opts, log: opts.Logger.With("component", "policy")}
	b, err := e.build(ctx, fsys)
	if err != nil {
		return nil, err
	}
	e.current.Store(b)
	e.log.Info("policy loaded", "version", b.Version, "modules", len(b.Modules))
	return e, nil
}

// build compiles fsys and runs its tests; it returns a bundle only when
// everything passes. With Options.Vet, the tests run there first, and the
// bundle is compiled here only when they passed. The files are read once
// (Snapshot): what was tested is what is compiled and remembered, even if
// the folder changes meanwhile.
func (e *Engine) build(ctx context.Context, fsys fs.FS) (*Bundle, error) {
	snap, err := Snapshot(fsys)
	if err != nil {
		return nil, err
	}
	version, err := Digest(snap)
	if err != nil {
		return nil, err
	}
	unlock, err := e.opts.Verdicts.lock(ctx, version)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if e.opts.Verdicts.passed(version) {
		e.log.Info("policy version passed its tests and scenarios before, under this program; not run again", "version", version)
		return Compile(ctx, snap, e.opts)
	}
	var b *Bundle
	var rep TestReport
	if e.opts.Vet != nil {
		if rep, err = e.opts.Vet(ctx, snap); err != nil {
			return nil, err
		}
		if err := rep.Err(); err != nil {
			return nil, err
		}
		if b, err = Compile(ctx, snap, e.opts); err != nil {
			return nil, err
		}
	} else {
		if b, err = Compile(ctx, snap, e.opts); err != nil {
			return nil, err
		}
		if rep, err = b.Test(ctx); err != nil {
			return nil, err
		}
		if err := rep.Err(); err != nil {
			return nil, err
		}
	}
	if err := e.opts.Verdicts.remember(b.Version, rep); err != nil {
		e.log.Warn("could not remember the policy's verdict; the next start tests it again", "error", err)
	}
	return b, nil
}

// Decide answers with the bundle in service (see Bundle.Decide).
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	return e.current.Load().Decide(ctx, in)
}

// Current is the bundle in service.
func (e *Engine) Current() *Bundle { return e.current.Load() }

// Reload compiles and tests fsys aside and swaps it in only if all passes.
// Otherwise the bundle in service stays, and the error is remembered
// (Status) and returned.
func (e *Engine) Reload(ctx context.Context, fsys fs.FS) error {
	e.reload.Lock()
	defer e.reload.Unlock()
	b, err := e.build(ctx, fsys)
	if err != nil {
		refused := &RefusedError{Err: err, At: time.Now().UTC()}
		refused.Version, _ = Digest(fsys)
		e.mu.Lock()
		e.lastErr, e.lastErrAt, e.lastRefused = err.Error(), refused.At, refused.Version
		e.mu.Unlock()
		e.log.Warn("policy reload refused", "version", e.Current().Version, "refused", refused.Version, "error", err)
		e.changed(e.Current(), nil, refused)
		return refused
	}
	old := e.current.Swap(b)
	e.mu.Lock()
	e.lastErr, e.lastErrAt = "", time.Time{}
	e.mu.Unlock()
	e.log.Info("policy reloaded", "version", b.Version, "previous", old.Version, "modules", len(b.Modules))
	e.changed(old, b, nil)
	return nil
}

// Status reports the bundle in service and the last refused reload, if the
// last reload was refused.
func (e *Engine) Status() Status {
	b := e.current.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{
		Version:     b.Version,
		Modules:     slices.Clone(b.Modules),
		LoadedAt:    b.LoadedAt,
		LastError:   e.lastErr,
		LastErrorAt: e.lastErrAt,

		LastRefusedVersion: e.lastRefused,
	}
}

// Steady tells a folder watcher when to act on an edit: once the folder's
// digest reads the same at two polls in a row. A file an editor is still
// writing in place would otherwise be tested half-written, refused and
// audited as an edit.
type Steady struct{ pending string }

// Twice reports whether v is the digest the previous poll read too.
func (s *Steady) Twice(v string) bool {
	if v != s.pending {
		s.pending = v
		return false
	}
	s.pending = ""
	return true
}

// Reset forgets the digest read last (the folder is back to what serves).
func (s *Steady) Reset() { s.pending = "" }

// Watch polls the digest of dir's .rego and data files every interval and
// reloads from it when the digest changes and reads the same at the next
// poll, until ctx ends. A refused version is not retried until the files
// change again.
func (e *Engine) Watch(ctx context.Context, dir string, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	fsys := os.DirFS(dir)
	seen, steady := e.Current().Version, Steady{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := Digest(fsys)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				e.log.Warn("policy watch: cannot read the policy directory", "error", err)
			}
			continue
		}
		if v == seen {
			steady.Reset()
			continue
		}
		if !steady.Twice(v) {
			continue
		}
		seen = v
		if v == e.Current().Version {
			// Back to the files in service (an edit undone after its
			// version was refused): nothing new to test or serve.
			e.log.Info("policy watch: the files are the version in service again; nothing reloaded", "version", v)
			continue
		}
		if err := e.Reload(ctx, fsys); err == nil {
			e.log.Info("policy watch: new version in service", "version", v)
		}
	}
}
