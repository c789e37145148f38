// Package bolt is the embedded store: one bbolt file on one machine, the
// gateway's default.
//
// Every write is one bbolt read-write transaction, fsynced before it returns
// (bbolt's default, kept), so a message Accept has returned survives a crash
// of the process or of the machine. bbolt allows one writer at a time, which
// makes Accept, Lease and Ack atomic and safe under concurrent callers. The
// audit chains live in the same file (chain.go): a change and its audit
// entry are one transaction and one fsync, both or neither.
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
//	retention    due_at(12) from\x00id -> empty: when the message's next step
//	             of Purge is due (its purge, then its forgetting; see
//	             store.Message.Retire); every message that will be purged or
//	             forgotten is there once, at that time
//	chains       the audit chains (chain.go)
//	quarantine   kind\x00original key -> the bytes of a record that could not
//	             be decoded, moved aside (quarantine.go)
//	probe        written by Ping
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
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
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
	// Fault, when set, is called inside every write transaction (op names
	// it: "accept", "deny", "ack", "dead letter", "purge", "append",
	// "probe", …) after its changes and before its audit entries are
	// appended; an error fails the transaction, which rolls back whole.
	// For tests: a failed append, a full disk.
	Fault func(op string) error
}

// Store is a store.Store on a bbolt file.
type Store struct {
	path string
	opts Options
	log  *slog.Logger
	// mu guards db: every operation holds it shared; Compact holds it
	// exclusively while it swaps the file.
	mu sync.RWMutex
	db *bbolt.DB

	probe probe
}

var _ store.Store = (*Store)(nil)

// Path is the store's file.
func (s *Store) Path() string { return s.path }

func (s *Store) now() time.Time { return s.opts.Clock() }

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
	bucketQuarantine = []byte("quarantine")
	bucketProbe      = []byte("probe")
)

// topBuckets are created at Open.
var topBuckets = [][]byte{bucketMessages, bucketRecipients, bucketQueues, bucketDead, bucketDeadIndex,
	bucketConsents, bucketWithdrawn, bucketRetention, bucketChains, bucketQuarantine, bucketProbe}

// Open opens (or creates) the store at path. The parent directory is created
// with mode 0700 and the file with mode 0600. A damaged file is refused
// with an error that names it and says what to do (see Check), never a panic.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("bolt: open: empty path")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
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
	db, err := openDB(path, opts)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, opts: opts, log: log.With("component", "store", "file", path), db: db}, nil
}

func openDB(path string, opts Options) (db *bbolt.DB, err error) {
	// Pages are checked before bbolt reads them: bbolt panics on some
	// damaged pages, and does so in goroutines of its own at Open.
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
	bo := boltOptions(opts.Timeout)
	bo.ReadOnly = opts.ReadOnly
	db, err = bbolt.Open(path, 0o600, bo)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open: %s is locked (a running gateway holds it): %w: %w", path, store.ErrUnavailable, err)
	}
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return nil, damaged(path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open: %w: %w", store.ErrUnavailable, err)
	}
	// Group commit: accepts arriving within 2 ms share one fsync. Each
	// caller still returns only after its commit is on disk.
	db.MaxBatchDelay = 2 * time.Millisecond
	db.MaxBatchSize = 128
	if opts.ReadOnly {
		return db, nil
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range topBuckets {
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

// damaged is the error of a file whose pages are not what bbolt wrote.
func damaged(path string, cause error) error {
	return fmt.Errorf("bolt: open: %s is damaged (%v): restore it from a backup, "+
		"or run `xborder store check` to see what is wrong: %w: %w", path, cause, store.ErrDamaged, store.ErrUnavailable)
}

// guard turns a panic of bbolt on a damaged page into an error, so that
// one bad page fails the calls that reach it and no others.
func (s *Store) guard(err *error) {
	if p := recover(); p != nil {
		s.log.Error("store page unreadable; run `xborder store check`", "panic", fmt.Sprint(p))
		*err = fmt.Errorf("%w: a page of %s is damaged (%v)", store.ErrDamaged, s.path, p)
	}
}

func (s *Store) update(fn func(*bbolt.Tx) error) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	defer s.guard(&err)
	// A page pointing outside the mapped file is a fault, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.Update(fn)
}

func (s *Store) view(fn func(*bbolt.Tx) error) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	defer s.guard(&err)
	// A page pointing outside the mapped file is a fault, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.View(fn)
}

// batch runs fn in a transaction shared with others arriving together (one
// commit, one fsync). bbolt may run fn twice, alone the second time, after
// a failure of the shared transaction: fn starts from scratch each time.
func (s *Store) batch(fn func(*bbolt.Tx) error) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	defer s.guard(&err)
	return s.db.Batch(fn)
}

// write runs fn in a write transaction (batched or not) with a quarantine
// of its own, and reports the records it quarantined once it committed.
func (s *Store) write(batched bool, fn func(*txn) error) error {
	var t *txn
	run := func(tx *bbolt.Tx) error {
		t = &txn{Tx: tx}
		return fn(t)
	}
	var err error
	if batched {
		err = s.batch(run)
	} else {
		err = s.update(run)
	}
	if err == nil && t != nil {
		s.reportQuarantined(t.moved)
	}
	return err
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
// record: ErrNotFound as it is, anything else as failed does.
func (s *Store) result(op string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ErrNotFound
	case err != nil:
		return s.failed(op, err)
	}
	return nil
}

// failed maps a transaction's error: a key or value bbolt refuses for its
// size is ErrInvalidInput (the content, not the disk); anything else
// ErrUnavailable, nothing written.
func (s *Store) failed(op string, err error) error {
	if errors.Is(err, store.ErrDamaged) {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	if errors.Is(err, berrors.ErrKeyTooLarge) || errors.Is(err, berrors.ErrValueTooLarge) ||
		errors.Is(err, berrors.ErrKeyRequired) {
		return fmt.Errorf("bolt: %s: %w: %w", op, store.ErrInvalidInput, err)
	}
	return unavailable(op, err)
}

// Compact rewrites the database into a fresh file and replaces the old one,
// so that pages freed by deletions (purged payloads among them) no longer
// hold their old bytes anywhere in the file. Every other operation waits
// while it runs. If the swap fails half-way the store fails closed
// (ErrUnavailable) rather than serve from an unknown state.
func (s *Store) Compact(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.guard(&err)
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
	s.probe.mu.Lock()
	s.probe.at = time.Time{}
	s.probe.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// probeEvery is how long a Ping result is kept.
const probeEvery = time.Second

// probe is Ping's last write and its result.
type probe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// LowSpaceError is Ping's answer when the disk of the store's file has
// less than MinFree bytes free.
type LowSpaceError struct {
	Path       string
	Free, Want uint64
}

func (e *LowSpaceError) Error() string {
	return fmt.Sprintf("%d bytes free on the disk of %s, want at least %d (min_free)", e.Free, e.Path, e.Want)
}

// DefaultMinFree is Options.MinFree's default.
const DefaultMinFree = 32 << 20

// Ping writes a small key (the probe bucket) in a transaction of its own
// and waits for its fsync, then checks that the file system keeps MinFree
// bytes free: a full disk, a read-only file or a closed store fail it. It
// probes at most once a second; in between it returns the last result.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return unavailable("ping", err)
	}
	s.probe.mu.Lock()
	defer s.probe.mu.Unlock()
	if !s.probe.at.IsZero() && time.Since(s.probe.at) < probeEvery {
		return s.probe.err
	}
	err := s.write(false, func(t *txn) error {
		if s.opts.Fault != nil {
			if err := s.opts.Fault("probe"); err != nil {
				return err
			}
		}
		b, err := t.CreateBucketIfNotExists(bucketProbe)
		if err != nil {
			return err
		}
		return b.Put([]byte("ping"), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err != nil {
		err = unavailable("ping", err)
	} else if min := s.opts.MinFree; min > 0 {
		if free, ferr := freeBytes(s.path); ferr != nil {
			err = unavailable("ping", ferr)
		} else if free < uint64(min) {
			err = unavailable("ping", &LowSpaceError{Path: s.path, Free: free, Want: uint64(min)})
		}
	}
	s.probe.at, s.probe.err = time.Now(), err
	return err
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

// Accept implements store.Messages. The entries are appended in the
// acceptance's transaction; a duplicate writes neither.
func (s *Store) Accept(ctx context.Context, m *store.Message, ds []store.Delivery, entries ...audit.Entry) (*store.Message, error) {
	if err := checkAccept(ctx, m); err != nil {
		return nil, err
	}
	a, err := s.newAcceptance(m, ds, entries)
	if err != nil {
		return nil, err
	}
	var existing *store.Message
	// Batched: concurrent accepts share one commit and one fsync; the
	// function may run twice, so it starts from scratch each time.
	err = s.write(true, func(t *txn) error {
		var err error
		existing, err = s.acceptIn(t, a)
		return err
	})
	switch {
	case existing != nil:
		return existing, store.ErrDuplicate
	case errors.Is(err, errDeliveryExists):
		return nil, fmt.Errorf("bolt: accept: %w", err)
	case err != nil:
		return nil, s.failed("accept", err)
	}
	out := a.rec.Message
	return &out, nil
}

// checkAccept refuses, before anything is prepared, an acceptance whose
// context is done or whose message cannot be stored under its keys.
func checkAccept(ctx context.Context, m *store.Message) error {
	if err := ctx.Err(); err != nil {
		return unavailable("accept", err)
	}
	if err := store.ValidAcceptance(m); err != nil {
		return fmt.Errorf("bolt: accept: %w", err)
	}
	return nil
}

// acceptance is what Accept writes, all of it made before its transaction
// starts: the transaction may run twice and must find the same each time.
type acceptance struct {
	m        *store.Message
	rec      messageRecord
	queued   []store.Delivery
	key      []byte // the message record's key
	value    []byte // the message record, encoded
	prepared []audit.Entry
}

// newAcceptance prepares the entries, then the message record and its
// deliveries, and encodes the record.
func (s *Store) newAcceptance(m *store.Message, ds []store.Delivery, entries []audit.Entry) (*acceptance, error) {
	prepared, err := s.prepare("accept", entries)
	if err != nil {
		return nil, err
	}
	a := &acceptance{m: m, rec: acceptedRecord(m, len(ds)), prepared: prepared}
	if a.queued, err = acceptedDeliveries(m, ds, &a.rec); err != nil {
		return nil, err
	}
	if a.value, err = json.Marshal(&a.rec); err != nil {
		return nil, fmt.Errorf("bolt: accept: %w", err)
	}
	a.key = pairKey(m.From, m.ID)
	return a, nil
}

// acceptedRecord is the record of m as accepted with n deliveries open: a
// fresh status and none of what a previous life of the message left.
func acceptedRecord(m *store.Message, n int) messageRecord {
	rec := messageRecord{Message: *m, Open: n}
	rec.Status = store.StatusAccepted
	rec.Attempts = 0
	rec.Purged, rec.PurgedAt = false, time.Time{}
	rec.Deliveries = make([][2]string, 0, n)
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	return rec
}

// acceptedDeliveries fills in the deliveries of m (recipient, times,
// message) and refuses an invalid or repeated one. Each is named in rec,
// so that Purge finds it.
func acceptedDeliveries(m *store.Message, ds []store.Delivery, rec *messageRecord) ([]store.Delivery, error) {
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
	return queued, nil
}

// acceptIn writes the acceptance in t: the message record over nothing or
// over a denial, its recipient index entry, its deliveries, its consent
// index, its retention step and its audit entries. A message accepted
// before is returned with errRollback, and nothing is written.
func (s *Store) acceptIn(t *txn, a *acceptance) (*store.Message, error) {
	m := a.m
	old, err := t.message(a.key)
	if err != nil {
		return nil, err
	}
	if old != nil && old.Status != store.StatusDenied {
		return old, errRollback
	}
	if old != nil { // a denial: its place in the retention index goes with it
		if err := t.unschedule(old, a.key); err != nil {
			return nil, err
		}
	}
	if err := t.Bucket(bucketMessages).Put(a.key, a.value); err != nil {
		return nil, err
	}
	if err := t.index(m.To, m.ID, a.key, false); err != nil {
		return nil, err
	}
	if err := t.enqueueAll(a.queued); err != nil {
		return nil, err
	}
	if m.ConsentID != "" {
		if err := indexConsent(t.Tx, m.From, m.ConsentID, a.queued); err != nil {
			return nil, err
		}
	}
	if err := t.schedule(&a.rec.Message, a.key); err != nil {
		return nil, err
	}
	return nil, s.appendEntries(t.Tx, "accept", a.prepared)
}

// enqueueAll queues the deliveries of an acceptance. A delivery id already
// queued or dead-lettered for its recipient is errDeliveryExists.
func (t *txn) enqueueAll(queued []store.Delivery) error {
	queues, dead := t.Bucket(bucketQueues), t.Bucket(bucketDead)
	for _, d := range queued {
		if dead.Get(pairKey(d.Recipient, d.ID)) != nil {
			return errDeliveryExists
		}
		if err := enqueue(queues, d); err != nil {
			return err
		}
	}
	return nil
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
// entry and depth) and returns its record; ok is false when it is not there
// (a record that cannot be decoded is quarantined and is not there).
func (t *txn) takeQueued(recipient string, id []byte) (r deliveryRecord, ok bool, err error) {
	r, ok, err = t.queued(recipient, id)
	if err != nil || !ok {
		return r, ok, err
	}
	q := t.Bucket(bucketQueues).Bucket([]byte(recipient))
	if err := q.Bucket(bucketIndex).Delete(indexKey(r.visible, r.seq)); err != nil {
		return r, false, err
	}
	if err := q.Bucket(bucketDeliveries).Delete(id); err != nil {
		return r, false, err
	}
	if err := decDepth(q); err != nil {
		return r, false, err
	}
	return r, true, nil
}

func decDepth(q *bbolt.Bucket) error {
	if n := getUint64(q.Get(keyDepth)); n > 0 {
		return q.Put(keyDepth, putUint64(n-1))
	}
	return nil
}

// updateMessage applies fn to the record at key and writes it back when fn
// returns true. A missing record (or one quarantined here) is left alone.
func (t *txn) updateMessage(key []byte, fn func(*messageRecord) bool) error {
	rec, err := t.messageRecord(key)
	if err != nil || rec == nil {
		return err
	}
	if !fn(rec) {
		return nil
	}
	nv, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return t.Bucket(bucketMessages).Put(key, nv)
}

// index points to\x00id at the message key. An accepted message takes the
// entry over from a denied one; otherwise the first writer keeps it.
func (t *txn) index(to, id string, msgKey []byte, denial bool) error {
	rcpt := t.Bucket(bucketRecipients)
	ik := pairKey(to, id)
	cur := rcpt.Get(ik)
	switch {
	case cur == nil:
	case bytes.Equal(cur, msgKey):
		return nil
	case denial:
		return nil
	default:
		other, err := t.message(bytes.Clone(cur))
		if err != nil {
			return err
		}
		if other != nil && other.Status != store.StatusDenied {
			return nil
		}
	}
	return rcpt.Put(ik, msgKey)
}

// RecordDenial implements store.Messages. The denial is not recorded when
// (from, id) was accepted before; its entry is appended in either case.
func (s *Store) RecordDenial(ctx context.Context, m *store.Message, e audit.Entry) error {
	if err := ctx.Err(); err != nil {
		return unavailable("record denial", err)
	}
	if err := store.ValidMessage(m); err != nil {
		return fmt.Errorf("bolt: record denial: %w", err)
	}
	prepared, err := s.prepare("record denial", []audit.Entry{e})
	if err != nil {
		return err
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
	err = s.write(true, func(t *txn) error {
		old, err := t.message(key)
		if err != nil {
			return err
		}
		if old == nil || old.Status == store.StatusDenied {
			if old != nil {
				if err := t.unschedule(old, key); err != nil {
					return err
				}
			}
			if err := t.Bucket(bucketMessages).Put(key, value); err != nil {
				return err
			}
			if err := t.index(m.To, m.ID, key, true); err != nil {
				return err
			}
			if err := t.schedule(&rec.Message, key); err != nil {
				return err
			}
		}
		return s.appendEntries(t.Tx, "deny", prepared)
	})
	if err != nil {
		return s.failed("record denial", err)
	}
	return nil
}

// Message implements store.Messages.
func (s *Store) Message(ctx context.Context, from, id string) (*store.Message, error) {
	if err := check(ctx, "message", from, id); err != nil {
		return nil, err
	}
	var m *store.Message
	err := s.read(func(tx *bbolt.Tx) error {
		var err error
		m, err = getMessage(tx, pairKey(from, id))
		return err
	})
	if err != nil {
		return nil, s.failed("message", err)
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
	err := s.read(func(tx *bbolt.Tx) error {
		m = nil
		key := tx.Bucket(bucketRecipients).Get(pairKey(to, id))
		if key == nil {
			return nil
		}
		var err error
		m, err = getMessage(tx, key)
		return err
	})
	if err != nil {
		return nil, s.failed("message to", err)
	}
	if m == nil || m.To != to {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// getMessage decodes the record at key for a reader: nil when there is
// none, a *corruptError when it cannot be decoded.
func getMessage(tx *bbolt.Tx, key []byte) (*store.Message, error) {
	v := tx.Bucket(bucketMessages).Get(key)
	if v == nil {
		return nil, nil
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, &corruptError{kind: kindMessage, key: bytes.Clone(key), err: err}
	}
	return &rec.Message, nil
}

// messageRecord decodes the record at key in a write transaction; a record
// that cannot be decoded is quarantined and reads as none.
func (t *txn) messageRecord(key []byte) (*messageRecord, error) {
	msgs := t.Bucket(bucketMessages)
	v := msgs.Get(key)
	if v == nil {
		return nil, nil
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, t.quarantine(kindMessage, msgs, key, nil)
	}
	return &rec, nil
}

func (t *txn) message(key []byte) (*store.Message, error) {
	rec, err := t.messageRecord(key)
	if rec == nil || err != nil {
		return nil, err
	}
	return &rec.Message, nil
}

// Lease implements store.Queue. A delivery record that cannot be decoded
// is quarantined and skipped: the recipient's others are leased.
func (s *Store) Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("lease", err)
	}
	if max <= 0 || store.ValidKeys(recipient) != nil {
		return nil, nil
	}
	until := now.Add(visibility)
	var out []store.Delivery
	err := s.write(false, func(t *txn) error {
		out = out[:0]
		q := t.Bucket(bucketQueues).Bucket([]byte(recipient))
		if q == nil {
			return nil
		}
		idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
		// Collect first: bbolt cursors must not run across their own writes.
		type item struct{ key, id []byte }
		var due []item
		var bad [][]byte
		c := idx.Cursor()
		for k, v := c.First(); k != nil && len(due) < max; k, v = c.Next() {
			at, ok := indexTime(k)
			if !ok {
				bad = append(bad, bytes.Clone(k))
				continue
			}
			if at.After(now) {
				break
			}
			due = append(due, item{bytes.Clone(k), bytes.Clone(v)})
		}
		for _, k := range bad {
			// An index key that is not one: it leads nowhere, drop it.
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
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
				if err := t.quarantineQueued(recipient, it.id, it.key); err != nil {
					return err
				}
				continue
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
			if err := t.countAttempt(pairKey(r.messageFrom, r.messageID), int(r.attempts)); err != nil {
				return err
			}
			out = append(out, r.delivery(recipient, string(it.id)))
		}
		return nil
	})
	if err != nil {
		return nil, s.failed("lease", err)
	}
	return out, nil
}

// countAttempt raises the message's attempts to n (the most attempts of any
// of its deliveries).
func (t *txn) countAttempt(key []byte, n int) error {
	return t.updateMessage(key, func(rec *messageRecord) bool {
		if rec.Attempts >= n {
			return false
		}
		rec.Attempts = n
		return true
	})
}

// Ack implements store.Queue: the delivery goes, envelope included (an
// acknowledged payload is not kept until its retention period ends), with
// its "delivered" entry. Acks arriving together share one commit.
func (s *Store) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := check(ctx, "ack", recipient, deliveryID); err != nil {
		return err
	}
	err := s.write(true, func(t *txn) error {
		return s.endQueued(t, "ack", recipient, deliveryID, audit.KindDelivered, nil, func(rec *messageRecord) {
			if rec.Open > 0 {
				rec.Open--
			}
			if rec.Open == 0 && rec.Status == store.StatusAccepted {
				rec.Status = store.StatusDelivered
				rec.UpdatedAt = now
			}
		})
	})
	return s.result("ack", err)
}

// endQueued takes a delivery out of its recipient's queue (ErrNotFound if
// it is not there), hands its record to keep (nil: it goes), applies update
// to its message and appends the delivery's entry of kind (DeliveryEntry).
func (s *Store) endQueued(t *txn, op, recipient, deliveryID, kind string, keep func(*deliveryRecord) error,
	update func(*messageRecord)) error {
	r, ok, err := t.takeQueued(recipient, []byte(deliveryID))
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
	err = t.updateMessage(pairKey(r.messageFrom, r.messageID), func(rec *messageRecord) bool {
		update(rec)
		m := rec.Message
		msg = &m
		return true
	})
	if err != nil {
		return err
	}
	e, err := audit.Prepare(store.DeliveryEntry(r.delivery(recipient, deliveryID), msg, kind), s.opts.Replica, s.now())
	if err != nil {
		return fmt.Errorf("%s entry: %w", kind, err)
	}
	return s.appendEntries(t.Tx, op, []audit.Entry{e})
}

// Delivery implements store.Queue.
func (s *Store) Delivery(ctx context.Context, recipient, deliveryID string) (*store.Delivery, error) {
	if err := check(ctx, "delivery", recipient, deliveryID); err != nil {
		return nil, err
	}
	var out *store.Delivery
	err := s.read(func(tx *bbolt.Tx) error {
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
			return &corruptError{kind: kindDelivery, recipient: recipient, key: []byte(deliveryID), err: err}
		}
		d := r.delivery(recipient, deliveryID)
		out = &d
		return nil
	})
	return out, s.result("delivery", err)
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
		return 0, s.failed("depth", err)
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
