package kvstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/store/kv"
)

// A record that cannot be decoded (a damaged message, delivery or dead
// letter record) is quarantined: its bytes move to the quarantine bucket,
// it leaves the place it blocked (its queue and depth, its index), the move
// is logged with the key (keys hold identifiers, never personal data) and
// counted (Options.OnQuarantine), and the store goes on as if it were not
// there.

// Kinds of quarantined records.
const (
	kindMessage    = "message"
	kindDelivery   = "delivery"
	kindDeadLetter = "dead_letter"
)

type quarantined struct{ kind, key string }

// corruptError is a reader's find: a record that cannot be decoded, for a
// change to quarantine (reads cannot move it).
type corruptError struct {
	kind      string
	recipient string // of a delivery
	key       []byte // the record's key (a delivery's: its id)
	err       error
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("corrupt %s record %s: %v", e.kind, printable(e.key), e.err)
}

// printable shows a key with its NUL separators as "/".
func printable(k []byte) string {
	return strings.ToValidUTF8(strings.ReplaceAll(string(k), "\x00", "/"), "?")
}

// quarantine moves the value at key of bucket to the quarantine bucket
// under kind and name (the key if nil).
func (t *txn) quarantine(kind, bucket string, key, name []byte) error {
	v, err := t.get(bucket, key)
	if err != nil || v == nil {
		return err
	}
	if name == nil {
		name = key
	}
	qk := append(append(append(append([]byte(kind), 0), name...), 0),
		binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))...)
	if err := t.put(bQuarantine, qk, bytes.Clone(v)); err != nil {
		return err
	}
	if err := t.del(bucket, key); err != nil {
		return err
	}
	t.moved = append(t.moved, quarantined{kind: kind, key: printable(name)})
	return nil
}

// quarantineQueued quarantines a queued delivery record and takes it out
// of its queue: its queue entry (qk, or found by a scan when nil) and the
// queue's depth.
func (t *txn) quarantineQueued(recipient, id string, qk []byte) error {
	dk := pairKey(recipient, id)
	if v, err := t.get(bDeliveries, dk); err != nil || v == nil {
		return err
	}
	if err := t.quarantine(kindDelivery, bDeliveries, dk, nil); err != nil {
		return err
	}
	if qk == nil {
		// The record's visible time and sequence, which make its queue
		// key, are in the bytes that cannot be read.
		prefix := append([]byte(recipient), 0)
		err := t.tx.Scan(bQueue, prefix, prefixEnd(prefix), func(k, v []byte) error {
			if string(v) == id {
				qk = bytes.Clone(k)
				return kv.Stop
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if qk != nil {
		if err := t.del(bQueue, qk); err != nil {
			return err
		}
	}
	return t.addDepth(recipient, -1)
}

// dead decodes the dead letter at dk; one that cannot be decoded is
// quarantined and reads as not there.
func (t *txn) dead(dk []byte) (r deliveryRecord, ok bool, err error) {
	v, err := t.get(bDead, dk)
	if err != nil || v == nil {
		return r, false, err
	}
	if err := r.unmarshal(v); err != nil {
		return r, false, t.quarantineDead(dk)
	}
	return r, true, nil
}

// quarantineDead quarantines a dead letter and its index entry.
func (t *txn) quarantineDead(dk []byte) error {
	if err := t.quarantine(kindDeadLetter, bDead, dk, nil); err != nil {
		return err
	}
	var ik []byte
	err := t.tx.Scan(bDeadIndex, nil, nil, func(k, v []byte) error {
		if bytes.Equal(v, dk) {
			ik = bytes.Clone(k)
			return kv.Stop
		}
		return nil
	})
	if err != nil || ik == nil {
		return err
	}
	return t.del(bDeadIndex, ik)
}

// quarantineFound quarantines what a reader found, if it is still there
// and still cannot be decoded.
func (t *txn) quarantineFound(ce *corruptError) error {
	switch ce.kind {
	case kindMessage:
		_, err := t.messageRecord(ce.key)
		return err
	case kindDelivery:
		_, _, err := t.queued(ce.recipient, string(ce.key))
		return err
	case kindDeadLetter:
		_, _, err := t.dead(ce.key)
		return err
	}
	return fmt.Errorf("unknown kind %q", ce.kind)
}

// reportQuarantined logs and counts the records a committed change
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
