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

// messageRecord is what the messages bucket holds (the bolt store's record).
type messageRecord struct {
	store.Message
	// Open counts the message's deliveries not yet acknowledged.
	Open int `json:"open,omitempty"`
	// Dead counts the message's deliveries in the dead-letter set.
	Dead int `json:"dead,omitempty"`
	// Deliveries are the (recipient, id) of the message's deliveries, so
	// that Purge finds them.
	Deliveries [][2]string `json:"deliveries,omitempty"`
}

var errDeliveryExists = errors.New("delivery id already queued")

// prepare checks and prepares the entries a change will append to the
// store's own chain, before it is queued: a refused entry fails its call
// alone.
func (s *Store) prepare(op string, entries []audit.Entry) ([]audit.Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make([]audit.Entry, len(entries))
	now := s.now()
	for i, e := range entries {
		p, err := audit.Prepare(e, s.opts.Replica, now)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", s.opts.Name, op, err)
		}
		out[i] = p
	}
	return out, nil
}

// Accept implements store.Messages. The entries are appended in the
// acceptance's commit; a duplicate writes neither.
func (s *Store) Accept(ctx context.Context, m *store.Message, ds []store.Delivery, entries ...audit.Entry) (*store.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("accept", err)
	}
	if err := store.ValidAcceptance(m); err != nil {
		return nil, fmt.Errorf("%s: accept: %w", s.opts.Name, err)
	}
	prepared, err := s.prepare("accept", entries)
	if err != nil {
		return nil, err
	}
	rec := acceptedRecord(m, len(ds))
	queued, err := acceptedDeliveries(m, ds, &rec)
	if err != nil {
		return nil, fmt.Errorf("%s: accept: %w", s.opts.Name, err)
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return nil, fmt.Errorf("%s: accept: %w", s.opts.Name, err)
	}
	key := pairKey(m.From, m.ID)
	reads := []kv.Key{{Bucket: bMessages, Key: key}, {Bucket: bRecipients, Key: pairKey(m.To, m.ID)}}
	for _, d := range queued {
		dk := pairKey(d.Recipient, d.ID)
		reads = append(reads, kv.Key{Bucket: bDead, Key: dk}, kv.Key{Bucket: bDeliveries, Key: dk},
			kv.Key{Bucket: bDepth, Key: []byte(d.Recipient)})
	}
	reads = s.headReads(reads, prepared)
	var existing *store.Message
	err = s.changeOp(ctx, "accept", acceptArgs{M: *m, Ds: ds, Entries: prepared}, reads, func(t *txn) error {
		existing = nil
		old, err := t.message(key)
		if err != nil {
			return err
		}
		if old != nil && old.Status != store.StatusDenied {
			existing = old
			return nil
		}
		if old != nil { // a denial: its place in the retention index goes with it
			if err := t.unschedule(old, key); err != nil {
				return err
			}
		}
		for _, d := range queued {
			if v, err := t.get(bDead, pairKey(d.Recipient, d.ID)); err != nil {
				return err // the store failing, not the id taken
			} else if v != nil {
				return errDeliveryExists
			}
			if v, err := t.get(bDeliveries, pairKey(d.Recipient, d.ID)); err != nil {
				return err // the store failing, not the id taken
			} else if v != nil {
				return errDeliveryExists
			}
		}
		if err := t.put(bMessages, key, value); err != nil {
			return err
		}
		if err := t.index(m.To, m.ID, key, false); err != nil {
			return err
		}
		for _, d := range queued {
			r := deliveryRecord{created: d.CreatedAt, visible: d.VisibleAt,
				messageFrom: d.MessageFrom, messageID: d.MessageID, envelope: d.Envelope}
			if err := t.putQueued(d.Recipient, d.ID, &r, true); err != nil {
				return err
			}
			if m.ConsentID != "" {
				if err := t.put(bConsents, append(pairKey(m.From, m.ConsentID+"\x00"), d.Recipient...), nil); err != nil {
					return err
				}
			}
		}
		if err := t.schedule(&rec.Message, key); err != nil {
			return err
		}
		return t.appendEntries("accept", prepared)
	})
	switch {
	case existing != nil && err == nil:
		return existing, store.ErrDuplicate
	case err != nil:
		return nil, s.failed("accept", err)
	}
	out := rec.Message
	return &out, nil
}

// acceptedRecord is the record of m as accepted with n deliveries open: a
// fresh status and none of what a previous life of the message left.
func acceptedRecord(m *store.Message, n int) messageRecord {
	rec := messageRecord{Message: *m, Open: n}
	rec.Status = store.StatusAccepted
	rec.Attempts = 0
	rec.Purged, rec.PurgedAt = false, time.Time{}
	rec.Deliveries = make([][2]string, 0, n)
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	return rec
}

// acceptedDeliveries fills in the deliveries of m (recipient, times,
// message) and refuses an invalid or repeated one. Each is named in rec,
// so that Purge finds it.
func acceptedDeliveries(m *store.Message, ds []store.Delivery, rec *messageRecord) ([]store.Delivery, error) {
	queued := make([]store.Delivery, len(ds))
	seen := make(map[string]bool, len(ds))
	for i, d := range ds {
		if d.Recipient == "" {
			d.Recipient = m.To
		}
		d.MessageFrom, d.MessageID, d.Attempts = m.From, m.ID, 0
		if d.CreatedAt.IsZero() {
			d.CreatedAt = m.CreatedAt
		}
		if d.VisibleAt.IsZero() {
			d.VisibleAt = d.CreatedAt
		}
		if err := store.ValidKeys(d.ID, d.Recipient); err != nil {
			return nil, fmt.Errorf("delivery: %w", err)
		}
		if seen[d.Recipient+"\x00"+d.ID] {
			return nil, errors.New("delivery id repeated")
		}
		seen[d.Recipient+"\x00"+d.ID] = true
		queued[i] = d
		rec.Deliveries = append(rec.Deliveries, [2]string{d.Recipient, d.ID})
	}
	return queued, nil
}

// RecordDenial implements store.Messages. The denial is not recorded when
// (from, id) was accepted before; its entry is appended in either case.
func (s *Store) RecordDenial(ctx context.Context, m *store.Message, e audit.Entry) error {
	if err := ctx.Err(); err != nil {
		return s.unavailable("record denial", err)
	}
	if err := store.ValidMessage(m); err != nil {
		return fmt.Errorf("%s: record denial: %w", s.opts.Name, err)
	}
	prepared, err := s.prepare("record denial", []audit.Entry{e})
	if err != nil {
		return err
	}
	rec := messageRecord{Message: *m}
	rec.Status = store.StatusDenied
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("%s: record denial: %w", s.opts.Name, err)
	}
	key := pairKey(m.From, m.ID)
	reads := s.headReads([]kv.Key{{Bucket: bMessages, Key: key}, {Bucket: bRecipients, Key: pairKey(m.To, m.ID)}}, prepared)
	err = s.changeOp(ctx, "record denial", denialArgs{M: *m, E: prepared[0]}, reads, func(t *txn) error {
		old, err := t.message(key)
		if err != nil {
			return err
		}
		if old == nil || old.Status == store.StatusDenied {
			if old != nil {
				if err := t.unschedule(old, key); err != nil {
					return err
				}
			}
			if err := t.put(bMessages, key, value); err != nil {
				return err
			}
			if err := t.index(m.To, m.ID, key, true); err != nil {
				return err
			}
			if err := t.schedule(&rec.Message, key); err != nil {
				return err
			}
		}
		return t.appendEntries("deny", prepared)
	})
	return s.failed("record denial", err)
}

// index points to\x00id at the message key. An accepted message takes the
// entry over from a denied one; otherwise the first writer keeps it.
func (t *txn) index(to, id string, msgKey []byte, denial bool) error {
	ik := pairKey(to, id)
	cur, err := t.get(bRecipients, ik)
	if err != nil {
		return err
	}
	switch {
	case cur == nil:
	case bytes.Equal(cur, msgKey):
		return nil
	case denial:
		return nil
	default:
		other, err := t.message(bytes.Clone(cur))
		if err != nil {
			return err
		}
		if other != nil && other.Status != store.StatusDenied {
			return nil
		}
	}
	return t.put(bRecipients, ik, msgKey)
}

// Message implements store.Messages.
func (s *Store) Message(ctx context.Context, from, id string) (*store.Message, error) {
	if err := s.check(ctx, "message", from, id); err != nil {
		return nil, err
	}
	var m *store.Message
	err := s.read(ctx, func(r kv.Reader) error {
		var err error
		m, err = getMessage(r, pairKey(from, id))
		return err
	})
	if err != nil {
		return nil, s.failed("message", err)
	}
	if m == nil {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// MessageTo implements store.Messages.
func (s *Store) MessageTo(ctx context.Context, to, id string) (*store.Message, error) {
	if err := s.check(ctx, "message to", to, id); err != nil {
		return nil, err
	}
	var m *store.Message
	err := s.read(ctx, func(r kv.Reader) error {
		m = nil
		key, ok, err := r.Get(bRecipients, pairKey(to, id))
		if err != nil || !ok {
			return err
		}
		m, err = getMessage(r, bytes.Clone(key))
		return err
	})
	if err != nil {
		return nil, s.failed("message to", err)
	}
	if m == nil || m.To != to {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// getMessage decodes the record at key for a reader: nil when there is
// none, a *corruptError when it cannot be decoded.
func getMessage(r kv.Reader, key []byte) (*store.Message, error) {
	v, ok, err := r.Get(bMessages, key)
	if err != nil || !ok {
		return nil, err
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, &corruptError{kind: kindMessage, key: bytes.Clone(key), err: err}
	}
	return &rec.Message, nil
}

// messageRecord decodes the record at key in a change; a record that
// cannot be decoded is quarantined and reads as none.
func (t *txn) messageRecord(key []byte) (*messageRecord, error) {
	v, err := t.get(bMessages, key)
	if err != nil || v == nil {
		return nil, err
	}
	var rec messageRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, t.quarantine(kindMessage, bMessages, key, nil)
	}
	return &rec, nil
}

func (t *txn) message(key []byte) (*store.Message, error) {
	rec, err := t.messageRecord(key)
	if rec == nil || err != nil {
		return nil, err
	}
	return &rec.Message, nil
}

// updateMessage applies fn to the record at key and writes it back when fn
// returns true. A missing record (or one quarantined here) is left alone.
func (t *txn) updateMessage(key []byte, fn func(*messageRecord) bool) error {
	rec, err := t.messageRecord(key)
	if err != nil || rec == nil {
		return err
	}
	if !fn(rec) {
		return nil
	}
	nv, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return t.put(bMessages, key, nv)
}
