package policy

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

func cacheFiles(limit string) fstest.MapFS {
	return fstest.MapFS{"decision.rego": {Data: []byte(`package xborder

decision := {"allow": input.message.n < ` + limit + `, "reasons": [], "redact": [], "obligations": {"retention_days": 1, "review": false}}
`)}}
}

// The same files with the same deadline are compiled once; every caller
// gets its own options and file system; other files, another deadline or a
// failed compile are not served from the cache.
func TestCompileCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var c CompileCache
	logA, logB := slog.New(slog.NewTextHandler(io.Discard, nil)), slog.New(slog.NewJSONHandler(io.Discard, nil))
	filesA, filesB := cacheFiles("10"), cacheFiles("10")

	var wg sync.WaitGroup
	got := make([]*Bundle, 4)
	for i := range got {
		wg.Go(func() {
			log, files := logA, filesA
			if i%2 == 1 {
				log, files = logB, filesB
			}
			b, err := Compile(ctx, files, Options{Timeout: testTimeout, Logger: log, Cache: &c})
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = b
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, b := range got {
		if b.compiler != got[0].compiler || b.seeds != got[0].seeds || b.Version != got[0].Version {
			t.Errorf("bundle %d was compiled again", i)
		}
		wantLog, wantFS := logA, filesA
		if i%2 == 1 {
			wantLog, wantFS = logB, filesB
		}
		if b.opts.Logger != wantLog || b.fsys.(fstest.MapFS)["decision.rego"] != wantFS["decision.rego"] {
			t.Errorf("bundle %d carries another caller's options or files", i)
		}
		d, err := b.Decide(ctx, Input{Message: map[string]any{"n": 3}})
		if err != nil || !d.Allow {
			t.Errorf("bundle %d: %+v %v", i, d, err)
		}
	}

	other, err := Compile(ctx, cacheFiles("2"), Options{Timeout: testTimeout, Cache: &c})
	if err != nil {
		t.Fatal(err)
	}
	if other.Version == got[0].Version || other.compiler == got[0].compiler {
		t.Error("other files served from the cache")
	}
	// The data-only rules are evaluated under the deadline (seedTimeout).
	if b, err := Compile(ctx, filesA, Options{Timeout: time.Second, Cache: &c}); err != nil || b.compiler == got[0].compiler {
		t.Errorf("another deadline served from the cache: %v", err)
	}

	bad := fstest.MapFS{"decision.rego": {Data: []byte("package xborder\n\ndecision := http.send({})\n")}}
	for range 2 {
		if _, err := Compile(ctx, bad, Options{Timeout: testTimeout, Cache: &c}); err == nil {
			t.Fatal("a policy calling http.send compiled")
		}
	}
	c.mu.Lock()
	n := len(c.bundles)
	c.mu.Unlock()
	if n != 3 {
		t.Errorf("%d bundles kept, want 3 (a failed compile is not kept)", n)
	}
}
