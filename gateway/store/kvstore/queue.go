package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv"
)

// queueKey is the recipient's lease-order key of a delivery.
func queueKey(recipient string, visible time.Time, seq uint64) []byte {
	return append(append([]byte(recipient), 0), indexKey(visible, seq)...)
}

// deadKey orders the dead-letter set by the time each was dead-lettered.
func deadKey(dk []byte, r *deliveryRecord) []byte {
	return append(indexKey(r.visible, r.seq), dk...)
}

// depthOf reads the recipient's depth record: queued deliveries and the
// next sequence number of its queue.
func (t *txn) depthOf(recipient string) (n, seq uint64, err error) {
	v, err := t.get(bDepth, []byte(recipient))
	if err != nil || len(v) != 16 {
		return 0, 0, err
	}
	return binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:]), nil
}

func (t *txn) setDepth(recipient string, n, seq uint64) error {
	return t.put(bDepth, []byte(recipient), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, n), seq))
}

func (t *txn) addDepth(recipient string, delta int) error {
	n, seq, err := t.depthOf(recipient)
	if err != nil {
		return err
	}
	switch {
	case delta < 0 && n == 0:
		return nil
	case delta < 0:
		n--
	default:
		n++
	}
	return t.setDepth(recipient, n, seq)
}

// putQueued adds the record to the recipient's queue (newSeq: at the end of
// the deliveries of its visible time) and counts it in its depth.
func (t *txn) putQueued(recipient, id string, r *deliveryRecord, newSeq bool) error {
	dk := pairKey(recipient, id)
	if v, err := t.get(bDeliveries, dk); err != nil {
		return err // the store failing, not the id taken
	} else if v != nil {
		return errDeliveryExists
	}
	n, seq, err := t.depthOf(recipient)
	if err != nil {
		return err
	}
	if newSeq {
		seq++
		r.seq = seq
	}
	if err := t.put(bDeliveries, dk, r.marshal()); err != nil {
		return err
	}
	if err := t.put(bQueue, queueKey(recipient, r.visible, r.seq), []byte(id)); err != nil {
		return err
	}
	return t.setDepth(recipient, n+1, seq)
}

// queued decodes the recipient's queued delivery id; a record that cannot
// be decoded is quarantined and reads as not there.
func (t *txn) queued(recipient, id string) (r deliveryRecord, ok bool, err error) {
	dk := pairKey(recipient, id)
	v, err := t.get(bDeliveries, dk)
	if err != nil || v == nil {
		return r, false, err
	}
	if err := r.unmarshal(v); err != nil {
		return r, false, t.quarantineQueued(recipient, id, nil)
	}
	return r, true, nil
}

// takeQueued removes the delivery from the recipient's queue (record, queue
// entry and depth) and returns its record; ok is false when it is not there.
func (t *txn) takeQueued(recipient, id string) (r deliveryRecord, ok bool, err error) {
	r, ok, err = t.queued(recipient, id)
	if err != nil || !ok {
		return r, ok, err
	}
	if err := t.del(bQueue, queueKey(recipient, r.visible, r.seq)); err != nil {
		return r, false, err
	}
	if err := t.del(bDeliveries, pairKey(recipient, id)); err != nil {
		return r, false, err
	}
	return r, true, t.addDepth(recipient, -1)
}

// moveQueued moves the queued delivery id, record r, from its queue entry
// qk to visible, and writes r back.
func (t *txn) moveQueued(recipient, id string, r *deliveryRecord, qk []byte, visible time.Time) error {
	if err := t.del(bQueue, qk); err != nil {
		return err
	}
	r.visible = visible
	if err := t.put(bQueue, queueKey(recipient, r.visible, r.seq), []byte(id)); err != nil {
		return err
	}
	return t.put(bDeliveries, pairKey(recipient, id), r.marshal())
}

// Lease implements store.Queue. A delivery record that cannot be decoded
// is quarantined and skipped: the recipient's others are leased.
func (s *Store) Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("lease", err)
	}
	if max <= 0 || store.ValidKeys(recipient) != nil {
		return nil, nil
	}
	until := now.Add(visibility)
	prefix := append([]byte(recipient), 0)
	var out []store.Delivery
	err := s.change(ctx, "lease", func(t *txn) error {
		out = out[:0]
		type item struct{ key, id []byte }
		var due []item
		var bad [][]byte
		// Collect first: no writes to a bucket during its scan.
		err := t.tx.Scan(bQueue, prefix, prefixEnd(prefix), func(k, v []byte) error {
			at, ok := indexTime(k[len(prefix):])
			if !ok {
				bad = append(bad, bytes.Clone(k))
				return nil
			}
			if at.After(now) || len(due) == max {
				return kv.Stop
			}
			due = append(due, item{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range bad { // an index key that is not one leads nowhere
			if err := t.del(bQueue, k); err != nil {
				return err
			}
		}
		reads := make([]kv.Key, 0, len(due))
		for _, it := range due {
			reads = append(reads, kv.Key{Bucket: bDeliveries, Key: pairKey(recipient, string(it.id))})
		}
		t.prefetch(reads)
		type found struct {
			item
			r deliveryRecord
		}
		records := make([]found, 0, len(due))
		reads = reads[:0]
		for _, it := range due {
			v, err := t.get(bDeliveries, pairKey(recipient, string(it.id)))
			if err != nil {
				return err
			}
			if v == nil { // an index entry without its delivery
				if err := t.del(bQueue, it.key); err != nil {
					return err
				}
				continue
			}
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				if err := t.quarantineQueued(recipient, string(it.id), it.key); err != nil {
					return err
				}
				continue
			}
			records = append(records, found{it, r})
			reads = append(reads, kv.Key{Bucket: bMessages, Key: pairKey(r.messageFrom, r.messageID)})
		}
		t.prefetch(reads)
		for _, f := range records {
			it, r := f.item, f.r
			r.attempts++
			if err := t.moveQueued(recipient, string(it.id), &r, it.key, until); err != nil {
				return err
			}
			err = t.updateMessage(pairKey(r.messageFrom, r.messageID), func(rec *messageRecord) bool {
				if rec.Attempts >= int(r.attempts) {
					return false
				}
				rec.Attempts = int(r.attempts)
				return true
			})
			if err != nil {
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

// Ack implements store.Queue: the delivery goes, envelope included, with
// its "delivered" entry.
func (s *Store) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := s.check(ctx, "ack", recipient, deliveryID); err != nil {
		return err
	}
	reads := []kv.Key{{Bucket: bDeliveries, Key: pairKey(recipient, deliveryID)}, {Bucket: bDepth, Key: []byte(recipient)},
		{Bucket: bHeads, Key: []byte(s.opts.Replica)}}
	err := s.changeOp(ctx, "ack", deliveryArgs{recipient, deliveryID, now}, reads, func(t *txn) error {
		return t.endQueued("ack", recipient, deliveryID, audit.KindDelivered, nil, func(rec *messageRecord) {
			if rec.Open > 0 {
				rec.Open--
			}
			if rec.Open == 0 && rec.Status == store.StatusAccepted {
				rec.Status = store.StatusDelivered
				rec.UpdatedAt = now
			}
		})
	})
	return s.failed("ack", err)
}

// endQueued takes a delivery out of its recipient's queue (ErrNotFound if
// it is not there), hands its record to keep (nil: it goes), applies update
// to its message and appends the delivery's entry of kind (DeliveryEntry).
func (t *txn) endQueued(op, recipient, deliveryID, kind string, keep func(*deliveryRecord) error, update func(*messageRecord)) error {
	r, ok, err := t.takeQueued(recipient, deliveryID)
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
	e, err := audit.Prepare(store.DeliveryEntry(r.delivery(recipient, deliveryID), msg, kind), t.s.opts.Replica, t.s.now())
	if err != nil {
		return fmt.Errorf("%s entry: %w", kind, err)
	}
	return t.appendEntries(op, []audit.Entry{e})
}

// Delivery implements store.Queue.
func (s *Store) Delivery(ctx context.Context, recipient, deliveryID string) (*store.Delivery, error) {
	if err := s.check(ctx, "delivery", recipient, deliveryID); err != nil {
		return nil, err
	}
	var out *store.Delivery
	err := s.read(ctx, func(rd kv.Reader) error {
		v, ok, err := rd.Get(bDeliveries, pairKey(recipient, deliveryID))
		if err != nil {
			return err
		}
		if !ok {
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
	return out, s.failed("delivery", err)
}

// Depth implements store.Queue: the recipient's counter, kept in the same
// commits as its queue.
func (s *Store) Depth(ctx context.Context, recipient string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.unavailable("depth", err)
	}
	if store.ValidKeys(recipient) != nil {
		return 0, nil
	}
	var n uint64
	err := s.view(ctx, func(r kv.Reader) error {
		v, _, err := r.Get(bDepth, []byte(recipient))
		if len(v) == 16 {
			n = binary.BigEndian.Uint64(v[:8])
		}
		return err
	})
	if err != nil {
		return 0, s.failed("depth", err)
	}
	return int(n), nil
}

// Depths implements store.Queue: every recipient that ever had a queue,
// zero included.
func (s *Store) Depths(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("depths", err)
	}
	out := map[string]int{}
	err := s.view(ctx, func(r kv.Reader) error {
		clear(out)
		return r.Scan(bDepth, nil, nil, func(k, v []byte) error {
			if len(v) == 16 {
				out[string(k)] = int(binary.BigEndian.Uint64(v[:8]))
			}
			return nil
		})
	})
	if err != nil {
		return nil, s.failed("depths", err)
	}
	return out, nil
}

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error {
	if err := s.check(ctx, "release", recipient, deliveryID); err != nil {
		return err
	}
	err := s.change(ctx, "release", func(t *txn) error {
		r, ok, err := t.queued(recipient, deliveryID)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		return t.moveQueued(recipient, deliveryID, &r, queueKey(recipient, r.visible, r.seq), visibleAt)
	})
	return s.failed("release", err)
}

// DeadLetter implements store.Queue. The record moves to the dead-letter
// set unchanged except for its visible time, which becomes the time it was
// dead-lettered; its "dead_lettered" entry is appended in the same commit.
func (s *Store) DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := s.check(ctx, "dead letter", recipient, deliveryID); err != nil {
		return err
	}
	err := s.changeJ(ctx, "dead letter", deliveryArgs{recipient, deliveryID, now}, func(t *txn) error {
		return t.endQueued("dead letter", recipient, deliveryID, audit.KindDeadLettered, func(r *deliveryRecord) error {
			r.visible = now
			dk := pairKey(recipient, deliveryID)
			if err := t.put(bDead, dk, r.marshal()); err != nil {
				return err
			}
			return t.put(bDeadIndex, deadKey(dk, r), dk)
		}, func(rec *messageRecord) {
			rec.Dead++
			rec.Status = store.StatusDeadLettered
			rec.UpdatedAt = now
		})
	})
	return s.failed("dead letter", err)
}

// DeadLetters implements store.Queue.
func (s *Store) DeadLetters(ctx context.Context) ([]store.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("dead letters", err)
	}
	var out []store.Delivery
	err := s.read(ctx, func(rd kv.Reader) error {
		out = out[:0]
		var keys [][]byte
		err := rd.Scan(bDeadIndex, nil, nil, func(_, dk []byte) error {
			keys = append(keys, bytes.Clone(dk))
			return nil
		})
		if err != nil {
			return err
		}
		for _, dk := range keys {
			v, ok, err := rd.Get(bDead, dk)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				return &corruptError{kind: kindDeadLetter, key: dk, err: err}
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
		}
		return nil
	})
	if err != nil {
		return nil, s.failed("dead letters", err)
	}
	return out, nil
}

// Requeue implements store.Queue.
func (s *Store) Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if err := s.check(ctx, "requeue", recipient, deliveryID); err != nil {
		return err
	}
	err := s.changeJ(ctx, "requeue", deliveryArgs{recipient, deliveryID, now}, func(t *txn) error {
		dk := pairKey(recipient, deliveryID)
		r, ok, err := t.dead(dk)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		if err := t.del(bDeadIndex, deadKey(dk, &r)); err != nil {
			return err
		}
		if err := t.del(bDead, dk); err != nil {
			return err
		}
		r.attempts, r.visible = 0, now
		if err := t.putQueued(recipient, deliveryID, &r, false); err != nil {
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
	return s.failed("requeue", err)
}
