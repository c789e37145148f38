package policy

import (
	"fmt"
	"time"
)

// ChangeFunc is told of every reload: an accepted one (new is the bundle
// now in service, err nil) or a refused one (new nil, err a *RefusedError;
// old keeps serving).
type ChangeFunc func(old, new *Bundle, err error)

// RefusedError is a reload that was refused: the digest of the files that
// were refused, when, and why.
type RefusedError struct {
	Version string // the digest the refused files would have carried ("" when they could not be read)
	At      time.Time
	Err     error
}

func (e *RefusedError) Error() string { return e.Err.Error() }

func (e *RefusedError) Unwrap() error { return e.Err }

// OnChange registers f to be called after every accepted or refused
// reload, in registration order, on the reloading goroutine (one reload at
// a time). f must not call Reload. Audit entries and metrics hang off this
// hook instead of polling Status.
func (e *Engine) OnChange(f ChangeFunc) {
	if f == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onChange = append(e.onChange, f)
}

func (e *Engine) changed(old, new *Bundle, err error) {
	e.mu.Lock()
	fs := append([]ChangeFunc(nil), e.onChange...)
	e.mu.Unlock()
	for _, f := range fs {
		func() {
			defer func() {
				if v := recover(); v != nil {
					e.log.Error("policy change hook panicked", "panic", fmt.Sprint(v))
				}
			}()
			f(old, new, err)
		}()
	}
}
