package bolt

import (
	"bytes"
	"context"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error {
	if err := check(ctx, "release", recipient, deliveryID); err != nil {
		return err
	}
	err := s.write(false, func(t *txn) error {
		id := []byte(deliveryID)
		r, ok, err := t.queued(recipient, id)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		q := t.Bucket(bucketQueues).Bucket([]byte(recipient))
		idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
		if err := idx.Delete(indexKey(r.visible, r.seq)); err != nil {
			return err
		}
		r.visible = visibleAt
		if err := idx.Put(indexKey(r.visible, r.seq), id); err != nil {
			return err
		}
		return dlv.Put(id, r.marshal())
	})
	return s.result("release", err)
}

// DeadLetter implements store.Queue. The record moves to the dead bucket
// unchanged except for its visible time, which becomes the time it was
// dead-lettered; its "dead_lettered" entry is appended in the same
// transaction.
func (s *Store) DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := check(ctx, "dead letter", recipient, deliveryID); err != nil {
		return err
	}
	err := s.write(false, func(t *txn) error {
		return s.endQueued(t, "dead letter", recipient, deliveryID, audit.KindDeadLettered, func(r *deliveryRecord) error {
			r.visible = now
			dk := pairKey(recipient, deliveryID)
			if err := t.Bucket(bucketDead).Put(dk, r.marshal()); err != nil {
				return err
			}
			return t.Bucket(bucketDeadIndex).Put(indexKey(r.visible, r.seq), dk)
		}, func(rec *messageRecord) {
			rec.Dead++
			rec.Status = store.StatusDeadLettered
			rec.UpdatedAt = now
		})
	})
	return s.result("dead letter", err)
}

// DeadLetters implements store.Queue.
func (s *Store) DeadLetters(ctx context.Context) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("dead letters", err)
	}
	var out []store.Delivery
	err := s.read(func(tx *bbolt.Tx) error {
		out = out[:0]
		dead := tx.Bucket(bucketDead)
		return tx.Bucket(bucketDeadIndex).ForEach(func(_, dk []byte) error {
			v := dead.Get(dk)
			if v == nil {
				return nil
			}
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				return &corruptError{kind: kindDeadLetter, key: bytes.Clone(dk), err: err}
			}
			recipient, id, ok := bytes.Cut(dk, []byte{0})
			if !ok {
				return errors.New("corrupt dead-letter index")
			}
			out = append(out, store.Delivery{
				ID: string(id), Recipient: string(recipient),
				MessageFrom: r.messageFrom, MessageID: r.messageID,
				Envelope: r.envelope, Attempts: int(r.attempts),
				CreatedAt: r.created, DeadLetteredAt: r.visible,
			})
			return nil
		})
	})
	if err != nil {
		return nil, s.failed("dead letters", err)
	}
	return out, nil
}

// Requeue implements store.Queue.
func (s *Store) Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := check(ctx, "requeue", recipient, deliveryID); err != nil {
		return err
	}
	err := s.write(false, func(t *txn) error {
		dk := pairKey(recipient, deliveryID)
		r, ok, err := t.dead(dk)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		if err := t.Bucket(bucketDeadIndex).Delete(indexKey(r.visible, r.seq)); err != nil {
			return err
		}
		if err := t.Bucket(bucketDead).Delete(dk); err != nil {
			return err
		}
		r.attempts, r.visible = 0, now
		if err := putQueued(t.Bucket(bucketQueues), recipient, []byte(deliveryID), &r); err != nil {
			return err
		}
		return t.updateMessage(pairKey(r.messageFrom, r.messageID), func(rec *messageRecord) bool {
			if rec.Dead > 0 {
				rec.Dead--
			}
			if rec.Dead == 0 && rec.Status == store.StatusDeadLettered {
				rec.Status = store.StatusAccepted
				rec.UpdatedAt = now
			}
			return true
		})
	})
	return s.result("requeue", err)
}

// Depths implements store.Queue: every recipient that ever had a queue,
// zero included.
func (s *Store) Depths(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("depths", err)
	}
	out := map[string]int{}
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketQueues).ForEachBucket(func(name []byte) error {
			q := tx.Bucket(bucketQueues).Bucket(name)
			out[string(name)] = int(getUint64(q.Get(keyDepth)))
			return nil
		})
	})
	if err != nil {
		return nil, s.failed("depths", err)
	}
	return out, nil
}
