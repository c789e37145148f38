package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// purgeBatch bounds the messages one Purge transaction handles, so that a
// backlog (after downtime) does not hold the writer for long.
const purgeBatch = 256

// retentionKey orders the retention bucket by purge time: the 12 time bytes
// of indexKey, then the message key.
func retentionKey(at time.Time, msgKey []byte) []byte {
	return append(indexKey(at, 0)[:12], msgKey...)
}

// Purge implements store.Retention. Each transaction purges up to
// purgeBatch messages and appends their "purged" entries (PurgeEntry).
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
				p, m, err := t.purgeMessage(k[12:], now)
				if err != nil {
					return err
				}
				if m != nil {
					batch = append(batch, p)
					e, err := audit.Prepare(store.PurgeEntry(m), s.opts.Replica, s.now())
					if err != nil {
						return fmt.Errorf("purge entry: %w", err)
					}
					entries = append(entries, e)
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

// purgeMessage deletes the queued and dead-lettered deliveries of the
// message at key and marks it purged; it returns the message as purged, nil
// when there is no such message or it was purged before.
func (t *txn) purgeMessage(key []byte, now time.Time) (p store.Purged, m *store.Message, err error) {
	var derr error
	err = t.updateMessage(key, func(rec *messageRecord) bool {
		if rec.Purged || rec.Status == store.StatusDenied {
			return false
		}
		n := 0
		for _, ref := range rec.Deliveries {
			gone, err := t.purgeDelivery(ref[0], ref[1], rec.From, rec.ID)
			if err != nil {
				derr = err
				return false
			}
			if gone {
				n++
			}
		}
		rec.Open, rec.Dead, rec.Deliveries = 0, 0, nil
		rec.Purged, rec.PurgedAt = true, now
		p = store.Purged{From: rec.From, ID: rec.ID, Deliveries: n}
		msg := rec.Message
		m = &msg
		return true
	})
	if derr != nil {
		return p, nil, derr
	}
	if err != nil {
		return p, nil, err
	}
	return p, m, nil
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
