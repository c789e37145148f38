package audit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// BoltOptions tune OpenBolt. The zero value is usable.
type BoltOptions struct {
	// Timeout bounds the wait for the file lock (default 1 s). A running
	// gateway holds it: the CLI reads a bolt log only while it is stopped.
	Timeout time.Duration
	// ReadOnly opens the file for reading (verify, subject, export).
	ReadOnly bool
}

// Bolt is a Backend on a bbolt file: its own (OpenBolt) or the message
// store's (NewBoltOn), where an acceptance and its audit entry are written in
// one transaction (AppendTx) and so share one fsync.
//
// Layout: chains/<replica>/ with
//
//	entries      seq (8 bytes, big endian) -> entry JSON
//	checkpoints  bucket sequence (8 bytes)  -> checkpoint JSON
//	head         count (8 bytes) + head hash (hex)
//
// Appends go through db.Batch, so concurrent appends share one fsync.
type Bolt struct {
	db    BoltDB
	path  string
	close func() error
}

// BoltDB runs bbolt transactions: a *bbolt.DB, or a store that owns the
// file and may swap it (store/bolt.Store).
type BoltDB interface {
	Update(func(*bbolt.Tx) error) error
	View(func(*bbolt.Tx) error) error
	Batch(func(*bbolt.Tx) error) error
}

// NewBoltOn keeps the audit log in a file someone else owns (the message
// store's): path is that file's, for Path; Close leaves the file open.
func NewBoltOn(db BoltDB, path string) (*Bolt, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketChains)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: bolt: %w", err)
	}
	return &Bolt{db: db, path: path, close: func() error { return nil }}, nil
}

var _ Backend = (*Bolt)(nil)

var (
	bucketChains      = []byte("chains")
	bucketEntries     = []byte("entries")
	bucketCheckpoints = []byte("checkpoints")
	keyHead           = []byte("head")
)

// boltPage is how many entries one read transaction returns, so that a long
// export never holds a read transaction (and blocks the file's growth).
const boltPage = 512

// OpenBolt opens (or creates) the audit log at path (folder 0700, file 0600).
func OpenBolt(path string, o BoltOptions) (*Bolt, error) {
	if path == "" {
		return nil, errors.New("audit: bolt: empty path")
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("audit: bolt: %w", err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: o.Timeout, ReadOnly: o.ReadOnly,
		NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err == nil {
		// Appends within 2 ms share one fsync (bbolt's default waits 10 ms,
		// which a message's answer would wait for at low load).
		db.MaxBatchDelay = 2 * time.Millisecond
	}
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("audit: bolt: %s is locked (a running gateway holds it): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: bolt: %w", err)
	}
	if !o.ReadOnly {
		err = db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketChains)
			return err
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("audit: bolt: %w", err)
		}
	}
	return &Bolt{db: db, path: path, close: db.Close}, nil
}

// Path is the file's path.
func (b *Bolt) Path() string { return b.path }

// Close closes the file (not a file NewBoltOn was given).
func (b *Bolt) Close() error {
	if err := b.close(); err != nil {
		return fmt.Errorf("audit: bolt: close: %w", err)
	}
	return nil
}

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func readHead(chain *bbolt.Bucket) (uint64, string) {
	if chain == nil {
		return 0, ""
	}
	v := chain.Get(keyHead)
	if len(v) < 8 {
		return 0, ""
	}
	return binary.BigEndian.Uint64(v[:8]), string(v[8:])
}

func chainBucket(tx *bbolt.Tx, replica string) *bbolt.Bucket {
	root := tx.Bucket(bucketChains)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(replica))
}

func checkReplica(replica string) error {
	if replica == "" || strings.ContainsRune(replica, 0) {
		return errors.New("audit: invalid replica id")
	}
	return nil
}

// Append links e to the replica's head and stores it.
func (b *Bolt) Append(ctx context.Context, replica string, e Entry) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, fmt.Errorf("audit: bolt: append: %w", err)
	}
	if err := CheckAppend(replica, e); err != nil { // before the batch: a refusal would rerun the others
		return Entry{}, err
	}
	var stored Entry
	// Batch may run the function again on its own: it depends only on tx.
	err := b.db.Batch(func(tx *bbolt.Tx) (err error) {
		stored, err = AppendTx(tx, replica, e)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("audit: bolt: append: %w", err)
	}
	return stored, nil
}

// CheckAppend refuses what AppendTx would: a caller batching AppendTx with
// other work checks first, so that a refusal does not roll the others back.
func CheckAppend(replica string, e Entry) error {
	if err := checkReplica(replica); err != nil {
		return err
	}
	e.Replica = replica
	return e.check()
}

// AppendTx links e to the replica's head and stores it inside tx, the
// write transaction of a Bolt's file: committed with whatever else tx
// writes, or not at all.
func AppendTx(tx *bbolt.Tx, replica string, e Entry) (Entry, error) {
	if err := checkReplica(replica); err != nil {
		return Entry{}, err
	}
	e.Replica = replica
	root := tx.Bucket(bucketChains)
	if root == nil {
		return Entry{}, errors.New("audit: bolt: no audit log in this file")
	}
	chain, err := root.CreateBucketIfNotExists([]byte(replica))
	if err != nil {
		return Entry{}, err
	}
	entries, err := chain.CreateBucketIfNotExists(bucketEntries)
	if err != nil {
		return Entry{}, err
	}
	// Keys only grow: fill pages instead of splitting them half-empty.
	entries.FillPercent = 0.95
	count, head := readHead(chain)
	if err := e.Link(count, head); err != nil {
		return Entry{}, err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return Entry{}, err
	}
	if err := entries.Put(seqKey(e.Seq), v); err != nil {
		return Entry{}, err
	}
	if err := chain.Put(keyHead, append(seqKey(e.Seq), e.Hash...)); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Entries calls fn for the replica's entries from seq from on.
func (b *Bolt) Entries(ctx context.Context, replica string, from uint64, fn func(Entry) error) error {
	next := max(from, 1)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("audit: bolt: entries: %w", err)
		}
		page := make([]Entry, 0, boltPage)
		var last uint64 // by key: a tampered seq field must not steer the paging
		err := b.db.View(func(tx *bbolt.Tx) error {
			chain := chainBucket(tx, replica)
			if chain == nil || chain.Bucket(bucketEntries) == nil {
				return nil
			}
			c := chain.Bucket(bucketEntries).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && len(page) < boltPage; k, v = c.Next() {
				var e Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
				}
				page = append(page, e)
				last = binary.BigEndian.Uint64(k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: bolt: entries: %w", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < boltPage {
			return nil
		}
		next = last + 1
	}
}

// Replicas lists the chains, sorted.
func (b *Bolt) Replicas(ctx context.Context) ([]string, error) {
	var out []string
	err := b.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketChains)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: bolt: replicas: %w", err)
	}
	return out, nil
}

// Head returns the replica's entry count and last hash.
func (b *Bolt) Head(ctx context.Context, replica string) (count uint64, head string, err error) {
	err = b.db.View(func(tx *bbolt.Tx) error {
		count, head = readHead(chainBucket(tx, replica))
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("audit: bolt: head: %w", err)
	}
	return count, head, nil
}

// PutCheckpoint stores a checkpoint after the replica's earlier ones.
func (b *Bolt) PutCheckpoint(ctx context.Context, cp Checkpoint) error {
	if err := checkReplica(cp.Replica); err != nil {
		return err
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("audit: bolt: checkpoint: %w", err)
	}
	err = b.db.Update(func(tx *bbolt.Tx) error {
		chain, err := tx.Bucket(bucketChains).CreateBucketIfNotExists([]byte(cp.Replica))
		if err != nil {
			return err
		}
		cps, err := chain.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		n, err := cps.NextSequence()
		if err != nil {
			return err
		}
		return cps.Put(seqKey(n), v)
	})
	if err != nil {
		return fmt.Errorf("audit: bolt: checkpoint: %w", err)
	}
	return nil
}

// Checkpoints returns the replica's checkpoints in the order stored.
func (b *Bolt) Checkpoints(ctx context.Context, replica string) ([]Checkpoint, error) {
	var out []Checkpoint
	err := b.db.View(func(tx *bbolt.Tx) error {
		chain := chainBucket(tx, replica)
		if chain == nil || chain.Bucket(bucketCheckpoints) == nil {
			return nil
		}
		return chain.Bucket(bucketCheckpoints).ForEach(func(_, v []byte) error {
			var cp Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			out = append(out, cp)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: bolt: checkpoints: %w", err)
	}
	return out, nil
}
