package trust

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ChangeFunc is told of every reload of a Holder: an accepted one (new is
// the registry now in force, err nil) or a refused one (new nil, err a
// *RefusedError; old keeps serving). Audit entries and logs hang off this
// hook (STYLE 17), as they do off the policy engine's.
type ChangeFunc func(old, new *Registry, err error)

// RefusedError is a registry reload that was refused: the digest of the
// files refused, and why.
type RefusedError struct {
	Digest string
	Err    error
}

func (e *RefusedError) Error() string { return e.Err.Error() }

func (e *RefusedError) Unwrap() error { return e.Err }

// hooks are a Holder's OnChange functions.
type hooks struct {
	mu sync.Mutex
	fs []ChangeFunc
}

// OnChange registers f to be called after every accepted or refused
// reload, in registration order, on the reloading goroutine. f must not
// call Reload.
func (h *Holder) OnChange(f ChangeFunc) {
	if f == nil {
		return
	}
	h.hooks.mu.Lock()
	defer h.hooks.mu.Unlock()
	h.hooks.fs = append(h.hooks.fs, f)
}

func (h *Holder) changed(old, new *Registry, err error) {
	h.hooks.mu.Lock()
	fs := append([]ChangeFunc(nil), h.hooks.fs...)
	h.hooks.mu.Unlock()
	for _, f := range fs {
		f(old, new, err)
	}
}

// Watch reloads the registry at path whenever its folder's registry, key
// and certificate files change (a participant's key rotation, a
// suspension), checking every interval until ctx ends. A bad registry is
// refused and the one in force keeps serving; either way the OnChange
// hooks are told.
func (h *Holder) Watch(ctx context.Context, path string, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	last := Digest(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := Digest(path)
		if d == last {
			continue
		}
		last = d
		if err := h.Reload(path); err != nil {
			log.Error("registry change refused; the previous registry keeps serving", "error", err)
			continue
		}
		log.Info("registry reloaded", "participants", len(h.Load().Participants()))
	}
}

// Digest hashes the registry file and the files beside it that it may
// name (keys and certificates), so that a replaced key is seen: "" when
// nothing can be read.
func Digest(path string) string {
	h := sha256.New()
	_ = filepath.WalkDir(filepath.Dir(path), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		ext := filepath.Ext(p)
		if ext != ".yaml" && ext != ".jwk" && ext != ".crt" && ext != ".pem" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		h.Write([]byte(p))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// reloadError wraps a refused reload for the hooks.
func reloadError(path string, err error) error {
	return &RefusedError{Digest: Digest(path), Err: fmt.Errorf("trust: reload: %w", err)}
}
