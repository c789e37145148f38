package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	bbolt "go.etcd.io/bbolt"
)

// A record that cannot be decoded (a damaged message, delivery or dead
// letter record) is quarantined: its bytes move to the quarantine bucket,
// under kind\x00original key\x00sequence, it leaves the place it blocked
// (its queue, index and depth), the move is logged with the key (keys hold
// identifiers, never personal data) and counted (Options.OnQuarantine), and
// the store goes on as if it were not there: a recipient's other
// deliveries are leased, a message id reads as unknown.

// Kinds of quarantined records.
const (
	kindMessage    = "message"
	kindDelivery   = "delivery"
	kindDeadLetter = "dead_letter"
)

// txn is a write transaction with the records it quarantined, reported
// once it committed.
type txn struct {
	*bbolt.Tx
	moved []quarantined
}

type quarantined struct{ kind, key string }

// corruptError is a reader's find: a record that cannot be decoded, for a
// write transaction to quarantine (reads cannot move it).
type corruptError struct {
	kind      string
	recipient string // of a delivery
	key       []byte // the record's key in its bucket
	err       error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("corrupt %s record %s: %v", e.kind, printable(e.key), e.err)
}

// printable shows a key with its NUL separators as "/".
func printable(k []byte) string {
	return strings.ToValidUTF8(strings.ReplaceAll(string(k), "\x00", "/"), "?")
}

// quarantine moves the value at key of b to the quarantine bucket under
// kind and name (the key if nil).
func (t *txn) quarantine(kind string, b *bbolt.Bucket, key, name []byte) error {
	v := b.Get(key)
	if v == nil {
		return nil
	}
	if name == nil {
		name = key
	}
	qb, err := t.CreateBucketIfNotExists(bucketQuarantine)
	if err != nil {
		return err
	}
	seq, err := qb.NextSequence()
	if err != nil {
		return err
	}
	qk := append(append(append(append([]byte(kind), 0), name...), 0), putUint64(seq)...)
	if err := qb.Put(qk, bytes.Clone(v)); err != nil {
		return err
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	t.moved = append(t.moved, quarantined{kind: kind, key: printable(name)})
	return nil
}

// queued decodes the recipient's queued delivery id; a record that cannot
// be decoded is quarantined and reads as not there.
func (t *txn) queued(recipient string, id []byte) (r deliveryRecord, ok bool, err error) {
	q := t.Bucket(bucketQueues).Bucket([]byte(recipient))
	if q == nil {
		return r, false, nil
	}
	v := q.Bucket(bucketDeliveries).Get(id)
	if v == nil {
		return r, false, nil
	}
	if err := r.unmarshal(v); err != nil {
		return r, false, t.quarantineQueued(recipient, id, nil)
	}
	return r, true, nil
}

// quarantineQueued quarantines a queued delivery record and takes it out
// of its queue: its index entry (idxKey, or found by a scan when nil) and
// the queue's depth.
func (t *txn) quarantineQueued(recipient string, id, idxKey []byte) error {
	q := t.Bucket(bucketQueues).Bucket([]byte(recipient))
	if q == nil {
		return nil
	}
	dlv, idx := q.Bucket(bucketDeliveries), q.Bucket(bucketIndex)
	if dlv.Get(id) == nil {
		return nil
	}
	if err := t.quarantine(kindDelivery, dlv, id, pairKey(recipient, string(id))); err != nil {
		return err
	}
	if idxKey == nil {
		// The record's visible time and sequence, which make its index
		// key, are in the bytes that cannot be read.
		c := idx.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Equal(v, id) {
				idxKey = bytes.Clone(k)
				break
			}
		}
	}
	if idxKey != nil {
		if err := idx.Delete(idxKey); err != nil {
			return err
		}
	}
	return decDepth(q)
}

// dead decodes the dead letter at dk; one that cannot be decoded is
// quarantined and reads as not there.
func (t *txn) dead(dk []byte) (r deliveryRecord, ok bool, err error) {
	v := t.Bucket(bucketDead).Get(dk)
	if v == nil {
		return r, false, nil
	}
	if err := r.unmarshal(v); err != nil {
		return r, false, t.quarantineDead(dk)
	}
	return r, true, nil
}

// quarantineDead quarantines a dead letter and its index entry.
func (t *txn) quarantineDead(dk []byte) error {
	if err := t.quarantine(kindDeadLetter, t.Bucket(bucketDead), dk, nil); err != nil {
		return err
	}
	di := t.Bucket(bucketDeadIndex)
	c := di.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if bytes.Equal(v, dk) {
			return di.Delete(bytes.Clone(k))
		}
	}
	return nil
}

// quarantineFound quarantines what a reader found, if it is still there
// and still cannot be decoded.
func (t *txn) quarantineFound(ce *corruptError) error {
	switch ce.kind {
	case kindMessage:
		_, err := t.messageRecord(ce.key)
		return err
	case kindDelivery:
		_, _, err := t.queued(ce.recipient, ce.key)
		return err
	case kindDeadLetter:
		_, _, err := t.dead(ce.key)
		return err
	}
	return fmt.Errorf("unknown kind %q", ce.kind)
}

// read runs fn in a read transaction; a record it cannot decode is
// quarantined and fn runs again.
func (s *Store) read(fn func(*bbolt.Tx) error) error {
	for range 8 {
		err := s.view(fn)
		var ce *corruptError
		if !errors.As(err, &ce) {
			return err
		}
		if err := s.write(false, func(t *txn) error { return t.quarantineFound(ce) }); err != nil {
			return fmt.Errorf("%v; moving it to quarantine: %w", ce, err)
		}
	}
	return errors.New("records keep failing to decode")
}

// reportQuarantined logs and counts the records a committed transaction
// quarantined.
func (s *Store) reportQuarantined(moved []quarantined) {
	for _, q := range moved {
		s.log.Error("store record quarantined: it cannot be decoded; its bytes are kept in the quarantine bucket",
			"kind", q.kind, "key", q.key)
		if s.opts.OnQuarantine != nil {
			s.opts.OnQuarantine(q.kind)
		}
	}
}
