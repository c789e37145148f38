package kvstore

// The journal: nothing acknowledged is erased by a failover.
//
// A replicated store (Redis behind Sentinel, kv.Grouped) acknowledges a
// change once a replica holds it, but a failover can still erase it: the
// primary and that replica lost together, or a frozen primary thawed past
// its failover, acknowledged by the replica still attached to it, both
// resynced from the new primary. So each gateway replica keeps every
// change it acknowledged in a journal of its own (Options.Journal, a bbolt
// file on its disk), written and fsynced after the commit and before the
// answer (by a writer beside the committer, so that one batch's fsync
// overlaps the next batch's commit), until the group has held it for
// Options.Settle. A commit of unknown outcome is journaled too: a retry
// that finds it is answered without a commit of its own.
//
// What is journaled is the change as the domain made it — its operation
// and arguments (accept, record denial, ack, dead letter, requeue,
// withdraw consent, purge, append) — not its raw key writes: a write of a
// key others share (a recipient's depth, a queue, this replica's audit
// head) replayed after others changed it would be wrong, and its guard
// would refuse it. Each journaled commit also writes a marker, bucket
// journal, key replica\x00id, in the same atomic commit: the marker is
// present on a primary exactly when the change is. A change whose commit
// wrote nothing (a duplicate acceptance) is not journaled.
//
// Each commit reports where it landed (kv.Position: the primary's
// replication id and an offset, read on the commit's own connection). A
// record leaves the journal once the primary is the one it landed on, at
// least Settle after it, with every attached replica (and at least the
// acknowledgement's count) online and past its offset; its marker is
// deleted afterwards (every marker of this replica below the lowest id
// still journaled). A record that landed on another primary than the one
// in charge now (a switch of primary, seen at the next tick or at start)
// is checked against it: marker present, it is restamped and settles on
// the new primary; marker absent, the change is made again through the
// domain, in journal order, as one change whose commit first reads the
// marker (absent, else nothing is done: a change is re-applied at most
// once, even across a crash) and writes it. The domain's own rules make
// the change again only where it still applies: an acceptance of a
// message accepted since (the sender's retry through another replica) is
// a duplicate and writes nothing; an ack or dead letter of a delivery no
// longer queued, or a requeue of one no longer dead, is not found. The
// audit entries it appends are linked to the chain's head as it is now
// (every chain is one replica's, and only it writes there, so re-linking
// keeps the chain valid), keep the time of the original event and carry
// ReappliedAt. Checkpoints are not re-applied: one signed for a head that
// a failover erased would not verify; the audit log signs a new one once
// the chain has grown. Leases and releases are not journaled: lost, a
// delivery is offered again with the same id. Re-applied changes are
// counted (Options.OnReapplied) and logged by operation and journal id.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/journal"
	"github.com/xborder/xborder/gateway/store/kv"
)

const bJournal = "journal"

// DefaultSettle is how long the group must hold a change, with the same
// primary, before it leaves the journal.
const DefaultSettle = 30 * time.Second

// The arguments journaled with each operation, enough to make it again.
type (
	acceptArgs struct {
		M       store.Message    `json:"m"`
		Ds      []store.Delivery `json:"ds"`
		Entries []audit.Entry    `json:"entries,omitempty"`
	}
	denialArgs struct {
		M store.Message `json:"m"`
		E audit.Entry   `json:"e"`
	}
	deliveryArgs struct {
		Recipient string    `json:"recipient"`
		ID        string    `json:"id"`
		Now       time.Time `json:"now"`
	}
	consentArgs struct {
		From    string    `json:"from"`
		Consent string    `json:"consent"`
		Now     time.Time `json:"now"`
	}
	purgeArgs struct {
		Now time.Time `json:"now"`
	}
	appendArgs struct {
		Replica string      `json:"replica"`
		E       audit.Entry `json:"e"`
	}
)

// redoState is a journaled change being made again: its record, and what
// the commit did.
type redoState struct {
	rec       journal.Record
	reapplied bool
	present   bool // its marker was there when its commit ran
	pos       kv.Position
}

type redoKey struct{}

func redoFrom(ctx context.Context) *redoState {
	st, _ := ctx.Value(redoKey{}).(*redoState)
	return st
}

func (s *Store) journaling() bool { return s.opts.Journal != nil && s.grouped != nil }

func markKey(replica string, id uint64) []byte { return seqKey(replica, id) }

// journaled wraps a change's fn for the journal: a new change that wrote
// something writes its marker under a new id; a change made again first
// reads its marker and does nothing if it is there.
func (s *Store) journaled(o *op, redo *redoState, fn func(t *txn) error) func(t *txn) error {
	return func(t *txn) error {
		o.jid = 0
		if redo != nil {
			_, ok, err := t.tx.Get(bJournal, markKey(s.opts.Replica, redo.rec.ID))
			if err != nil || ok {
				redo.present = ok
				return err
			}
			t.redoAt = redo.rec.At
		}
		if err := fn(t); err != nil || t.writes == 0 {
			return err
		}
		id := s.opts.Journal.NextID()
		if redo != nil {
			id = redo.rec.ID
		}
		o.jid = id
		return t.put(bJournal, markKey(s.opts.Replica, id), []byte{1})
	}
}

// journalBatch is a committed batch on its way to the journal, then to
// its callers; unknown: the commit's outcome is unknown.
type journalBatch struct {
	batch   []*op
	results []error
	pos     kv.Position
	unknown error
}

// journalWriter journals each committed batch and then answers it. It
// runs beside the committer, so that a batch's fsync overlaps the next
// batch's commit; no answer leaves before its batch is journaled.
func (s *Store) journalWriter() {
	defer close(s.jwdone)
	for jb := range s.jq {
		s.record(jb.batch, jb.results, jb.pos, jb.unknown != nil)
		for i, o := range jb.batch {
			if jb.unknown != nil {
				o.done <- fmt.Errorf("%s: %s: %w: %w: %w", s.opts.Name, o.name, store.ErrOutcomeUnknown, store.ErrUnavailable, jb.unknown)
			} else {
				o.done <- jb.results[i]
			}
		}
		s.jwg.Done()
	}
}

// record journals the batch's changes that committed with a marker,
// before any of them is answered; the ones it could not journal are
// answered outcome unknown. unknown: the commit's outcome is unknown (its
// answer lost, or too few replicas in time): its changes are journaled
// all the same, where they were applied (pos) or, not knowing, nowhere
// (checked at the next round) — a retry of such a change finds it and
// is answered without a commit of its own, so this is its only journal.
func (s *Store) record(batch []*op, results []error, pos kv.Position, unknown bool) {
	now := time.Now()
	var recs []journal.Record
	var which []int
	for i, o := range batch {
		if results[i] != nil || o.jid == 0 {
			continue
		}
		if st := redoFrom(o.ctx); st != nil {
			if !unknown {
				st.reapplied, st.pos = true, pos
			}
			continue
		}
		recs = append(recs, journal.Record{ID: o.jid, Op: o.name, Args: o.args, At: now, Epoch: pos.Epoch, Offset: pos.Offset})
		which = append(which, i)
	}
	if err := s.opts.Journal.Put(recs); err != nil && unknown {
		s.log.Error("journal: changes of outcome unknown not journaled", "changes", len(recs), "error", err.Error())
	} else if err != nil {
		s.log.Error("journal: changes committed but not journaled; answered outcome unknown", "changes", len(recs), "error", err.Error())
		for _, i := range which {
			results[i] = fmt.Errorf("%s: %s: %w: %w: journal: %w", s.opts.Name, batch[i].name, store.ErrOutcomeUnknown, store.ErrUnavailable, err)
		}
	}
}

// ReconcileStats says what one Reconcile did.
type ReconcileStats struct {
	// Checked: records that landed on another primary than the one now.
	Checked int
	// Present: of those, changes the primary holds (their marker found).
	Present int
	// Reapplied: changes made again.
	Reapplied int
	// Superseded: changes missing that the domain found no longer apply.
	Superseded int
	// Failed: changes missing that could not be made again (logged).
	Failed int
	// Settled: records that left the journal.
	Settled int
	// Left: records still journaled.
	Left int
}

// Reconcile runs one round of the journal now (the store runs it every
// tick by itself): changes that landed on another primary are checked
// against the one in charge and made again if missing; records the group
// has held for the settle period leave the journal.
func (s *Store) Reconcile(ctx context.Context) (ReconcileStats, error) {
	var st ReconcileStats
	if !s.journaling() {
		return st, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	g, err := s.grouped.Group(ctx)
	if err != nil {
		return st, s.unavailable("journal", err)
	}
	recs, err := s.opts.Journal.Records()
	if err != nil {
		return st, err
	}
	var foreign []journal.Record
	var settled []uint64
	for _, r := range recs {
		switch {
		case r.Epoch != g.Epoch:
			foreign = append(foreign, r)
		case time.Since(r.At) >= s.opts.Settle && g.Holds(r.Offset, s.grouped.AckReplicas()):
			settled = append(settled, r.ID)
		}
	}
	st.Checked = len(foreign)
	if len(foreign) > 0 {
		err = s.restore(ctx, g, foreign, &st)
	}
	if len(settled) > 0 {
		if rerr := s.opts.Journal.Remove(settled); rerr != nil {
			return st, errors.Join(err, rerr)
		}
		st.Settled = len(settled)
		err = errors.Join(err, s.trimMarkers(ctx))
	}
	st.Left = len(recs) - st.Settled
	return st, err
}

// restore checks records that landed on another primary than g's.
func (s *Store) restore(ctx context.Context, g kv.Group, recs []journal.Record, st *ReconcileStats) error {
	present := map[uint64]bool{}
	lo, hi := recs[0].ID, recs[len(recs)-1].ID
	err := s.view(ctx, func(r kv.Reader) error {
		clear(present)
		return r.Scan(bJournal, markKey(s.opts.Replica, lo), markKey(s.opts.Replica, hi+1), func(k, _ []byte) error {
			present[binary.BigEndian.Uint64(k[len(k)-8:])] = true
			return nil
		})
	})
	if err != nil {
		return s.failed("journal", err)
	}
	var restamped []journal.Record
	defer func() {
		if err := s.opts.Journal.Put(restamped); err != nil {
			s.log.Error("journal: restamping checked changes", "error", err.Error())
		}
	}()
	online := 0
	for _, r := range g.Replicas {
		if r.Online {
			online++
		}
	}
	canAck := online >= s.grouped.AckReplicas()
	reapplied := func(r journal.Record) {
		delete(s.redoUnknown, r.ID)
		st.Reapplied++
		s.log.Warn("journal: change re-applied after a switch of primary erased it", "op", r.Op, "journal_id", r.ID)
		if s.opts.OnReapplied != nil {
			s.opts.OnReapplied(r.Op)
		}
	}
	for _, r := range recs {
		now := time.Now()
		if present[r.ID] {
			if s.redoUnknown[r.ID] {
				reapplied(r) // the earlier try, answered outcome unknown, committed
			} else {
				st.Present++
			}
			r.At, r.Epoch, r.Offset = now, g.Epoch, g.Offset
			restamped = append(restamped, r)
			continue
		}
		if !canAck {
			// A change made again now would wait for replicas that are not
			// there and be answered outcome unknown: wait for them.
			return s.unavailable("journal", fmt.Errorf("changes to make again wait for %d replicas online, %d are", s.grouped.AckReplicas(), online))
		}
		rs, err := s.redo(ctx, r)
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			// Refused for what it is (it cannot be made again): said, and
			// kept no longer than the others, so that it blocks nothing.
			st.Failed++
			s.log.Error("journal: a change erased by a switch of primary cannot be made again", "op", r.Op, "journal_id", r.ID, "error", err.Error())
			r.At, r.Epoch, r.Offset = now, g.Epoch, g.Offset
			restamped = append(restamped, r)
			continue
		}
		if err != nil {
			// Unavailable now, or committed without enough replicas in
			// time: the next tick checks again, in order.
			if errors.Is(err, store.ErrOutcomeUnknown) {
				s.redoUnknown[r.ID] = true
			}
			s.log.Warn("journal: re-applying a change after a switch of primary failed; trying again", "op", r.Op, "journal_id", r.ID, "error", err.Error())
			return err
		}
		tried := s.redoUnknown[r.ID]
		delete(s.redoUnknown, r.ID)
		r.At, r.Epoch, r.Offset = now, g.Epoch, g.Offset
		switch {
		case rs.reapplied, rs.present && tried:
			if rs.reapplied {
				r.Epoch, r.Offset = rs.pos.Epoch, rs.pos.Offset
			}
			reapplied(r)
		case rs.present:
			st.Present++
		default:
			st.Superseded++
			s.log.Info("journal: change missing after a switch of primary no longer applies", "op", r.Op, "journal_id", r.ID)
		}
		restamped = append(restamped, r)
	}
	s.log.Info("journal: changes checked after a switch of primary", "checked", len(recs),
		"present", st.Present, "reapplied", st.Reapplied, "superseded", st.Superseded, "failed", st.Failed)
	return nil
}

// redo makes the change of r again through the domain.
func (s *Store) redo(ctx context.Context, r journal.Record) (*redoState, error) {
	rs := &redoState{rec: r}
	ctx = context.WithValue(ctx, redoKey{}, rs)
	if r.Args == nil {
		args, err := s.opts.Journal.ArgsOf(r.ID)
		if err != nil {
			return rs, err
		}
		r.Args = args
	}
	var err error
	decode := func(v any) bool {
		if e := json.Unmarshal(r.Args, v); e != nil {
			err = fmt.Errorf("journal: record %d (%s) does not decode: %w", r.ID, r.Op, e)
			return false
		}
		return true
	}
	switch r.Op {
	case "accept":
		var a acceptArgs
		if decode(&a) {
			_, err = s.Accept(ctx, &a.M, a.Ds, a.Entries...)
		}
	case "record denial":
		var a denialArgs
		if decode(&a) {
			err = s.RecordDenial(ctx, &a.M, a.E)
		}
	case "ack", "dead letter", "requeue":
		var a deliveryArgs
		if decode(&a) {
			switch r.Op {
			case "ack":
				err = s.Ack(ctx, a.Recipient, a.ID, a.Now)
			case "dead letter":
				err = s.DeadLetter(ctx, a.Recipient, a.ID, a.Now)
			default:
				err = s.Requeue(ctx, a.Recipient, a.ID, a.Now)
			}
		}
	case "withdraw consent":
		var a consentArgs
		if decode(&a) {
			err = s.WithdrawConsent(ctx, a.From, a.Consent, a.Now)
		}
	case "purge":
		var a purgeArgs
		if decode(&a) {
			_, err = s.Purge(ctx, a.Now)
		}
	case "append":
		var a appendArgs
		if decode(&a) {
			_, err = s.Append(ctx, a.Replica, a.E)
		}
	default:
		err = fmt.Errorf("journal: record %d of an unknown operation", r.ID)
	}
	if errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrNotFound) {
		err = nil // no longer applies
	}
	return rs, err
}

// trimMarkers deletes this replica's markers below the lowest id still
// journaled. It runs in the committer, once the journal writer has
// journaled every batch committed before (or answered it as not): ids
// handed out after it was queued are above its bound.
func (s *Store) trimMarkers(ctx context.Context) error {
	bound := s.opts.Journal.NextID()
	err := s.change(ctx, "journal trim", func(t *txn) error {
		s.jwg.Wait()
		recs, err := s.opts.Journal.Records()
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			bound = min(bound, recs[0].ID)
		}
		var keys [][]byte
		err = t.tx.Scan(bJournal, markKey(s.opts.Replica, 0), markKey(s.opts.Replica, bound), func(k, _ []byte) error {
			keys = append(keys, append([]byte{}, k...))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := t.del(bJournal, k); err != nil {
				return err
			}
		}
		return nil
	})
	return s.failed("journal trim", err)
}

// journalLoop reconciles at start and then every tick until Close.
func (s *Store) journalLoop(ctx context.Context) {
	defer close(s.jdone)
	every := min(max(s.opts.Settle/10, 50*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("journal: reconcile", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
