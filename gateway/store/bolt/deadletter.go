package bolt

import (
	"bytes"
	"context"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store"
)

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error {
	if err := check(ctx, "release", recipient, deliveryID); err != nil {
		return err
	}
	err := s.update(func(tx *bbolt.Tx) error {
		q := tx.Bucket(bucketQueues).Bucket([]byte(recipient))
		if q == nil {
			return store.ErrNotFound
		}
		idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
		id := []byte(deliveryID)
		v := dlv.Get(id)
		if v == nil {
			return store.ErrNotFound
		}
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return err
		}
		if err := idx.Delete(indexKey(r.visible, r.seq)); err != nil {
			return err
		}
		r.visible = visibleAt
		if err := idx.Put(indexKey(r.visible, r.seq), id); err != nil {
			return err
		}
		return dlv.Put(id, r.marshal())
	})
	return result("release", err)
}

// DeadLetter implements store.Queue. The record moves to the dead bucket
// unchanged except for its visible time, which becomes the time it was
// dead-lettered.
func (s *Store) DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return s.DeadLetterTx(ctx, recipient, deliveryID, now, nil)
}

// DeadLetterTx is DeadLetter that also runs also, if not nil, in its
// transaction (see AckTx).
func (s *Store) DeadLetterTx(ctx context.Context, recipient, deliveryID string, now time.Time, also DeliveryHook) error {
	if err := check(ctx, "dead letter", recipient, deliveryID); err != nil {
		return err
	}
	err := s.update(func(tx *bbolt.Tx) error {
		return endQueued(tx, recipient, deliveryID, func(r *deliveryRecord) error {
			r.visible = now
			dk := pairKey(recipient, deliveryID)
			if err := tx.Bucket(bucketDead).Put(dk, r.marshal()); err != nil {
				return err
			}
			return tx.Bucket(bucketDeadIndex).Put(indexKey(r.visible, r.seq), dk)
		}, func(rec *messageRecord) {
			rec.Dead++
			rec.Status = store.StatusDeadLettered
			rec.UpdatedAt = now
		}, also)
	})
	return result("dead letter", err)
}

// DeadLetters implements store.Queue.
func (s *Store) DeadLetters(ctx context.Context) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("dead letters", err)
	}
	var out []store.Delivery
	err := s.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		dead := tx.Bucket(bucketDead)
		return tx.Bucket(bucketDeadIndex).ForEach(func(_, dk []byte) error {
			v := dead.Get(dk)
			if v == nil {
				return nil
			}
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				return err
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
		return nil, unavailable("dead letters", err)
	}
	return out, nil
}

// Requeue implements store.Queue.
func (s *Store) Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := check(ctx, "requeue", recipient, deliveryID); err != nil {
		return err
	}
	err := s.update(func(tx *bbolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		dk := pairKey(recipient, deliveryID)
		v := dead.Get(dk)
		if v == nil {
			return store.ErrNotFound
		}
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDeadIndex).Delete(indexKey(r.visible, r.seq)); err != nil {
			return err
		}
		if err := dead.Delete(dk); err != nil {
			return err
		}
		r.attempts, r.visible = 0, now
		if err := putQueued(tx.Bucket(bucketQueues), recipient, []byte(deliveryID), &r); err != nil {
			return err
		}
		return updateMessage(tx.Bucket(bucketMessages), pairKey(r.messageFrom, r.messageID), func(rec *messageRecord) bool {
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
	return result("requeue", err)
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
		return nil, unavailable("depths", err)
	}
	return out, nil
}
