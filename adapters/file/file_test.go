package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/adapters/adaptertest"
	"github.com/xborder/xborder/adapters/file"
)

// received reads the drop directory as the recipient's transfer tool does:
// every <id>.jwe, skipping files still being written.
func received(t *testing.T, dir string) []adapters.Delivery {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read drop dir: %v", err)
	}
	var ds []adapters.Delivery
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, file.TempPrefix) || !strings.HasSuffix(name, file.Ext) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, adapters.Delivery{ID: strings.TrimSuffix(name, file.Ext), Envelope: b})
	}
	return ds
}

// names lists the directory's entries, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	slices.Sort(ns)
	return ns
}

func newDrop(t *testing.T, dir string) *file.Drop {
	t.Helper()
	d, err := file.New(dir)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	return d
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{New: func(t *testing.T) adaptertest.Target {
		dir := filepath.Join(t.TempDir(), "drop")
		drop := newDrop(t, dir)
		return adaptertest.Target{
			Adapter:  drop,
			Received: func(t *testing.T) []adapters.Delivery { return received(t, dir) },
			// The tests may run as root, for whom a read-only directory is
			// still writable: the drop directory goes away instead, as an
			// unmounted medium would.
			Fail: func(t *testing.T, on bool) {
				from, to := dir, dir+".away"
				if !on {
					from, to = to, from
				}
				if err := os.Rename(from, to); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

func TestNew(t *testing.T) {
	base := t.TempDir()
	notDir := filepath.Join(base, "plain")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(filepath.Join(base, "target"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "target"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		dir     string
		wantDir string // empty: want an error
	}{
		{name: "existing", dir: base, wantDir: base},
		{name: "created", dir: filepath.Join(base, "a", "b"), wantDir: filepath.Join(base, "a", "b")},
		{name: "cleaned", dir: base + "/a/../c/", wantDir: filepath.Join(base, "c")},
		{name: "symlink resolved", dir: link, wantDir: filepath.Join(base, "target")},
		{name: "empty", dir: ""},
		{name: "blank", dir: "  "},
		{name: "a file", dir: notDir},
		{name: "under a file", dir: filepath.Join(notDir, "sub")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := file.New(tc.dir)
			if tc.wantDir == "" {
				if err == nil {
					t.Fatalf("New(%q) = nil error, want an error", tc.dir)
				}
				if !strings.HasPrefix(err.Error(), "file: ") {
					t.Errorf("error %q does not start with the package name", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q) = %v", tc.dir, err)
			}
			if d.Dir() != tc.wantDir {
				t.Errorf("Dir() = %q, want %q", d.Dir(), tc.wantDir)
			}
			fi, err := os.Stat(d.Dir())
			if err != nil || !fi.IsDir() {
				t.Fatalf("drop dir: %v", err)
			}
			if left := names(t, d.Dir()); slices.ContainsFunc(left, func(n string) bool { return strings.HasPrefix(n, file.TempPrefix) }) {
				t.Errorf("New left %v behind", left)
			}
		})
	}

	t.Run("relative", func(t *testing.T) {
		t.Chdir(base)
		d := newDrop(t, "rel")
		if d.Dir() != filepath.Join(base, "rel") {
			t.Errorf("Dir() = %q, want %q", d.Dir(), filepath.Join(base, "rel"))
		}
	})
	t.Run("created with mode 0700", func(t *testing.T) {
		d := newDrop(t, filepath.Join(base, "fresh"))
		fi, err := os.Stat(d.Dir())
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&^0o700 != 0 {
			t.Errorf("mode = %v, want no access beyond the owner", perm)
		}
	})
}

// TestPathTraversal: no delivery id writes outside the drop directory.
func TestPathTraversal(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "drop")
	drop := newDrop(t, dir)
	d := adaptertest.NewDelivery(t, 64)
	for _, id := range []string{
		"../escape",
		"../" + d.ID[3:],
		"..%2fescape",
		"/" + d.ID[1:],
		d.ID + "/../../escape",
		"..",
		".",
		"",
	} {
		t.Run(id, func(t *testing.T) {
			dl := d
			dl.ID = id
			if err := drop.Deliver(context.Background(), dl); err == nil {
				t.Errorf("Deliver(id %q) = nil, want an error", id)
			}
			if _, err := drop.Path(id); err == nil {
				t.Errorf("Path(%q) = nil error, want an error", id)
			}
		})
	}
	if got := names(t, root); !slices.Equal(got, []string{"drop"}) {
		t.Errorf("beside the drop dir: %v, want only drop", got)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("in the drop dir: %v, want nothing", got)
	}
}

func TestDeliver(t *testing.T) {
	dir := t.TempDir()
	drop := newDrop(t, dir)
	d := adaptertest.NewDelivery(t, 1024)
	if err := drop.Deliver(context.Background(), d); err != nil {
		t.Fatalf("Deliver = %v", err)
	}
	want := d.ID + file.Ext
	if got := names(t, dir); !slices.Equal(got, []string{want}) {
		t.Fatalf("drop dir holds %v, want only %s (no temporary files)", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, want))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %v, want 0600", perm)
	}

	t.Run("upper-case id lands on the lower-case name", func(t *testing.T) {
		up := d
		up.ID = strings.ToUpper(d.ID)
		if err := drop.Deliver(context.Background(), up); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
		if got := names(t, dir); !slices.Equal(got, []string{want}) {
			t.Errorf("drop dir holds %v, want only %s", got, want)
		}
	})

	t.Run("a different envelope under the same id is a conflict", func(t *testing.T) {
		other := d
		other.Envelope = append([]byte(nil), d.Envelope...)
		other.Envelope[len(other.Envelope)-1] ^= 1
		err := drop.Deliver(context.Background(), other)
		if !errors.Is(err, file.ErrConflict) {
			t.Fatalf("Deliver = %v, want ErrConflict", err)
		}
		if strings.Contains(err.Error(), string(d.Envelope[:20])) {
			t.Errorf("error %q carries envelope bytes", err)
		}
		got, err := os.ReadFile(filepath.Join(dir, want))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(d.Envelope) {
			t.Error("the dropped envelope was overwritten")
		}
	})

	t.Run("the name taken by a directory", func(t *testing.T) {
		taken := adaptertest.NewDelivery(t, 64)
		if err := os.Mkdir(filepath.Join(dir, taken.ID+file.Ext), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := drop.Deliver(context.Background(), taken); err == nil {
			t.Fatal("Deliver = nil, want an error")
		}
		if got := names(t, dir); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, file.TempPrefix) }) {
			t.Errorf("temporary file left behind: %v", got)
		}
	})

	t.Run("a context ending mid-write leaves no temporary file", func(t *testing.T) {
		late := adaptertest.NewDelivery(t, 64)
		ctx := &endsAfter{Context: context.Background(), checks: 1}
		err := drop.Deliver(ctx, late)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Deliver = %v, want context.Canceled", err)
		}
		if ctx.checks > 0 {
			t.Fatal("Deliver did not check the context again before the rename")
		}
		for _, n := range names(t, dir) {
			if strings.HasPrefix(n, file.TempPrefix) || n == late.ID+file.Ext {
				t.Errorf("%s left behind", n)
			}
		}
	})
}

// endsAfter is a context that reports itself canceled once Err has been
// called checks times: it ends between two steps of a write.
type endsAfter struct {
	context.Context
	checks int
}

func (c *endsAfter) Err() error {
	if c.checks > 0 {
		c.checks--
		return nil
	}
	return context.Canceled
}
