// Package boltkv is the kv contract over bbolt: a kv bucket is a top-level
// bbolt bucket, an update is one bbolt read-write transaction. bbolt runs
// one writer at a time and every reader on a snapshot, so the guards of
// the contract hold by exclusion and Update never returns kv.ErrConflict.
package boltkv

import (
	"bytes"
	"context"
	"time"

	"go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store/kv"
)

// DB is a kv.DB on a bbolt file.
type DB struct {
	b     *bbolt.DB
	owned bool
}

var _ kv.DB = (*DB)(nil)

// Open opens (or creates) the bbolt file at path; Close closes it.
// timeout bounds the wait for another process's lock on the file.
func Open(path string, timeout time.Duration) (*DB, error) {
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	return &DB{b: b, owned: true}, nil
}

// New uses an open bbolt database; Close leaves it open.
func New(b *bbolt.DB) *DB { return &DB{b: b} }

// Close closes the file if Open opened it.
func (d *DB) Close() error {
	if d.owned {
		return d.b.Close()
	}
	return nil
}

// View runs fn on a snapshot.
func (d *DB) View(ctx context.Context, fn func(kv.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.b.View(func(b *bbolt.Tx) error { return fn(&tx{b: b}) })
}

// Update runs fn in one bbolt transaction: committed if fn returns nil,
// rolled back otherwise.
func (d *DB) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
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
