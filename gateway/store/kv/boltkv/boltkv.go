// Package boltkv is the kv contract over bbolt: a kv bucket is a top-level
// bbolt bucket, an update is one bbolt read-write transaction. bbolt runs
// one writer at a time and every reader on a snapshot, so the guards of
// the contract hold by exclusion and Update never returns kv.ErrConflict.
package boltkv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store/kv"
)

// DB is a kv.DB on a bbolt file.
type DB struct {
	// mu guards b: every transaction holds it shared; Compact holds it
	// exclusively while it swaps the file.
	mu   sync.RWMutex
	b    *bbolt.DB
	path string
	opts bbolt.Options
}

var _ kv.DB = (*DB)(nil)

// Open opens (or creates) the bbolt file at path; Close closes it.
// timeout bounds the wait for another process's lock on the file.
func Open(path string, timeout time.Duration) (*DB, error) {
	return OpenWith(path, Options(timeout))
}

// Options are Open's: the freelist is not written at each commit (rebuilt
// by a scan when the file is opened instead, as etcd does) and kept as a
// map, whose allocations do not slow down as the file grows.
func Options(timeout time.Duration) bbolt.Options {
	return bbolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// OpenWith opens the bbolt file at path with o; Close closes it.
func OpenWith(path string, o bbolt.Options) (*DB, error) {
	b, err := bbolt.Open(path, 0o600, &o)
	if err != nil {
		return nil, err
	}
	return &DB{b: b, path: path, opts: o}, nil
}

// Bolt runs fn on the bbolt database (no Compact meanwhile): for checks of
// the file's pages.
func (d *DB) Bolt(fn func(*bbolt.DB) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return fn(d.b)
}

// Compact rewrites the file into a fresh one and replaces the old one, so
// that pages freed by deletions no longer hold their old bytes anywhere in
// the file. Transactions wait while it runs. If the swap fails half-way
// the old file is reopened; if that fails too, every later transaction
// fails.
func (d *DB) Compact(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	tmp := d.path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: d.opts.Timeout})
	if err != nil {
		return err
	}
	err = bbolt.Compact(dst, d.b, 4<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.b.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	rerr := os.Rename(tmp, d.path)
	if rerr == nil {
		if dir, err := os.Open(filepath.Dir(d.path)); err == nil {
			_ = dir.Sync()
			dir.Close()
		}
	}
	b, err := bbolt.Open(d.path, 0o600, &d.opts)
	if err != nil {
		return errors.Join(rerr, err)
	}
	d.b = b
	return rerr
}

// Close closes the file.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.Close()
}

// View runs fn on a snapshot.
func (d *DB) View(ctx context.Context, fn func(kv.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.b.View(func(b *bbolt.Tx) error { return fn(&tx{b: b}) })
}

// Update runs fn in one bbolt transaction: committed if fn returns nil,
// rolled back otherwise.
func (d *DB) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.b.Update(func(b *bbolt.Tx) error { return fn(&tx{b: b}) })
}

type tx struct {
	b        *bbolt.Tx
	scanning map[string]int // buckets with a scan in progress (a bbolt cursor does not survive writes to its bucket)
}

func (t *tx) Get(bucket string, key []byte) ([]byte, bool, error) {
	if err := kv.Check(bucket, key); err != nil {
		return nil, false, err
	}
	bk := t.b.Bucket([]byte(bucket))
	if bk == nil {
		return nil, false, nil
	}
	// Put never stores a nil value (an empty one is []byte{}), so nil is
	// absent.
	v := bk.Get(key)
	return v, v != nil, nil
}

func (t *tx) Scan(bucket string, from, to []byte, fn func(k, v []byte) error) error {
	if err := kv.CheckBucket(bucket); err != nil {
		return err
	}
	bk := t.b.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	if t.scanning == nil {
		t.scanning = map[string]int{}
	}
	t.scanning[bucket]++
	defer func() { t.scanning[bucket]-- }()
	c := bk.Cursor()
	k, v := c.First()
	if from != nil {
		k, v = c.Seek(from)
	}
	for ; k != nil && (to == nil || bytes.Compare(k, to) < 0); k, v = c.Next() {
		if v == nil {
			continue // a nested bucket: not this contract's
		}
		if err := fn(k, v); err == kv.Stop {
			return nil
		} else if err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) Put(bucket string, key, value []byte) error {
	if err := t.writable(bucket, key); err != nil {
		return err
	}
	bk, err := t.b.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	// bbolt keeps the slices until the commit; the contract lets the
	// caller reuse them as soon as Put returns.
	return bk.Put(bytes.Clone(key), append([]byte{}, value...))
}

func (t *tx) Delete(bucket string, key []byte) error {
	if err := t.writable(bucket, key); err != nil {
		return err
	}
	bk := t.b.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	return bk.Delete(key)
}

func (t *tx) writable(bucket string, key []byte) error {
	if err := kv.Check(bucket, key); err != nil {
		return err
	}
	if t.scanning[bucket] > 0 {
		return kv.ErrScanWrite
	}
	return nil
}
