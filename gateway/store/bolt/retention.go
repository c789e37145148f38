package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// purgeBatch bounds the messages one Purge transaction handles, so that a
// backlog (after downtime) does not hold the writer for long.
const purgeBatch = 256

// retentionKey orders the retention bucket by the time of each message's
// next step (its purge, then its forgetting): the 12 time bytes of
// indexKey, then the message key.
func retentionKey(at time.Time, msgKey []byte) []byte {
	return append(indexKey(at, 0)[:12], msgKey...)
}

// schedule puts the message at key in the retention index at its next
// step (store.Message.Retire from the message's creation: its purge, or for
// a denial its forgetting); an accepted message without a retention period
// has none and is not indexed. unschedule takes it out again.
func (t *txn) schedule(m *store.Message, key []byte) error {
	at, ok := nextStep(m)
	if !ok {
		return nil
	}
	return t.Bucket(bucketRetention).Put(retentionKey(at, key), nil)
}

func (t *txn) unschedule(m *store.Message, key []byte) error {
	at, ok := nextStep(m)
	if !ok {
		return nil
	}
	return t.Bucket(bucketRetention).Delete(retentionKey(at, key))
}

// nextStep is when the message, as stored, is first due for a step of
// Purge: its purge if it has payloads, else its forgetting.
func nextStep(m *store.Message) (time.Time, bool) {
	if m.Status != store.StatusDenied && !m.Purged {
		return m.PurgeAt()
	}
	return m.ForgetAt()
}

// Purge implements store.Retention. Each transaction handles up to
// purgeBatch messages due and appends their "purged" and "forgotten"
// entries (PurgeEntry, ForgetEntry). What a message is due for is read from
// its record (store.Message.Retire), never from the index alone: an index
// entry that is early moves to the record's time.
func (s *Store) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	var out []store.Purged
	for {
		if err := ctx.Err(); err != nil {
			return out, unavailable("purge", err)
		}
		var (
			batch []store.Purged
			more  bool
		)
		err := s.write(false, func(t *txn) error {
			batch, more = batch[:0], false
			ret := t.Bucket(bucketRetention)
			var due [][]byte
			c := ret.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				at, ok := keyTime(k)
				if !ok || len(k) == 12 {
					return errors.New("corrupt retention index")
				}
				if at.After(now) {
					break
				}
				if len(due) == purgeBatch {
					more = true
					break
				}
				due = append(due, bytes.Clone(k))
			}
			if len(due) == 0 {
				return errRollback // nothing due: no commit, no fsync
			}
			var entries []audit.Entry
			for _, k := range due {
				if err := ret.Delete(k); err != nil {
					return err
				}
				p, es, err := s.retire(t, k[12:], now)
				if err != nil {
					return err
				}
				if len(es) > 0 {
					batch = append(batch, p)
					entries = append(entries, es...)
				}
			}
			return s.appendEntries(t.Tx, "purge", entries)
		})
		if err != nil && !errors.Is(err, errRollback) {
			return out, s.failed("purge", err)
		}
		out = append(out, batch...)
		if !more {
			return out, nil
		}
	}
}

// retire does what is due by now to the message at key, whose index entry
// was just taken out (store.Message.Retire): purges its payloads, forgets
// it, and puts it back in the index at its next step if it has one. It
// returns what it did and the entries to append; none when there is no
// such message (any more) or nothing was due.
func (s *Store) retire(t *txn, key []byte, now time.Time) (p store.Purged, entries []audit.Entry, err error) {
	rec, err := t.messageRecord(key)
	if err != nil || rec == nil {
		return p, nil, err
	}
	r := rec.Message.Retire(now)
	p = store.Purged{From: rec.From, ID: rec.ID}
	add := func(e audit.Entry) error {
		prepared, err := audit.Prepare(e, s.opts.Replica, s.now())
		if err != nil {
			return fmt.Errorf("%s entry: %w", e.Kind, err)
		}
		entries = append(entries, prepared)
		return nil
	}
	if r.Purge {
		if p.Deliveries, err = t.purgeDeliveries(rec); err != nil {
			return p, nil, err
		}
		rec.Purged, rec.PurgedAt = true, now
		p.Payloads = true
		if err := add(store.PurgeEntry(&rec.Message)); err != nil {
			return p, nil, err
		}
	}
	if r.Forget {
		// Whatever deliveries are left (none once purged) go with it.
		n, err := t.purgeDeliveries(rec)
		if err != nil {
			return p, nil, err
		}
		p.Deliveries += n
		if err := t.forget(rec, key); err != nil {
			return p, nil, err
		}
		p.Forgotten = true
		return p, entries, add(store.ForgetEntry(&rec.Message))
	}
	if r.Purge {
		nv, err := json.Marshal(rec)
		if err != nil {
			return p, nil, err
		}
		if err := t.Bucket(bucketMessages).Put(key, nv); err != nil {
			return p, nil, err
		}
	}
	if !r.Next.IsZero() {
		if err := t.Bucket(bucketRetention).Put(retentionKey(r.Next, key), nil); err != nil {
			return p, nil, err
		}
	}
	return p, entries, nil
}

// forget deletes the message record at key and the recipient index entry
// that points at it (an entry pointing at another message of the same id
// to the same recipient is that message's). The consent index is not the
// message's and stays (R16: a later withdrawal still reaches every
// recipient of a referral under the consent).
func (t *txn) forget(rec *messageRecord, key []byte) error {
	if err := t.Bucket(bucketMessages).Delete(key); err != nil {
		return err
	}
	rcpt, ik := t.Bucket(bucketRecipients), pairKey(rec.To, rec.ID)
	if bytes.Equal(rcpt.Get(ik), key) {
		return rcpt.Delete(ik)
	}
	return nil
}

// purgeDeliveries deletes the queued and dead-lettered deliveries of the
// message (rec.Deliveries) and forgets them in rec; it returns how many it
// found.
func (t *txn) purgeDeliveries(rec *messageRecord) (int, error) {
	n := 0
	for _, ref := range rec.Deliveries {
		gone, err := t.purgeDelivery(ref[0], ref[1], rec.From, rec.ID)
		if err != nil {
			return n, err
		}
		if gone {
			n++
		}
	}
	rec.Open, rec.Dead, rec.Deliveries = 0, 0, nil
	return n, nil
}

// purgeDelivery deletes the delivery (recipient, id) of message (from, mid)
// from the queue or the dead-letter set; gone reports whether it was in
// either. A record of the same id that belongs to another message is left.
func (t *txn) purgeDelivery(recipient, id, from, mid string) (gone bool, err error) {
	r, ok, err := t.queued(recipient, []byte(id))
	if err != nil {
		return false, err
	}
	if ok && r.messageFrom == from && r.messageID == mid {
		if _, _, err := t.takeQueued(recipient, []byte(id)); err != nil {
			return false, err
		}
		return true, nil
	}
	dk := pairKey(recipient, id)
	r, ok, err = t.dead(dk)
	if err != nil || !ok {
		return false, err
	}
	if r.messageFrom != from || r.messageID != mid {
		return false, nil
	}
	if err := t.Bucket(bucketDeadIndex).Delete(indexKey(r.visible, r.seq)); err != nil {
		return false, err
	}
	if err := t.Bucket(bucketDead).Delete(dk); err != nil {
		return false, err
	}
	return true, nil
}
