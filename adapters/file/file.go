// Package file is the air-gapped drop of PROTOCOL §4: each envelope is
// written atomically as <dir>/<delivery_id>.jwe, mode 0600, for a transfer
// tool (a data diode, removable media) to carry to the recipient.
//
// A write goes to a temporary file in the same directory (named with the
// TempPrefix, which the transfer tool must skip), is synced, renamed into
// place and the directory synced, so the final name only ever holds a
// complete envelope. Redelivering an envelope already dropped with the same
// content succeeds without rewriting it.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/xborder/xborder/adapters"
)

// Ext is the extension of a dropped envelope.
const Ext = ".jwe"

// TempPrefix starts the name of a file being written; such a file is never
// a complete envelope.
const TempPrefix = ".tmp-"

// ErrConflict is returned (wrapped) when <delivery_id>.jwe already exists
// with a different envelope. The existing file is left as it is.
var ErrConflict = errors.New("file: delivery already dropped with a different envelope")

// Drop writes envelopes into one directory. It is safe for concurrent use
// with distinct delivery ids; the delivery worker never delivers one id
// twice at the same time.
type Drop struct {
	dir string
	ext string
}

var _ adapters.Adapter = (*Drop)(nil)

// CheckDir reports whether dir can name a drop: not empty, absolute, and
// not an existing file. The trust registry checks every file delivery with
// it when it loads (after resolving a relative dir against the registry's
// folder), so that a bad dir is refused there, not at the first delivery;
// New checks that it can write there.
func CheckDir(dir string) error {
	switch {
	case strings.TrimSpace(dir) == "":
		return errors.New("file: dir is required")
	case strings.IndexByte(dir, 0) >= 0:
		return errors.New("file: dir holds a NUL byte")
	case !filepath.IsAbs(dir):
		return errors.New("file: dir must be absolute")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("file: dir %s is not a directory", dir)
	}
	return nil
}

// New returns a drop into dir, creating it with mode 0700 if it does not
// exist. dir is made absolute and its symbolic links resolved once, here.
// New checks that a file can be created in dir.
func New(dir string) (*Drop, error) {
	return NewWithExt(dir, Ext)
}

// NewWithExt is New for files named <delivery_id><ext>: a participant's
// edge drops its hand-overs as plain JSON documents (ext ".json").
func NewWithExt(dir, ext string) (*Drop, error) {
	if ext != Ext && ext != ".json" {
		return nil, fmt.Errorf("file: extension %q is neither %s nor .json", ext, Ext)
	}
	if strings.TrimSpace(dir) == "" {
		return nil, errors.New("file: dir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file: dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("file: dir: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("file: dir: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("file: dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file: dir %s is not a directory", abs)
	}
	probe, err := os.CreateTemp(abs, TempPrefix+"probe-")
	if err != nil {
		return nil, fmt.Errorf("file: dir is not writable: %w", err)
	}
	_ = probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, fmt.Errorf("file: dir: %w", err)
	}
	return &Drop{dir: abs, ext: ext}, nil
}

// Dir returns the absolute directory the drop writes into.
func (d *Drop) Dir() string { return d.dir }

// Path returns where the envelope of a delivery id is dropped, or an error
// if id is not a UUID in its 36-character text form. The name is in lower
// case.
func (d *Drop) Path(id string) (string, error) {
	if len(id) != 36 {
		return "", errors.New("file: delivery id is not a uuid")
	}
	if _, err := uuid.Parse(id); err != nil {
		return "", errors.New("file: delivery id is not a uuid")
	}
	p := filepath.Join(d.dir, strings.ToLower(id)+d.ext)
	if filepath.Dir(p) != d.dir { // cannot happen for a uuid; kept as the invariant
		return "", errors.New("file: delivery path escapes the drop directory")
	}
	return p, nil
}

// Deliver writes the envelope to <dir>/<delivery_id>.jwe. The file system
// calls cannot be interrupted: ctx is checked before each step.
func (d *Drop) Deliver(ctx context.Context, dl adapters.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: deliver: %w", err)
	}
	final, err := d.Path(dl.ID)
	if err != nil {
		return err
	}
	if len(dl.Envelope) == 0 {
		return fmt.Errorf("file: delivery %s: empty envelope", dl.ID)
	}

	switch same, err := sameContent(final, dl.Envelope); {
	case errors.Is(err, ErrConflict):
		return fmt.Errorf("%w (delivery %s)", ErrConflict, dl.ID)
	case err != nil:
		return fmt.Errorf("file: delivery %s: %w", dl.ID, err)
	case same:
		// Dropped before; the directory entry may not have been synced if
		// that attempt failed after its rename.
		if err := syncDir(d.dir); err != nil {
			return fmt.Errorf("file: delivery %s: %w", dl.ID, err)
		}
		return nil
	}

	if err := d.write(ctx, final, dl.Envelope); err != nil {
		return fmt.Errorf("file: delivery %s: %w", dl.ID, err)
	}
	return nil
}

// sameContent reports whether path holds exactly want. A missing file is
// not the same; a different file is ErrConflict.
func sameContent(path string, want []byte) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, errors.New("its name is taken by something other than a regular file")
	case fi.Size() != int64(len(want)):
		return false, ErrConflict
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(got, want) {
		return false, ErrConflict
	}
	return true, nil
}

func (d *Drop) write(ctx context.Context, final string, envelope []byte) (err error) {
	tmp, err := os.CreateTemp(d.dir, TempPrefix) // mode 0600
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(envelope); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	renamed = true
	return syncDir(d.dir)
}

// syncDir makes the directory's entries (the rename) durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
