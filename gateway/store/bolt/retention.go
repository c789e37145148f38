package bolt

import (
	"bytes"
	"context"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

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

// Purge implements store.Retention.
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
		err := s.update(func(tx *bbolt.Tx) error {
			batch, more = batch[:0], false
			ret := tx.Bucket(bucketRetention)
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
			for _, k := range due {
				if err := ret.Delete(k); err != nil {
					return err
				}
				p, ok, err := purgeMessage(tx, k[12:], now)
				if err != nil {
					return err
				}
				if ok {
					batch = append(batch, p)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errRollback) {
			return out, unavailable("purge", err)
		}
		out = append(out, batch...)
		if !more {
			return out, nil
		}
	}
}

// purgeMessage deletes the queued and dead-lettered deliveries of the
// message at key and marks it purged. ok is false when there is no such
// message or it was purged before.
func purgeMessage(tx *bbolt.Tx, key []byte, now time.Time) (p store.Purged, ok bool, err error) {
	var derr error
	err = updateMessage(tx.Bucket(bucketMessages), key, func(rec *messageRecord) bool {
		if rec.Purged || rec.Status == store.StatusDenied {
			return false
		}
		n := 0
		for _, ref := range rec.Deliveries {
			gone, err := purgeDelivery(tx, ref[0], ref[1], rec.From, rec.ID)
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
		p, ok = store.Purged{From: rec.From, ID: rec.ID, Deliveries: n}, true
		return true
	})
	if derr != nil {
		return p, false, derr
	}
	return p, ok, err
}

// purgeDelivery deletes the delivery (recipient, id) of message (from, mid)
// from the queue or the dead-letter set; gone reports whether it was in
// either. A record of the same id that belongs to another message is left.
func purgeDelivery(tx *bbolt.Tx, recipient, id, from, mid string) (gone bool, err error) {
	queues := tx.Bucket(bucketQueues)
	if q := queues.Bucket([]byte(recipient)); q != nil {
		if v := q.Bucket(bucketDeliveries).Get([]byte(id)); v != nil {
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				return false, err
			}
			if r.messageFrom == from && r.messageID == mid {
				if _, _, err := takeQueued(queues, recipient, []byte(id)); err != nil {
					return false, err
				}
				return true, nil
			}
		}
	}
	dead := tx.Bucket(bucketDead)
	dk := pairKey(recipient, id)
	v := dead.Get(dk)
	if v == nil {
		return false, nil
	}
	var r deliveryRecord
	if err := r.unmarshal(v); err != nil {
		return false, err
	}
	if r.messageFrom != from || r.messageID != mid {
		return false, nil
	}
	if err := tx.Bucket(bucketDeadIndex).Delete(indexKey(r.visible, r.seq)); err != nil {
		return false, err
	}
	if err := dead.Delete(dk); err != nil {
		return false, err
	}
	return true, nil
}
