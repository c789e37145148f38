// Package bolt is the embedded store: one bbolt file on one machine, the
// gateway's default. The store's rules are kvstore's, over boltkv; this
// package keeps what is the file's own: its pages checked before bbolt
// reads them (pagecheck.go), a damaged file refused with an error that says
// what to do, compaction, free space in Ping, and the page check of `store
// check`.
//
// Every commit is one bbolt read-write transaction, fsynced before it
// returns (bbolt's default, kept), so a message Accept has returned
// survives a crash of the process or of the machine. The audit chains live
// in the same file: a change and its audit entry are one transaction and
// one fsync, both or neither.
//
// The layout is kvstore's. Deleting a key frees its page for reuse but does
// not overwrite it: the bytes of a purged envelope stay in the file's free
// pages until bbolt writes over them, or the file is compacted (Compact).
package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kvstore"
)

// Options tune Open. The zero value opens a store that keeps no audit
// entries of its own (Replica empty: a change with entries is refused).
type Options struct {
	// Timeout bounds the wait for the file lock held by another process
	// (default 1 s; bbolt's own default would wait forever).
	Timeout time.Duration
	// Replica names this gateway's audit chain: the entries of the store's
	// changes (Accept, RecordDenial, Ack, DeadLetter, Purge) go there.
	Replica string
	// Clock stamps those entries (default time.Now).
	Clock func() time.Time
	// ReadOnly opens the file for reading only, beside nobody: the audit
	// and store commands while the gateway is stopped.
	ReadOnly bool
	// Logger reports quarantined records (default slog.Default()).
	Logger *slog.Logger
	// OnQuarantine, when set, is told of each record moved to quarantine
	// (kind: "message", "delivery", "dead_letter"), for a metric.
	OnQuarantine func(kind string)
	// MinFree is the free space Ping wants on the file system of the file
	// (default 32 MiB; negative: none): below it a full disk is near, and
	// bbolt, which rewrites pages it already has, may still commit small
	// changes where a message of the body limit would fail.
	MinFree int64
	// Fault, when set, is called inside every change (op names it:
	// "accept", "deny", "ack", "dead letter", "purge", "append", "probe",
	// …) after its writes and before its audit entries are appended; an
	// error fails the change, and nothing of it is written
	// (kvstore.Options.Fault). For tests: a failed append, a full disk.
	Fault func(op string) error
}

// Store is the embedded store: kvstore over boltkv, and the file.
type Store struct {
	*kvstore.Store
	db   *boltkv.DB
	path string
}

var _ store.Store = (*Store)(nil)

// Open opens (or creates) the store at path. The parent directory is
// created with mode 0700 and the file with mode 0600. A damaged file is
// refused with an error that names it and says what to do (see Check),
// never a panic. A file of the earlier layout (nested queues and chains) is
// refused: its data is not where kvstore reads.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("bolt: open: empty path")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.MinFree == 0 {
		opts.MinFree = DefaultMinFree
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
		}
	}
	db, err := openKV(path, opts)
	if err != nil {
		return nil, err
	}
	err = db.Bolt(func(b *bbolt.DB) error {
		return b.View(func(tx *bbolt.Tx) error {
			if tx.Bucket([]byte("queues")) != nil || tx.Bucket([]byte("chains")) != nil {
				return fmt.Errorf("bolt: open: %s was written by an earlier version (nested queues and chains): "+
					"drain its queues and export its audit log with that version, then move it out of the way", path)
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	ko := kvstore.Options{Replica: opts.Replica, Clock: opts.Clock, Logger: log.With("file", path),
		OnQuarantine: opts.OnQuarantine, Fault: opts.Fault, Name: "bolt"}
	if min := opts.MinFree; min > 0 && !opts.ReadOnly {
		ko.Probe = func(context.Context) error {
			free, err := freeBytes(path)
			if err == nil && free < uint64(min) {
				err = &LowSpaceError{Path: path, Free: free, Want: uint64(min)}
			}
			return err
		}
	}
	return &Store{Store: kvstore.New(db, ko), db: db, path: path}, nil
}

// openKV checks the file's pages, then opens it; a damaged file is
// ErrDamaged, never a panic.
func openKV(path string, opts Options) (db *boltkv.DB, err error) {
	if err := checkFile(path); err != nil {
		return nil, damaged(path, err)
	}
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, damaged(path, fmt.Errorf("%v", p))
		}
	}()
	bo := boltkv.Options(opts.Timeout)
	bo.ReadOnly = opts.ReadOnly
	db, err = boltkv.OpenWith(path, bo)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: open: %s is locked (a running gateway holds it): %w: %w", path, store.ErrUnavailable, err)
	case errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch):
		return nil, damaged(path, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
	}
	return db, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Compact rewrites the file into a fresh one (boltkv.DB.Compact), so that
// purged payloads no longer hold their old bytes anywhere in the file.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.db.Compact(ctx); err != nil {
		return unavailable("compact", err)
	}
	return nil
}

// Check checks the file's pages (the walk of Open, then bbolt's own
// Tx.Check), then every record (kvstore.Check). It is `xborder store
// check`, run while the gateway is stopped.
func (s *Store) Check(ctx context.Context, w io.Writer) (err error) {
	if err := checkFile(s.path); err != nil {
		return damagedFile(s.path, "%v", err)
	}
	defer func() {
		if p := recover(); p != nil {
			err = damagedFile(s.path, "%v", p)
		}
	}()
	err = s.db.Bolt(func(b *bbolt.DB) error {
		return b.View(func(tx *bbolt.Tx) error {
			var first error
			for err := range tx.Check() {
				if first == nil {
					first = err
				}
			}
			if first != nil {
				return damagedFile(s.path, "bbolt check: %v", first)
			}
			fmt.Fprintf(w, "%s: pages ok (%d bytes)\n", s.path, tx.Size())
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := s.Store.Check(ctx, w); err != nil {
		if errors.Is(err, store.ErrDamaged) {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		return err
	}
	return nil
}

// LowSpaceError is Ping's answer when the disk of the store's file has
// less than MinFree bytes free (readiness says by how much).
type LowSpaceError struct {
	Path       string
	Free, Want uint64
}

func (e *LowSpaceError) Error() string {
	return fmt.Sprintf("%d bytes free on the disk of %s, want at least %d (min_free)", e.Free, e.Path, e.Want)
}

// DefaultMinFree is Options.MinFree's default.
const DefaultMinFree = 32 << 20

// damaged is the error of a file whose pages are not what bbolt wrote.
func damaged(path string, cause error) error {
	return fmt.Errorf("bolt: open: %s is damaged (%v): restore it from a backup, "+
		"or run `xborder store check` to see what is wrong: %w: %w", path, cause, store.ErrDamaged, store.ErrUnavailable)
}

// damagedFile is the error of a problem Check found in the file at path.
func damagedFile(path, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", store.ErrDamaged, path, fmt.Sprintf(format, a...))
}

func unavailable(op string, err error) error {
	return fmt.Errorf("bolt: %s: %w: %w", op, store.ErrUnavailable, err)
}

// printable shows a key with its NUL separators as "/".
func printable(k []byte) string {
	return strings.ToValidUTF8(strings.ReplaceAll(string(k), "\x00", "/"), "?")
}
