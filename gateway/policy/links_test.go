package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

// A policy folder's symbolic links may point inside it, not out of it —
// directly, through a chain, or through a link in a hidden folder that the
// walk skips.
func TestPolicyFolderLinks(t *testing.T) {
	t.Parallel()
	fresh := func(t *testing.T) (dir, outside string) {
		t.Helper()
		root := t.TempDir()
		dir, outside = filepath.Join(root, "policies"), filepath.Join(root, "outside")
		if err := os.CopyFS(dir, policies.FS()); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(outside, 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "decision.rego"))
		if err := os.WriteFile(filepath.Join(outside, "decision.rego"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, ".hidden"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "decision.rego")); err != nil {
			t.Fatal(err)
		}
		return dir, outside
	}
	link := func(t *testing.T, target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir, outside string)
		ok   bool
	}{
		{"absolute, out", func(t *testing.T, dir, outside string) {
			link(t, filepath.Join(outside, "decision.rego"), filepath.Join(dir, "decision.rego"))
		}, false},
		{"relative, out", func(t *testing.T, dir, outside string) {
			link(t, "../outside/decision.rego", filepath.Join(dir, "decision.rego"))
		}, false},
		{"through a hidden link, out", func(t *testing.T, dir, outside string) {
			link(t, "../../outside/decision.rego", filepath.Join(dir, ".hidden", "l"))
			link(t, ".hidden/l", filepath.Join(dir, "decision.rego"))
		}, false},
		{"a folder link, then out", func(t *testing.T, dir, outside string) {
			// scenarios/up → . (the top), so scenarios/up/../outside is out.
			link(t, "..", filepath.Join(dir, "scenarios", "up"))
			link(t, "scenarios/up/../outside/decision.rego", filepath.Join(dir, "decision.rego"))
		}, false},
		{"inside", func(t *testing.T, dir, outside string) {
			b, _ := os.ReadFile(filepath.Join(outside, "decision.rego"))
			os.WriteFile(filepath.Join(dir, ".hidden", "decision.rego"), b, 0o600)
			link(t, ".hidden/decision.rego", filepath.Join(dir, "decision.rego"))
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, outside := fresh(t)
			c.make(t, dir, outside)
			_, err := policy.Digest(os.DirFS(dir))
			if c.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "out of the policy folder")) {
				t.Errorf("digest: %v", err)
			}
		})
	}
	// A named pipe would be waited on for ever.
	t.Run("a named pipe", func(t *testing.T) {
		dir, _ := fresh(t)
		pipe := filepath.Join(dir, "decision.rego")
		if err := syscall.Mkfifo(pipe, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := policy.Digest(os.DirFS(dir))
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("digest: %v", err)
			}
		case <-time.After(30 * time.Second):
			// Let the reader go: open the pipe for writing, then close it.
			if f, err := os.OpenFile(pipe, os.O_WRONLY, 0); err == nil {
				f.Close()
			}
			t.Error("reading the policy folder waited on a named pipe")
		}
	})
	// Compile (what policy impact --candidate and a reload call) refuses.
	dir, outside := fresh(t)
	link(t, filepath.Join(outside, "decision.rego"), filepath.Join(dir, "decision.rego"))
	if _, err := policy.Compile(context.Background(), os.DirFS(dir), policy.Options{}); err == nil || !strings.Contains(err.Error(), "out of the policy folder") {
		t.Errorf("compile: %v", err)
	}
}
