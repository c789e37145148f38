package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv"
)

// ConsentRecipients implements store.Consents.
func (s *Store) ConsentRecipients(ctx context.Context, from, consentID string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("consent recipients", err)
	}
	out := []string{}
	if store.ValidKeys(from, consentID) != nil {
		return out, nil
	}
	prefix := append(pairKey(from, consentID), 0)
	err := s.view(ctx, func(r kv.Reader) error {
		out = out[:0]
		// Keys are sorted and distinct, and so are their suffixes.
		return r.Scan(bConsents, prefix, prefixEnd(prefix), func(k, _ []byte) error {
			out = append(out, string(k[len(prefix):]))
			return nil
		})
	})
	if err != nil {
		return nil, s.unavailable("consent recipients", err)
	}
	return out, nil
}

// WithdrawConsent implements store.Consents. The first withdrawal's time is
// kept.
func (s *Store) WithdrawConsent(ctx context.Context, from, consentID string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return s.unavailable("withdraw consent", err)
	}
	if err := store.ValidKeys(from, consentID); err != nil {
		return fmt.Errorf("%s: withdraw consent: %w", s.opts.Name, err)
	}
	err := s.changeJ(ctx, "withdraw consent", consentArgs{from, consentID, now}, func(t *txn) error {
		if err := t.fault("withdraw consent"); err != nil {
			return err
		}
		k := pairKey(from, consentID)
		if v, err := t.get(bWithdrawn, k); err != nil || v != nil {
			return err
		}
		return t.put(bWithdrawn, k, []byte(now.UTC().Format(time.RFC3339Nano)))
	})
	return s.failed("withdraw consent", err)
}

// ConsentWithdrawn implements store.Consents.
func (s *Store) ConsentWithdrawn(ctx context.Context, from, consentID string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.unavailable("consent withdrawn", err)
	}
	if store.ValidKeys(from, consentID) != nil {
		return false, nil
	}
	var found bool
	err := s.view(ctx, func(r kv.Reader) error {
		_, ok, err := r.Get(bWithdrawn, pairKey(from, consentID))
		found = ok
		return err
	})
	if err != nil {
		return false, s.unavailable("consent withdrawn", err)
	}
	return found, nil
}

// purgeBatch bounds the messages one Purge commit handles, so that a
// backlog (after downtime) does not hold the committer for long.
const purgeBatch = 256

// retentionKey orders the retention bucket by the time of each message's
// next step (its purge, then its forgetting): the 12 time bytes of
// indexKey, then the message key.
func retentionKey(at time.Time, msgKey []byte) []byte {
	return append(indexKey(at, 0)[:12], msgKey...)
}

// schedule puts the message at key in the retention index at its next
// step; an accepted message without a retention period has none.
// unschedule takes it out again.
func (t *txn) schedule(m *store.Message, key []byte) error {
	at, ok := nextStep(m)
	if !ok {
		return nil
	}
	return t.put(bRetention, retentionKey(at, key), nil)
}

func (t *txn) unschedule(m *store.Message, key []byte) error {
	at, ok := nextStep(m)
	if !ok {
		return nil
	}
	return t.del(bRetention, retentionKey(at, key))
}

// nextStep is when the message, as stored, is first due for a step of
// Purge: its purge if it has payloads, else its forgetting.
func nextStep(m *store.Message) (time.Time, bool) {
	if m.Status != store.StatusDenied && !m.Purged {
		return m.PurgeAt()
	}
	return m.ForgetAt()
}

// Purge implements store.Retention. Each commit handles up to purgeBatch
// messages due and appends their "purged" and "forgotten" entries. What a
// message is due for is read from its record (store.Message.Retire), never
// from the index alone.
func (s *Store) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	var out []store.Purged
	for {
		if err := ctx.Err(); err != nil {
			return out, s.unavailable("purge", err)
		}
		var (
			batch []store.Purged
			more  bool
		)
		err := s.changeJ(ctx, "purge", purgeArgs{now}, func(t *txn) error {
			batch, more = batch[:0], false
			var due [][]byte
			err := t.tx.Scan(bRetention, nil, nil, func(k, _ []byte) error {
				at, ok := keyTime(k)
				if !ok || len(k) == 12 {
					return errors.New("corrupt retention index")
				}
				if at.After(now) {
					return kv.Stop
				}
				if len(due) == purgeBatch {
					more = true
					return kv.Stop
				}
				due = append(due, bytes.Clone(k))
				return nil
			})
			if err != nil || len(due) == 0 {
				return err
			}
			var entries []audit.Entry
			for _, k := range due {
				if err := t.del(bRetention, k); err != nil {
					return err
				}
				p, es, err := t.retire(k[12:], now)
				if err != nil {
					return err
				}
				if len(es) > 0 {
					batch = append(batch, p)
					entries = append(entries, es...)
				}
			}
			return t.appendEntries("purge", entries)
		})
		if err != nil {
			return out, s.failed("purge", err)
		}
		out = append(out, batch...)
		// Made again by the journal: the one commit that was lost; what
		// is due beyond it is the next purge's.
		if !more || redoFrom(ctx) != nil {
			return out, nil
		}
	}
}

// retire does what is due by now to the message at key, whose index entry
// was just taken out (store.Message.Retire): purges its payloads, forgets
// it, and puts it back in the index at its next step if it has one.
func (t *txn) retire(key []byte, now time.Time) (p store.Purged, entries []audit.Entry, err error) {
	rec, err := t.messageRecord(key)
	if err != nil || rec == nil {
		return p, nil, err
	}
	r := rec.Message.Retire(now)
	p = store.Purged{From: rec.From, ID: rec.ID}
	add := func(e audit.Entry) error {
		prepared, err := audit.Prepare(e, t.s.opts.Replica, t.s.now())
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
		if err := t.put(bMessages, key, nv); err != nil {
			return p, nil, err
		}
	}
	if !r.Next.IsZero() {
		if err := t.put(bRetention, retentionKey(r.Next, key), nil); err != nil {
			return p, nil, err
		}
	}
	return p, entries, nil
}

// forget deletes the message record at key and the recipient index entry
// that points at it. The consent index is not the message's and stays
// (R16).
func (t *txn) forget(rec *messageRecord, key []byte) error {
	if err := t.del(bMessages, key); err != nil {
		return err
	}
	ik := pairKey(rec.To, rec.ID)
	cur, err := t.get(bRecipients, ik)
	if err != nil || !bytes.Equal(cur, key) {
		return err
	}
	return t.del(bRecipients, ik)
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
	r, ok, err := t.queued(recipient, id)
	if err != nil {
		return false, err
	}
	if ok && r.messageFrom == from && r.messageID == mid {
		if _, _, err := t.takeQueued(recipient, id); err != nil {
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
	if err := t.del(bDeadIndex, deadKey(dk, &r)); err != nil {
		return false, err
	}
	return true, t.del(bDead, dk)
}
