// Package bolt is the embedded store: one bbolt file on one machine, the
// gateway's default.
//
// Every write is one bbolt read-write transaction, fsynced before it returns
// (bbolt's default, kept), so a message Accept has returned survives a crash
// of the process or of the machine. bbolt allows one writer at a time, which
// makes Accept, Lease and Ack atomic and safe under concurrent callers.
//
// Layout (keys use NUL as separator; identifiers containing NUL are refused):
//
//	messages     from\x00id -> JSON message record (+ counts of open and
//	             dead-lettered deliveries, and the (recipient, id) of each)
//	recipients   to\x00id   -> from\x00id (first accepted message wins)
//	queues/<recipient>/
//	  index      visible_at(12) seq(8) -> delivery id   (lease order)
//	  deliveries delivery id -> binary record (see encode.go)
//	  depth      number of deliveries (a key, uint64)
//	dead         recipient\x00delivery id -> binary record; its visible time
//	             is the time it was dead-lettered
//	deadindex    dead_at(12) seq(8) -> recipient\x00delivery id (oldest first)
//	consents     from\x00consent\x00recipient -> empty
//	withdrawn    from\x00consent -> time of the withdrawal (RFC 3339)
//	retention    purge_at(12) from\x00id -> empty (messages not yet purged)
//
// Deleting a key frees its page for reuse but does not overwrite it: the
// bytes of a purged envelope stay in the file's free pages until bbolt
// writes over them (or the file is compacted).
package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process
	// (default 1 s; bbolt's own default would wait forever).
	Timeout time.Duration
}

// Store is a store.Store on a bbolt file.
type Store struct {
	path string
	opts Options
	// mu guards db: every operation holds it shared; Compact holds it
	// exclusively while it swaps the file.
	mu sync.RWMutex
	db *bbolt.DB
}

func (s *Store) update(fn func(*bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(fn)
}

func (s *Store) view(fn func(*bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(fn)
}

func (s *Store) batch(fn func(*bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Batch(fn)
}

var _ store.Store = (*Store)(nil)

// Update, View and Batch run a transaction on the store's file for another
// component that keeps its own buckets there (the audit log,
// audit.NewBoltOn): they follow the file across Compact.
func (s *Store) Update(fn func(*bbolt.Tx) error) error { return s.update(fn) }

// View: see Update.
func (s *Store) View(fn func(*bbolt.Tx) error) error { return s.view(fn) }

// Batch: see Update.
func (s *Store) Batch(fn func(*bbolt.Tx) error) error { return s.batch(fn) }

// Path is the store's file.
func (s *Store) Path() string { return s.path }

var (
	bucketMessages   = []byte("messages")
	bucketRecipients = []byte("recipients")
	bucketQueues     = []byte("queues")
	bucketIndex      = []byte("index")
	bucketDeliveries = []byte("deliveries")
	keyDepth         = []byte("depth")
	bucketDead       = []byte("dead")
	bucketDeadIndex  = []byte("deadindex")
	bucketConsents   = []byte("consents")
	bucketWithdrawn  = []byte("withdrawn")
	bucketRetention  = []byte("retention")
)

// Open opens (or creates) the store at path. The parent directory is created
// with mode 0700 and the file with mode 0600.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("bolt: open: empty path")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
	}
	db, err := openDB(path, opts)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, opts: opts, db: db}, nil
}

func openDB(path string, opts Options) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, boltOptions(opts.Timeout))
	if err != nil {
		return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
	}
	// Group commit: accepts arriving within 2 ms share one fsync. Each
	// caller still returns only after its commit is on disk.
	db.MaxBatchDelay = 2 * time.Millisecond
	db.MaxBatchSize = 128
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMessages, bucketRecipients, bucketQueues,
			bucketDead, bucketDeadIndex, bucketConsents, bucketWithdrawn, bucketRetention} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
	}
	return db, nil
}

// check starts a call that looks a record up by keys: a done context is
// ErrUnavailable, a key that cannot exist is ErrNotFound.
func check(ctx context.Context, op string, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return unavailable(op, err)
	}
	if store.ValidKeys(keys...) != nil {
		return store.ErrNotFound
	}
	return nil
}

// result maps a transaction's error for a call that may not find its
// record: ErrNotFound as it is, anything else as ErrUnavailable.
func result(op string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ErrNotFound
	case err != nil:
		return unavailable(op, err)
	}
	return nil
}

// Compact rewrites the database into a fresh file and replaces the old one,
// so that pages freed by deletions (purged payloads among them) no longer
// hold their old bytes anywhere in the file. Every other operation waits
// while it runs. If the swap fails half-way the store fails closed
// (ErrUnavailable) rather than serve from an unknown state.
func (s *Store) Compact(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return unavailable("compact", err)
	}
	tmp := s.path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: s.opts.Timeout})
	if err != nil {
		return unavailable("compact", err)
	}
	if err := bbolt.Compact(dst, s.db, 4<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return unavailable("compact", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return unavailable("compact", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return unavailable("compact", err)
	}
	if err := s.db.Close(); err != nil {
		os.Remove(tmp)
		return unavailable("compact", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		// The old file is intact: reopen it (if that fails too, the closed
		// handle stays and every call fails with ErrUnavailable).
		if db, oerr := openDB(s.path, s.opts); oerr == nil {
			s.db = db
		}
		return unavailable("compact", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	db, err := openDB(s.path, s.opts)
	if err != nil {
		return unavailable("compact", err)
	}
	s.db = db
	return nil
}

// Close closes the file. Later calls fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// Ping checks that a write transaction can be started now (the file is open
// and writable) and rolls it back: no I/O.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return unavailable("ping", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db.IsReadOnly() {
		return unavailable("ping", errors.New("read-only"))
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return unavailable("ping", err)
	}
	if err := tx.Rollback(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// messageRecord is what the messages bucket holds.
type messageRecord struct {
	store.Message
	// Open counts the message's deliveries not yet acknowledged.
	Open int `json:"open,omitempty"`
	// Dead counts the message's deliveries in the dead-letter set.
	Dead int `json:"dead,omitempty"`
	// Deliveries are the (recipient, id) of the message's deliveries, so
	// that Purge finds them.
	Deliveries [][2]string `json:"deliveries,omitempty"`
}

// errRollback ends a transaction that found what it needed without writing.
var errRollback = errors.New("bolt: rollback")

// Accept implements store.Messages.
func (s *Store) Accept(ctx context.Context, m *store.Message, ds []store.Delivery) (*store.Message, error) {
	return s.AcceptTx(ctx, m, ds, nil)
}

// AcceptTx is Accept that also runs also, if not nil, in the acceptance's
// transaction: what also writes (an audit entry, audit.AppendTx) is
// committed with the acceptance or not at all, under one fsync. also is not
// run for a duplicate; it may run more than once (batched transactions are
// retried one by one after a failure) and must depend only on tx.
func (s *Store) AcceptTx(ctx context.Context, m *store.Message, ds []store.Delivery, also func(*bbolt.Tx) error) (*store.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("accept", err)
	}
	if m == nil {
		return nil, errors.New("bolt: accept: nil message")
	}
	if err := store.ValidKeys(m.From, m.ID, m.To); err != nil {
		return nil, fmt.Errorf("bolt: accept: %w", err)
	}
	if m.ConsentID != "" && store.ValidKeys(m.ConsentID) != nil {
		return nil, fmt.Errorf("bolt: accept: consent: %w", store.ErrInvalidKey)
	}
	rec := messageRecord{Message: *m, Open: len(ds)}
	rec.Status = store.StatusAccepted
	rec.Attempts = 0
	rec.Purged, rec.PurgedAt = false, time.Time{}
	rec.Deliveries = make([][2]string, 0, len(ds))
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	queued := make([]store.Delivery, len(ds))
	seen := make(map[string]bool, len(ds))
	for i, d := range ds {
		if d.Recipient == "" {
			d.Recipient = m.To
		}
		d.MessageFrom, d.MessageID, d.Attempts = m.From, m.ID, 0
		if d.CreatedAt.IsZero() {
			d.CreatedAt = m.CreatedAt
		}
		if d.VisibleAt.IsZero() {
			d.VisibleAt = d.CreatedAt
		}
		if err := store.ValidKeys(d.ID, d.Recipient); err != nil {
			return nil, fmt.Errorf("bolt: accept: delivery: %w", err)
		}
		if seen[d.Recipient+"\x00"+d.ID] {
			return nil, errors.New("bolt: accept: delivery id repeated")
		}
		seen[d.Recipient+"\x00"+d.ID] = true
		queued[i] = d
		rec.Deliveries = append(rec.Deliveries, [2]string{d.Recipient, d.ID})
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return nil, fmt.Errorf("bolt: accept: %w", err)
	}
	key := pairKey(m.From, m.ID)

	var existing *store.Message
	// Batched: concurrent accepts share one commit and one fsync; the
	// function may run twice, so it starts from scratch each time.
	err = s.batch(func(tx *bbolt.Tx) error {
		existing = nil
		old, err := getMessage(tx, key)
		if err != nil {
			return err
		}
		if old != nil && old.Status != store.StatusDenied {
			existing = old
			return errRollback
		}
		msgs := tx.Bucket(bucketMessages)
		if err := msgs.Put(key, value); err != nil {
			return err
		}
		if err := s.index(tx, m.To, m.ID, key, false); err != nil {
			return err
		}
		queues, dead := tx.Bucket(bucketQueues), tx.Bucket(bucketDead)
		for _, d := range queued {
			if dead.Get(pairKey(d.Recipient, d.ID)) != nil {
				return errDeliveryExists
			}
			if err := enqueue(queues, d); err != nil {
				return err
			}
		}
		if m.ConsentID != "" {
			if err := indexConsent(tx, m.From, m.ConsentID, queued); err != nil {
				return err
			}
		}
		if at, ok := m.PurgeAt(); ok {
			if err := tx.Bucket(bucketRetention).Put(retentionKey(at, key), nil); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	switch {
	case existing != nil:
		return existing, store.ErrDuplicate
	case errors.Is(err, errDeliveryExists):
		return nil, fmt.Errorf("bolt: accept: %w", err)
	case err != nil:
		return nil, unavailable("accept", err)
	}
	out := rec.Message
	return &out, nil
}

var errDeliveryExists = errors.New("delivery id already queued")

func enqueue(queues *bbolt.Bucket, d store.Delivery) error {
	seq, err := queues.NextSequence()
	if err != nil {
		return err
	}
	r := deliveryRecord{
		seq: seq, created: d.CreatedAt, visible: d.VisibleAt,
		messageFrom: d.MessageFrom, messageID: d.MessageID, envelope: d.Envelope,
	}
	return putQueued(queues, d.Recipient, []byte(d.ID), &r)
}

// putQueued adds the record to the recipient's queue, creating the queue's
// buckets when needed.
func putQueued(queues *bbolt.Bucket, recipient string, id []byte, r *deliveryRecord) error {
	q, err := queues.CreateBucketIfNotExists([]byte(recipient))
	if err != nil {
		return err
	}
	idx, err := q.CreateBucketIfNotExists(bucketIndex)
	if err != nil {
		return err
	}
	dlv, err := q.CreateBucketIfNotExists(bucketDeliveries)
	if err != nil {
		return err
	}
	if dlv.Get(id) != nil {
		return errDeliveryExists
	}
	if err := dlv.Put(id, r.marshal()); err != nil {
		return err
	}
	if err := idx.Put(indexKey(r.visible, r.seq), id); err != nil {
		return err
	}
	return q.Put(keyDepth, putUint64(getUint64(q.Get(keyDepth))+1))
}

// takeQueued removes the delivery from the recipient's queue (record, index
// entry and depth) and returns its record; ok is false when it is not there.
func takeQueued(queues *bbolt.Bucket, recipient string, id []byte) (r deliveryRecord, ok bool, err error) {
	q := queues.Bucket([]byte(recipient))
	if q == nil {
		return r, false, nil
	}
	idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
	v := dlv.Get(id)
	if v == nil {
		return r, false, nil
	}
	if err := r.unmarshal(v); err != nil {
		return r, false, err
	}
	if err := idx.Delete(indexKey(r.visible, r.seq)); err != nil {
		return r, false, err
	}
	if err := dlv.Delete(id); err != nil {
		return r, false, err
	}
	if n := getUint64(q.Get(keyDepth)); n > 0 {
		if err := q.Put(keyDepth, putUint64(n-1)); err != nil {
			return r, false, err
		}
	}
	return r, true, nil
}

// updateMessage applies fn to the record at key and writes it back when fn
// returns true. A missing record is left alone.
func updateMessage(msgs *bbolt.Bucket, key []byte, fn func(*messageRecord) bool) error {
	v := msgs.Get(key)
	if v == nil {
		return nil
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	if !fn(&rec) {
		return nil
	}
	nv, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	return msgs.Put(key, nv)
}

// index points to\x00id at the message key. An accepted message takes the
// entry over from a denied one; otherwise the first writer keeps it.
func (s *Store) index(tx *bbolt.Tx, to, id string, msgKey []byte, denial bool) error {
	rcpt := tx.Bucket(bucketRecipients)
	ik := pairKey(to, id)
	cur := rcpt.Get(ik)
	switch {
	case cur == nil:
	case bytes.Equal(cur, msgKey):
		return nil
	case denial:
		return nil
	default:
		v := tx.Bucket(bucketMessages).Get(cur)
		if v != nil {
			var other messageRecord
			if err := json.Unmarshal(v, &other); err != nil {
				return fmt.Errorf("decode message: %w", err)
			}
			if other.Status != store.StatusDenied {
				return nil
			}
		}
	}
	return rcpt.Put(ik, msgKey)
}

// RecordDenial implements store.Messages. It does nothing when (from, id) was
// accepted before.
func (s *Store) RecordDenial(ctx context.Context, m *store.Message) error {
	return s.RecordDenialTx(ctx, m, nil)
}

// RecordDenialTx is RecordDenial that also runs also, if not nil, in its
// transaction (see AcceptTx) — also when the denial itself is not recorded
// because the id was accepted before.
func (s *Store) RecordDenialTx(ctx context.Context, m *store.Message, also func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return unavailable("record denial", err)
	}
	if m == nil {
		return errors.New("bolt: record denial: nil message")
	}
	if err := store.ValidKeys(m.From, m.ID, m.To); err != nil {
		return fmt.Errorf("bolt: record denial: %w", err)
	}
	rec := messageRecord{Message: *m}
	rec.Status = store.StatusDenied
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("bolt: record denial: %w", err)
	}
	key := pairKey(m.From, m.ID)
	err = s.batch(func(tx *bbolt.Tx) error {
		old, err := getMessage(tx, key)
		if err != nil {
			return err
		}
		if old != nil && old.Status != store.StatusDenied {
			if also != nil {
				return also(tx)
			}
			return errRollback
		}
		if err := tx.Bucket(bucketMessages).Put(key, value); err != nil {
			return err
		}
		if err := s.index(tx, m.To, m.ID, key, true); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRollback) {
		return unavailable("record denial", err)
	}
	return nil
}

// Message implements store.Messages.
func (s *Store) Message(ctx context.Context, from, id string) (*store.Message, error) {
	if err := check(ctx, "message", from, id); err != nil {
		return nil, err
	}
	var m *store.Message
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		m, err = getMessage(tx, pairKey(from, id))
		return err
	})
	if err != nil {
		return nil, unavailable("message", err)
	}
	if m == nil {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// MessageTo implements store.Messages.
func (s *Store) MessageTo(ctx context.Context, to, id string) (*store.Message, error) {
	if err := check(ctx, "message to", to, id); err != nil {
		return nil, err
	}
	var m *store.Message
	err := s.view(func(tx *bbolt.Tx) error {
		key := tx.Bucket(bucketRecipients).Get(pairKey(to, id))
		if key == nil {
			return nil
		}
		var err error
		m, err = getMessage(tx, key)
		return err
	})
	if err != nil {
		return nil, unavailable("message to", err)
	}
	if m == nil || m.To != to {
		return nil, store.ErrNotFound
	}
	return m, nil
}

func getMessage(tx *bbolt.Tx, key []byte) (*store.Message, error) {
	v := tx.Bucket(bucketMessages).Get(key)
	if v == nil {
		return nil, nil
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return &rec.Message, nil
}

// Lease implements store.Queue.
func (s *Store) Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("lease", err)
	}
	if max <= 0 || store.ValidKeys(recipient) != nil {
		return nil, nil
	}
	until := now.Add(visibility)
	var out []store.Delivery
	err := s.update(func(tx *bbolt.Tx) error {
		out = out[:0]
		q := tx.Bucket(bucketQueues).Bucket([]byte(recipient))
		if q == nil {
			return nil
		}
		idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
		// Collect first: bbolt cursors must not run across their own writes.
		type item struct{ key, id []byte }
		var due []item
		c := idx.Cursor()
		for k, v := c.First(); k != nil && len(due) < max; k, v = c.Next() {
			at, ok := indexTime(k)
			if !ok {
				return errors.New("corrupt queue index")
			}
			if at.After(now) {
				break
			}
			due = append(due, item{bytes.Clone(k), bytes.Clone(v)})
		}
		msgs := tx.Bucket(bucketMessages)
		for _, it := range due {
			var r deliveryRecord
			v := dlv.Get(it.id)
			if v == nil {
				// An index entry without its delivery: drop it.
				if err := idx.Delete(it.key); err != nil {
					return err
				}
				continue
			}
			if err := r.unmarshal(v); err != nil {
				return err
			}
			r.attempts++
			r.visible = until
			if err := idx.Delete(it.key); err != nil {
				return err
			}
			if err := idx.Put(indexKey(r.visible, r.seq), it.id); err != nil {
				return err
			}
			if err := dlv.Put(it.id, r.marshal()); err != nil {
				return err
			}
			if err := countAttempt(msgs, pairKey(r.messageFrom, r.messageID), int(r.attempts)); err != nil {
				return err
			}
			out = append(out, r.delivery(recipient, string(it.id)))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("lease", err)
	}
	return out, nil
}

// countAttempt raises the message's attempts to n (the most attempts of any
// of its deliveries).
func countAttempt(msgs *bbolt.Bucket, key []byte, n int) error {
	v := msgs.Get(key)
	if v == nil {
		return nil
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	if rec.Attempts >= n {
		return nil
	}
	rec.Attempts = n
	nv, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	return msgs.Put(key, nv)
}

// Ack implements store.Queue.
func (s *Store) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return s.AckTx(ctx, recipient, deliveryID, now, nil)
}

// DeliveryHook runs inside the transaction that ends a delivery (AckTx,
// DeadLetterTx) with the delivery taken and its message as updated (nil if
// its record is gone): for the delivery's audit entry (see AcceptTx). It
// may run more than once and must depend only on its arguments.
type DeliveryHook func(tx *bbolt.Tx, d store.Delivery, m *store.Message) error

// AckTx is Ack that also runs also, if not nil, in the acknowledgement's
// transaction. Acks arriving together share one commit.
func (s *Store) AckTx(ctx context.Context, recipient, deliveryID string, now time.Time, also DeliveryHook) error {
	if err := check(ctx, "ack", recipient, deliveryID); err != nil {
		return err
	}
	err := s.batch(func(tx *bbolt.Tx) error {
		// The record goes, envelope included: an acknowledged payload is
		// not kept until its retention period ends.
		return endQueued(tx, recipient, deliveryID, nil, func(rec *messageRecord) {
			if rec.Open > 0 {
				rec.Open--
			}
			if rec.Open == 0 && rec.Status == store.StatusAccepted {
				rec.Status = store.StatusDelivered
				rec.UpdatedAt = now
			}
		}, also)
	})
	return result("ack", err)
}

// endQueued takes a delivery out of its recipient's queue (ErrNotFound if
// it is not there), hands its record to keep (nil: it goes), applies update
// to its message and runs also, if not nil, with both.
func endQueued(tx *bbolt.Tx, recipient, deliveryID string, keep func(*deliveryRecord) error,
	update func(*messageRecord), also DeliveryHook) error {
	r, ok, err := takeQueued(tx.Bucket(bucketQueues), recipient, []byte(deliveryID))
	if err != nil {
		return err
	}
	if !ok {
		return store.ErrNotFound
	}
	if keep != nil {
		if err := keep(&r); err != nil {
			return err
		}
	}
	var msg *store.Message
	err = updateMessage(tx.Bucket(bucketMessages), pairKey(r.messageFrom, r.messageID), func(rec *messageRecord) bool {
		update(rec)
		m := rec.Message
		msg = &m
		return true
	})
	if err != nil || also == nil {
		return err
	}
	return also(tx, r.delivery(recipient, deliveryID), msg)
}

// Delivery implements store.Queue.
func (s *Store) Delivery(ctx context.Context, recipient, deliveryID string) (*store.Delivery, error) {
	if err := check(ctx, "delivery", recipient, deliveryID); err != nil {
		return nil, err
	}
	var out *store.Delivery
	err := s.view(func(tx *bbolt.Tx) error {
		q := tx.Bucket(bucketQueues).Bucket([]byte(recipient))
		if q == nil {
			return store.ErrNotFound
		}
		v := q.Bucket(bucketDeliveries).Get([]byte(deliveryID))
		if v == nil {
			return store.ErrNotFound
		}
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return err
		}
		d := r.delivery(recipient, deliveryID)
		out = &d
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, unavailable("delivery", err)
	}
	return out, nil
}

// Depth implements store.Queue.
func (s *Store) Depth(ctx context.Context, recipient string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, unavailable("depth", err)
	}
	var n uint64
	err := s.view(func(tx *bbolt.Tx) error {
		if q := tx.Bucket(bucketQueues).Bucket([]byte(recipient)); q != nil {
			n = getUint64(q.Get(keyDepth))
		}
		return nil
	})
	if err != nil {
		return 0, unavailable("depth", err)
	}
	return int(n), nil
}

func pairKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("bolt: %s: %w: %w", op, store.ErrUnavailable, err)
}

// boltOptions: the freelist is not written at each commit (rebuilt by a scan
// when the file is opened instead, as etcd does) and kept as a map, whose
// allocations do not slow down as the file grows.
func boltOptions(timeout time.Duration) *bbolt.Options {
	return &bbolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}
