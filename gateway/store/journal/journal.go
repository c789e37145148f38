// Package journal is a gateway replica's own record, on its local disk, of
// the changes it acknowledged on a replicated store, kept until the
// store's group has held them long enough (kvstore's journal.go says when,
// and what is done with them after a failover). It is a bbolt file: every
// Put is fsynced before it returns, so a change journaled before its
// answer left survives a crash of the gateway.
//
// The file holds what the changes carry: identifiers, digests, and the
// sealed delivery envelopes of accepted messages (encrypted to their
// recipients, as in the store); it is made with mode 0600.
package journal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is one acknowledged change.
type Record struct {
	// ID is unique in the journal and increasing; the change's commit
	// wrote a marker under it in the store.
	ID uint64 `json:"id"`
	// Op names the change (kvstore's operation) and Args are its
	// arguments, enough to make it again. Records returns them without
	// their arguments (ArgsOf reads them): a round over every record
	// needs only where and when each landed.
	Op   string          `json:"op"`
	Args json.RawMessage `json:"-"`
	// At is when the change was last committed (or found present).
	At time.Time `json:"at"`
	// Epoch and Offset are where that commit landed (kv.Position).
	Epoch  string `json:"epoch"`
	Offset int64  `json:"offset"`
}

var (
	bChanges = []byte("changes")
	bArgs    = []byte("args")
	bMeta    = []byte("meta")
	kNext    = []byte("next")
)

// Journal is an open journal file.
type Journal struct {
	db   *bolt.DB
	next atomic.Uint64
}

// Open opens or makes the journal at path (its folder too). A file that
// another process holds open is refused after a second: two gateways must
// not share a journal.
func Open(path string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	j := &Journal{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bChanges, bArgs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// Ids continue from the clock: a change's marker can reach the
		// store while the gateway dies before journaling it, so an id
		// handed out before this start must not be handed out again, and
		// a new file must not reuse the ids of an earlier journal of this
		// replica whose markers the store may still hold (markers are
		// trimmed as ids below the lowest in use). One id a change, far
		// fewer than one a nanosecond, so the clock is ahead of them.
		first := uint64(time.Now().UnixNano())
		if v := meta.Get(kNext); len(v) == 8 {
			first = max(first, binary.BigEndian.Uint64(v))
		}
		j.next.Store(first)
		return meta.Put(kNext, binary.BigEndian.AppendUint64(nil, first))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return j, nil
}

// Close closes the file.
func (j *Journal) Close() error { return j.db.Close() }

// NextID is a new id, above every id given before (in this file's life).
func (j *Journal) NextID() uint64 { return j.next.Add(1) }

func key(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// Put writes the records (new ones, or new versions of records present:
// nil Args keeps the arguments written before) in one fsynced
// transaction.
func (j *Journal) Put(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bChanges)
		top := j.next.Load()
		for _, r := range recs {
			if r.ID == 0 {
				return errors.New("record without an id")
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put(key(r.ID), v); err != nil {
				return err
			}
			if r.Args != nil {
				if err := tx.Bucket(bArgs).Put(key(r.ID), r.Args); err != nil {
					return err
				}
			}
			top = max(top, r.ID)
		}
		return tx.Bucket(bMeta).Put(kNext, key(top))
	})
	if err != nil {
		return fmt.Errorf("journal: put: %w", err)
	}
	return nil
}

// ArgsOf returns the arguments of record id (nil if there is none).
func (j *Journal) ArgsOf(id uint64) (json.RawMessage, error) {
	var out json.RawMessage
	err := j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bArgs).Get(key(id)); v != nil {
			out = append(json.RawMessage{}, v...)
		}
		return nil
	})
	return out, err
}

// Records returns every record without its arguments, in id order.
func (j *Journal) Records() ([]Record, error) {
	var out []Record
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bChanges).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %x does not decode: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("journal: read: %w", err)
	}
	return out, nil
}

// Remove deletes the records (absent ones are no error) in one fsynced
// transaction.
func (j *Journal) Remove(ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	err := j.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := tx.Bucket(bChanges).Delete(key(id)); err != nil {
				return err
			}
			if err := tx.Bucket(bArgs).Delete(key(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: remove: %w", err)
	}
	return nil
}

// Len is how many records the journal holds.
func (j *Journal) Len() (int, error) {
	var n int
	err := j.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bChanges).Stats().KeyN
		return nil
	})
	return n, err
}
