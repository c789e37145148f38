package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kvstore"
)

// KVStore is the embedded store with its domain in kvstore, over boltkv:
// this file keeps what is the file's own — its pages checked before bbolt
// reads them, a damaged file refused with an error that says what to do,
// compaction, free space in Ping, and the page check of `store check`.
type KVStore struct {
	*kvstore.Store
	db   *boltkv.DB
	path string
}

var _ store.Store = (*KVStore)(nil)

// OpenKV opens (or creates) the store at path, as Open does, with the
// domain of kvstore. A file of the earlier layout (nested queues and
// chains) is refused: its data is not where kvstore reads.
func OpenKV(path string, opts Options) (*KVStore, error) {
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
			if tx.Bucket(bucketQueues) != nil || tx.Bucket(bucketChains) != nil {
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
				err = fmt.Errorf("%d bytes free on the disk of %s, want at least %d", free, path, min)
			}
			return err
		}
	}
	return &KVStore{Store: kvstore.New(db, ko), db: db, path: path}, nil
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
func (s *KVStore) Path() string { return s.path }

// Compact rewrites the file into a fresh one (boltkv.DB.Compact), so that
// purged payloads no longer hold their old bytes anywhere in the file.
func (s *KVStore) Compact(ctx context.Context) error {
	if err := s.db.Compact(ctx); err != nil {
		return unavailable("compact", err)
	}
	return nil
}

// Check checks the file's pages (the walk of Open, then bbolt's own
// Tx.Check), then every record (kvstore.Check). It is `xborder store
// check`, run while the gateway is stopped.
func (s *KVStore) Check(ctx context.Context, w io.Writer) (err error) {
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
