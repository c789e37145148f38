// Package kvstore is the store's domain written once, over the
// transactional key-value contract (kv): messages, deliveries and queues,
// dead letters, consents, retention and purge, the audit chains, quarantine
// and check. A backend is a kv driver (boltkv, rediskv).
//
// Every change goes through one committer per store, which runs the
// changes queued while the previous commit was in flight in one kv.Update
// (group commit: one fsync, one round of guards). Each change's writes
// land only if it succeeds: a change that fails after writing is taken out
// and the others run again without it. A lost race (kv.ErrConflict) runs
// the batch again; a lost answer (kv.ErrUnknown) is ErrOutcomeUnknown.
//
// Layout (keys use NUL as separator; identifiers containing NUL are refused):
//
//	messages    from\x00id -> JSON message record (+ counts of open and
//	            dead-lettered deliveries, and the (recipient, id) of each)
//	recipients  to\x00id -> from\x00id (first accepted message wins)
//	queue       recipient\x00 visible_at(12) seq(8) -> delivery id (lease order)
//	deliveries  recipient\x00id -> binary record (encode.go)
//	depth       recipient -> queued deliveries(8) next seq(8)
//	dead        recipient\x00id -> binary record; its visible time is the
//	            time it was dead-lettered
//	deadindex   dead_at(12) seq(8) recipient\x00id -> recipient\x00id
//	consents    from\x00consent\x00recipient -> empty
//	withdrawn   from\x00consent -> time of the withdrawal (RFC 3339)
//	retention   due_at(12) from\x00id -> empty: the message's next step of
//	            Purge (store.Message.Retire)
//	heads       replica -> count(8) head hash: the audit chains' heads
//	chain       replica\x00seq(8) -> entry JSON
//	checkpoints replica\x00seq(8) -> checkpoint JSON
//	quarantine  kind\x00original key\x00time(8) -> bytes that could not be decoded
//	probe       ping -> time of the last Ping
//	journal     replica\x00id(8) -> 1: the marker of a journaled change
//	            (journal.go)
package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/journal"
	"github.com/xborder/xborder/gateway/store/kv"
)

const (
	bMessages    = "messages"
	bRecipients  = "recipients"
	bQueue       = "queue"
	bDeliveries  = "deliveries"
	bDepth       = "depth"
	bDead        = "dead"
	bDeadIndex   = "deadindex"
	bConsents    = "consents"
	bWithdrawn   = "withdrawn"
	bRetention   = "retention"
	bHeads       = "heads"
	bChain       = "chain"
	bCheckpoints = "checkpoints"
	bQuarantine  = "quarantine"
	bProbe       = "probe"
)

// Options tune New.
type Options struct {
	// Replica names this gateway's audit chain: the entries of the store's
	// changes go there. Empty: a change with entries is refused.
	Replica string
	// Clock stamps those entries (default time.Now).
	Clock func() time.Time
	// Logger reports quarantined records (default slog.Default()).
	Logger *slog.Logger
	// OnQuarantine, when set, is told of each record moved to quarantine
	// (kind: "message", "delivery", "dead_letter"), for a metric.
	OnQuarantine func(kind string)
	// Fault, when set, is called inside every change (op names it:
	// "accept", "deny", "ack", "dead letter", "purge", "append", "probe",
	// …) after its changes and before its audit entries are appended; an
	// error fails the change, and nothing of it is written. For tests.
	Fault func(op string) error
	// Probe, when set, is called after Ping's write succeeded: a check of
	// the backend's own (free space on the disk of a file).
	Probe func(ctx context.Context) error
	// Writable, when set, is asked before each change is queued: an error
	// refuses it (a server known not to be durable).
	Writable func(ctx context.Context) error
	// Name is used in errors (default "kvstore").
	Name string
	// MaxBatch bounds the changes one commit carries (default 128).
	MaxBatch int
	// Journal, when set on a replicated store (the kv.DB is kv.Grouped),
	// keeps each change this replica acknowledged until the group has
	// held it for Settle (default DefaultSettle), and makes again the ones
	// a switch of primary erased (journal.go). New does not close it.
	Journal *journal.Journal
	Settle  time.Duration
	// OnReapplied, when set, is told of each change the journal made
	// again after a failover (op names it), for a metric.
	OnReapplied func(op string)
}

// Store is a store.Store over a kv.DB.
type Store struct {
	db   kv.DB
	opts Options
	log  *slog.Logger

	ops   chan *op
	quit  chan struct{}
	done  chan struct{}
	close sync.Once

	grouped kv.Grouped // db, when it is replicated
	rmu     sync.Mutex // one Reconcile at a time
	// redoUnknown: journal ids made again whose commit's outcome was
	// unknown (a later round finding them present counts them re-applied).
	redoUnknown map[uint64]bool
	jdone       chan struct{}
	jstop       context.CancelFunc
	// The journal writer: committed batches wait there for their
	// journal's fsync while the committer commits the next (journal.go).
	jq     chan journalBatch
	jwg    sync.WaitGroup // batches handed to the writer, not yet journaled
	jwdone chan struct{}

	probe probe
	// stale is set by any call that found the store unavailable: Ping's
	// kept pass no longer stands, and the next Ping probes again.
	stale atomic.Bool
}

var _ store.Store = (*Store)(nil)

// New starts the store's committer over db; Close stops it and closes db.
func New(db kv.DB, opts Options) *Store {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = "kvstore"
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 128
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	s := &Store{db: db, opts: opts, log: opts.Logger.With("component", "store"),
		ops: make(chan *op), quit: make(chan struct{}), done: make(chan struct{})}
	s.grouped, _ = db.(kv.Grouped)
	s.redoUnknown = map[uint64]bool{}
	if s.journaling() {
		s.jq, s.jwdone = make(chan journalBatch), make(chan struct{})
		go s.journalWriter()
	}
	go s.commitLoop()
	if s.journaling() {
		var ctx context.Context
		ctx, s.jstop = context.WithCancel(context.Background())
		s.jdone = make(chan struct{})
		go s.journalLoop(ctx)
	}
	return s
}

// DB is the key-value store under the store (tests count its commits).
func (s *Store) DB() kv.DB { return s.db }

func (s *Store) now() time.Time { return s.opts.Clock() }

// Close stops the committer (after its batch in flight) and closes the
// key-value store. Later calls fail with store.ErrUnavailable.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		if s.jstop != nil {
			s.jstop()
			<-s.jdone
		}
		close(s.quit)
		<-s.done
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("%s: close: %w", s.opts.Name, cerr)
		}
	})
	return err
}

func (s *Store) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

var errClosed = errors.New("the store is closed")

// op is one change waiting for the committer. fn may run more than once
// (a batch run again): it starts from scratch each time.
type op struct {
	ctx  context.Context
	name string
	fn   func(t *txn) error
	keys []kv.Key // what fn will read, for kv.Prefetch
	done chan error
	txn  *txn
	// args are the change's arguments as journaled (nil: not journaled),
	// jid the id its marker was written under in this run (0: none).
	args json.RawMessage
	jid  uint64
}

// change runs fn as one change through the committer and waits for its
// commit. Its error is fn's own, or a commit's wrapped in ErrUnavailable.
func (s *Store) change(ctx context.Context, name string, fn func(t *txn) error) error {
	return s.changeOp(ctx, name, nil, nil, fn)
}

// changeJ is change for a change the journal keeps once acknowledged,
// with args to make it again (journal.go); without a journal, change.
func (s *Store) changeJ(ctx context.Context, name string, args any, fn func(t *txn) error) error {
	return s.changeOp(ctx, name, args, nil, fn)
}

// changeOp is change with the journal's args (nil: not journaled) and the
// keys fn will read (nil: none), which the committer prefetches for every
// change of a batch at once (kv.Prefetcher): on a server the batch's reads
// are one round trip, not one per key and change.
func (s *Store) changeOp(ctx context.Context, name string, args any, keys []kv.Key, fn func(t *txn) error) error {
	o := &op{ctx: ctx, name: name, fn: fn, keys: keys, done: make(chan error, 1)}
	if redo := redoFrom(ctx); s.journaling() && (args != nil || redo != nil) {
		if redo == nil {
			raw, err := json.Marshal(args)
			if err != nil {
				return fmt.Errorf("%s: %s: journal: %w", s.opts.Name, name, err)
			}
			o.args = raw
		}
		o.fn = s.journaled(o, redo, fn)
	}
	if err := ctx.Err(); err != nil {
		return s.unavailable(name, err)
	}
	if s.closed() {
		return s.unavailable(name, errClosed)
	}
	if s.opts.Writable != nil {
		if err := s.opts.Writable(ctx); err != nil {
			return s.unavailable(name, err)
		}
	}
	select {
	case s.ops <- o:
	case <-s.quit:
		return s.unavailable(name, errClosed)
	case <-ctx.Done():
		return s.unavailable(name, ctx.Err())
	}
	// Once taken, the change may commit: wait for its outcome.
	return <-o.done
}

func (s *Store) commitLoop() {
	defer close(s.done)
	if s.jq != nil {
		defer func() {
			close(s.jq)
			<-s.jwdone
		}()
	}
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.quit:
			return
		}
		batch := []*op{first}
	more:
		for len(batch) < s.opts.MaxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break more
			}
		}
		s.commit(batch)
	}
}

// errRerun ends a batch's update whose change failed after writing.
var errRerun = errors.New("kvstore: run the batch again without the failed change")

// errNothingWritten ends a batch's update in which no change wrote: there
// is nothing to commit, and a commit would still cost the backend its
// syncs (bbolt syncs an empty commit twice). Its reads stand as a view's
// do (kv.DB.Update: fn's error returned after the driver's check).
var errNothingWritten = errors.New("kvstore: nothing to commit")

// maxConflicts bounds how often a batch runs again after lost races.
const maxConflicts = 64

// commit runs the batch in one update. A change that fails without writing
// fails alone; one that fails after writing is taken out and the rest run
// again.
func (s *Store) commit(batch []*op) {
	conflicts := 0
	for len(batch) > 0 {
		results := make([]error, len(batch))
		failed := -1
		var pos kv.Position
		ctx := context.Background()
		if s.journaling() {
			ctx = kv.WithPosition(ctx, &pos)
		}
		err := s.guarded(func() error {
			return s.db.Update(ctx, func(tx kv.Tx) error {
				var keys []kv.Key
				for _, o := range batch {
					keys = append(keys, o.keys...)
				}
				// An optimisation only: after an error each read asks
				// for itself.
				_ = kv.Prefetch(tx, keys)
				for i, o := range batch {
					o.txn = nil
					if err := o.ctx.Err(); err != nil {
						results[i] = s.unavailable(o.name, err)
						continue
					}
					t := &txn{tx: tx, s: s}
					o.txn = t
					err := o.fn(t)
					if errors.Is(err, kv.ErrConflict) {
						return err // a read saw two versions: the whole batch again
					}
					if err != nil && t.writes > 0 {
						failed, results[i] = i, err
						return errRerun
					}
					results[i] = err
				}
				for _, o := range batch {
					if o.txn != nil && o.txn.writes > 0 {
						return nil
					}
				}
				return errNothingWritten
			})
		})
		if errors.Is(err, errNothingWritten) {
			err = nil
		}
		switch {
		case errors.Is(err, errRerun):
			batch[failed].done <- s.failed(batch[failed].name, results[failed])
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		case errors.Is(err, kv.ErrConflict) && conflicts < maxConflicts:
			conflicts++
			continue
		case errors.Is(err, kv.ErrUnknown):
			if s.journaling() {
				s.jwg.Add(1)
				s.jq <- journalBatch{batch: batch, results: results, pos: pos, unknown: err}
				return
			}
			for _, o := range batch {
				o.done <- fmt.Errorf("%s: %s: %w: %w: %w", s.opts.Name, o.name, store.ErrOutcomeUnknown, store.ErrUnavailable, err)
			}
			return
		case err != nil:
			for _, o := range batch {
				o.done <- s.unavailable(o.name, err)
			}
			return
		}
		for i, o := range batch {
			if results[i] == nil {
				s.reportQuarantined(o.txn.moved)
			}
		}
		if s.journaling() {
			s.jwg.Add(1)
			s.jq <- journalBatch{batch: batch, results: results, pos: pos}
			return
		}
		for i, o := range batch {
			o.done <- results[i]
		}
		return
	}
}

// txn is one change's view of the batch's transaction: it counts the
// change's writes and the records it quarantined.
type txn struct {
	tx     kv.Tx
	s      *Store
	writes int
	moved  []quarantined
	// redoAt, set when the journal makes a change again, is when it was
	// first committed: its audit entries are marked re-applied.
	redoAt time.Time
}

func (t *txn) get(bucket string, key []byte) ([]byte, error) {
	v, ok, err := t.tx.Get(bucket, key)
	if err != nil || !ok {
		return nil, err
	}
	return v, nil
}

func (t *txn) put(bucket string, key, value []byte) error {
	if len(key) > kv.MaxKey {
		return fmt.Errorf("%w: a key of %d bytes", store.ErrInvalidInput, len(key))
	}
	if value == nil {
		value = []byte{}
	}
	if err := t.tx.Put(bucket, key, value); err != nil {
		t.writes++ // a failed write may have left something: run the batch again
		return err
	}
	t.writes++
	return nil
}

// prefetch reads keys in one round trip where reads are round trips
// (kv.Prefetcher); an error leaves the reads to ask for themselves.
func (t *txn) prefetch(keys []kv.Key) {
	_ = kv.Prefetch(t.tx, keys)
}

func (t *txn) del(bucket string, key []byte) error {
	t.writes++
	return t.tx.Delete(bucket, key)
}

func (t *txn) fault(op string) error {
	if f := t.s.opts.Fault; f != nil {
		return f(op)
	}
	return nil
}

// view runs fn in a read transaction.
func (s *Store) view(ctx context.Context, fn func(r kv.Reader) error) error {
	if s.closed() {
		return errClosed
	}
	return s.guarded(func() error { return s.db.View(ctx, fn) })
}

// guarded turns a panic of the backend (bbolt on a damaged page, or a page
// pointing outside the mapped file) into an error, so that one bad page
// fails the calls that reach it and no others.
func (s *Store) guarded(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("store page unreadable; run `xborder store check`", "panic", fmt.Sprint(p))
			err = fmt.Errorf("%w: the backing store failed (%v)", store.ErrDamaged, p)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

// read runs fn in a read transaction; a record it cannot decode is
// quarantined and fn runs again.
func (s *Store) read(ctx context.Context, fn func(r kv.Reader) error) error {
	for range 8 {
		err := s.view(ctx, fn)
		var ce *corruptError
		if !errors.As(err, &ce) {
			return err
		}
		if err := s.change(ctx, "quarantine", func(t *txn) error { return t.quarantineFound(ce) }); err != nil {
			return fmt.Errorf("%v; moving it to quarantine: %w", ce, err)
		}
	}
	return errors.New("records keep failing to decode")
}

// Settle returns nil once what the store's primary holds is held as its
// commits' acknowledgements require (kv.Settler; nil at once for a store
// without replicas), else an ErrOutcomeUnknown with ErrUnavailable: an
// answer built from a record a read found (a retry's 200, a read-back
// after an unknown outcome) waits for it, so that a failover cannot erase
// what it says.
func (s *Store) Settle(ctx context.Context) error {
	st, ok := s.db.(kv.Settler)
	if !ok {
		return nil
	}
	if err := st.Settle(ctx); err != nil {
		return fmt.Errorf("%s: settle: %w: %w: %w", s.opts.Name, store.ErrOutcomeUnknown, store.ErrUnavailable, err)
	}
	return nil
}

func (s *Store) unavailable(op string, err error) error {
	s.stale.Store(true)
	return fmt.Errorf("%s: %s: %w: %w", s.opts.Name, op, store.ErrUnavailable, err)
}

// failed maps an error of a change or a read: what the store says of
// itself passes, anything else is ErrUnavailable.
func (s *Store) failed(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrUnavailable):
		s.stale.Store(true)
		return err
	case errors.Is(err, store.ErrNotFound):
		return err
	case errors.Is(err, errDeliveryExists), errors.Is(err, store.ErrInvalidInput):
		return fmt.Errorf("%s: %s: %w", s.opts.Name, op, err)
	}
	return s.unavailable(op, err)
}

// check starts a call that looks a record up by keys: a done context is
// ErrUnavailable, a key that cannot exist is ErrNotFound.
func (s *Store) check(ctx context.Context, op string, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return s.unavailable(op, err)
	}
	if store.ValidKeys(keys...) != nil {
		return store.ErrNotFound
	}
	return nil
}

// probeEvery is how long a Ping result is kept.
const probeEvery = time.Second

type probe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// Ping writes the probe key through the committer and waits for its
// commit, then runs Options.Probe. After a pass it probes again only a
// second later; after a failure, at the next call.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return s.unavailable("ping", err)
	}
	s.probe.mu.Lock()
	defer s.probe.mu.Unlock()
	// A pass is kept for a second (readiness polls; each probe is an
	// fsynced write); a failure is not, so that a store that is back is
	// seen at the next probe.
	if !s.probe.at.IsZero() && s.probe.err == nil && time.Since(s.probe.at) < probeEvery && !s.closed() && !s.stale.Load() {
		return nil
	}
	s.stale.Store(false)
	err := s.change(ctx, "ping", func(t *txn) error {
		if err := t.fault("probe"); err != nil {
			return err
		}
		return t.put(bProbe, []byte("ping"), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err == nil && s.opts.Probe != nil {
		err = s.opts.Probe(ctx)
	}
	if err != nil {
		err = s.failed("ping", err)
	}
	s.probe.at, s.probe.err = time.Now(), err
	return err
}

func pairKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// prefixEnd is the first key after every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
