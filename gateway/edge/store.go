package edge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
)

// The edge's state lives in one bbolt file, so that a change and its audit
// entry are one transaction and one fsync:
//
//	outbox       message id -> Outgoing JSON
//	pending      message id -> Due, binary (queued: what the sender needs to pick it)
//	idempotency  Idempotency-Key -> idemRecord JSON
//	inbox        delivery id -> hand-over JSON (deliver: local, until acked)
//	handed       delivery id -> RFC 3339 time (handed over: a repeat is only acked)
//	quarantine   delivery id -> quarantined JSON (envelope and reason)
//	blobs        message id + "/jws" | "/sealed" -> the signed and sealed bytes, raw
//	retention    finished-at (8 bytes, Unix ns) + kind + id -> nothing: when each
//	             finished message, hand-over marker and quarantined delivery
//	             became final, in time order, for the retention purge
//	probe        readiness probe
//	chains/<replica>/entries, checkpoints, head: the audit chain (as the hub's bolt store)
var (
	bucketOutbox      = []byte("outbox")
	bucketPending     = []byte("pending")
	bucketIdem        = []byte("idempotency")
	bucketInbox       = []byte("inbox")
	bucketHanded      = []byte("handed")
	bucketQuarantine  = []byte("quarantine")
	bucketProbe       = []byte("probe")
	bucketBlobs       = []byte("blobs")
	bucketRetention   = []byte("retention")
	bucketChains      = []byte("chains")
	bucketEntries     = []byte("entries")
	bucketCheckpoints = []byte("checkpoints")
	keyHead           = []byte("head")
)

// Statuses of an outgoing message (GET /v1/outbox/{id}).
const (
	StatusQueued   = "queued"
	StatusAccepted = "accepted"
	StatusRefused  = "refused"
	StatusExpired  = "expired"
)

// Outgoing is one message of the outbox.
type Outgoing struct {
	ID        string    `json:"id"`
	To        string    `json:"to"`
	Type      string    `json:"type"`
	Purpose   string    `json:"purpose"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Exp is the message's exp as a NumericDate.
	Exp float64 `json:"exp"`
	// JWS is the signed message (made once: every retry carries it), and
	// Sealed the JWE around it once the hub's key is known (every retry
	// sends these same bytes). Both are dropped at the final answer.
	JWS    []byte `json:"-"`
	Sealed []byte `json:"-"`
	// MaybeReceived: an attempt may have reached the hub without an answer
	// (a cut connection, a 503 outcome_unknown): at exp the same bytes are
	// sent once more to learn the outcome instead of calling it expired.
	MaybeReceived bool `json:"maybe_received,omitempty"`
	// Resealed: the hub could not decrypt an envelope (its key was retired
	// since it was read) and the signed message was sealed again, once.
	Resealed bool `json:"resealed,omitempty"`
	// Tries counts the waits so far (sends, refused connections, an
	// unreachable key set): the backoff grows with it.
	Tries       int       `json:"tries,omitempty"`
	NextAt      time.Time `json:"next_at"`
	Receipt     *Receipt  `json:"receipt,omitempty"`
	Problem     any       `json:"problem,omitempty"`
	SubjectHash string    `json:"subject_hash,omitempty"`
}

// Receipt is the hub's verified receipt as the status shows it.
type Receipt struct {
	DecisionID    string   `json:"decision_id"`
	PolicyVersion string   `json:"policy_version"`
	Redacted      []string `json:"redacted"`
	AcceptedAt    string   `json:"accepted_at"`
	// JWS is the receipt itself (the hub's compact JWS), kept as evidence.
	JWS string `json:"jws"`
}

type idemRecord struct {
	BodySHA256 string    `json:"body_sha256"`
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
}

type quarantined struct {
	DeliveryID string    `json:"delivery_id"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	Envelope   string    `json:"envelope"`
}

// Store is the edge's bbolt file.
type Store struct {
	db      *bbolt.DB
	replica string
	now     func() time.Time
}

var _ audit.Backend = (*Store)(nil)

// OpenStore opens (creating) the store file; it fails at once when another
// process holds it.
func OpenStore(path, replica string, now func() time.Time) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("edge: store: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("edge: store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketOutbox, bucketPending, bucketIdem, bucketInbox, bucketHanded, bucketQuarantine, bucketProbe, bucketChains, bucketBlobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketRetention) != nil {
			return nil
		}
		if _, err := tx.CreateBucket(bucketRetention); err != nil {
			return err
		}
		return backfillRetention(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("edge: store: %w", err)
	}
	return &Store{db: db, replica: replica, now: now}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// errIdemConflict: the Idempotency-Key was used with another body.
var errIdemConflict = errors.New("edge: idempotency key used with another body")

// errNotFound: no such message or delivery.
var errNotFound = errors.New("edge: not found")

// Enqueue writes a new outgoing message, its Idempotency-Key (when given)
// and its audit entry in one transaction. When the key was used before with
// the same body, nothing is written and the earlier message is returned
// with fresh=false; with another body, errIdemConflict.
func (s *Store) Enqueue(o *Outgoing, idemKey, bodySHA string, e audit.Entry) (got *Outgoing, fresh bool, err error) {
	e, err = audit.Prepare(e, s.replica, s.now())
	if err != nil {
		return nil, false, err
	}
	// Batched: concurrent posts share one commit and one fsync. A batched
	// function may run again (alone) when another one fails: it starts
	// from nothing each time.
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		got, fresh = nil, false
		if idemKey != "" {
			if v := tx.Bucket(bucketIdem).Get([]byte(idemKey)); v != nil {
				var r idemRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				if r.BodySHA256 != bodySHA {
					return errIdemConflict
				}
				prev, err := getOutgoing(tx, r.ID)
				if err != nil {
					return err
				}
				got = prev
				return nil
			}
			v, _ := json.Marshal(idemRecord{BodySHA256: bodySHA, ID: o.ID, At: s.now().UTC()})
			if err := tx.Bucket(bucketIdem).Put([]byte(idemKey), v); err != nil {
				return err
			}
		}
		if err := putOutgoing(tx, o); err != nil {
			return err
		}
		if err := putPending(tx, o); err != nil {
			return err
		}
		fresh, got = true, o
		_, err := appendEntry(tx, e)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return got, fresh, nil
}

// purgeBatch bounds the keys one purge transaction deletes.
const purgeBatch = 1000

// PurgeIdempotency deletes the Idempotency-Keys recorded before before,
// each with a purged audit entry naming its message (never the key: it is
// the caller's), and returns how many.
func (s *Store) PurgeIdempotency(before time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bbolt.Tx) error {
			n = 0
			b := tx.Bucket(bucketIdem)
			var old [][]byte
			var ids []string
			err := b.ForEach(func(k, v []byte) error {
				if len(old) >= purgeBatch {
					return nil
				}
				var r idemRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				if r.At.Before(before) {
					old = append(old, append([]byte(nil), k...))
					ids = append(ids, r.ID)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for i, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
				if err := s.appendAll(tx, []audit.Entry{{Kind: audit.KindPurged, MessageID: ids[i],
					Detail: "Idempotency-Key past its retention"}}); err != nil {
					return err
				}
			}
			n = len(old)
			return nil
		})
		total += n
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}

// Idempotent looks up an Idempotency-Key: the message it made, whether the
// body was the same, and whether the key is known at all.
func (s *Store) Idempotent(key, bodySHA string) (o *Outgoing, same, known bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get([]byte(key))
		if v == nil {
			return nil
		}
		known = true
		var r idemRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.BodySHA256 != bodySHA {
			return nil
		}
		same = true
		o, err = getOutgoing(tx, r.ID)
		return err
	})
	return o, same, known, err
}

// Update changes an outgoing message with fn inside one transaction
// (batched with concurrent ones; fn may run more than once and must start
// from what it is given), and appends the entries fn returns; a message no
// longer queued leaves the pending index.
func (s *Store) Update(id string, fn func(o *Outgoing) ([]audit.Entry, error)) (*Outgoing, error) {
	var out *Outgoing
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		out = nil
		o, err := getOutgoing(tx, id)
		if err != nil {
			return err
		}
		wasQueued := o.Status == StatusQueued
		entries, err := fn(o)
		if err != nil {
			return err
		}
		o.UpdatedAt = s.now().UTC()
		if wasQueued && o.Status != StatusQueued {
			if err := putRetention(tx, o.UpdatedAt, retainOutgoing, o.ID); err != nil {
				return err
			}
		}
		if err := putOutgoing(tx, o); err != nil {
			return err
		}
		if o.Status != StatusQueued {
			if err := tx.Bucket(bucketPending).Delete([]byte(id)); err != nil {
				return err
			}
		} else if err := putPending(tx, o); err != nil {
			return err
		}
		for _, e := range entries {
			p, err := audit.Prepare(e, s.replica, s.now())
			if err != nil {
				return err
			}
			if _, err := appendEntry(tx, p); err != nil {
				return err
			}
		}
		out = o
		return nil
	})
	return out, err
}

// Outgoing reads one message.
func (s *Store) Outgoing(id string) (*Outgoing, error) {
	var o *Outgoing
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		o, err = getOutgoing(tx, id)
		return err
	})
	return o, err
}

// Due is what the sender needs to know of a queued message to pick it:
// kept in the pending index, so that looking for due work reads no
// message.
type Due struct {
	ID            string    `json:"id"`
	NextAt        time.Time `json:"next_at"`
	Exp           float64   `json:"exp"`
	MaybeReceived bool      `json:"maybe_received,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

func putPending(tx *bbolt.Tx, o *Outgoing) error {
	return tx.Bucket(bucketPending).Put([]byte(o.ID), encodeDue(Due{ID: o.ID, NextAt: o.NextAt, Exp: o.Exp, MaybeReceived: o.MaybeReceived, CreatedAt: o.CreatedAt}))
}

// A Due is kept in a fixed binary form, not JSON: the sender and the
// metrics read the whole pending index, and under a backlog it holds
// thousands of them.
//
//	0      dueFormat
//	1..8   NextAt, Unix nanoseconds
//	9..16  Exp, IEEE 754 bits
//	17..24 CreatedAt, Unix nanoseconds
//	25     flags (1: MaybeReceived)
const (
	dueFormat = 1
	dueLen    = 26
)

func encodeDue(d Due) []byte {
	b := make([]byte, dueLen)
	b[0] = dueFormat
	binary.BigEndian.PutUint64(b[1:], uint64(d.NextAt.UnixNano()))
	binary.BigEndian.PutUint64(b[9:], math.Float64bits(d.Exp))
	binary.BigEndian.PutUint64(b[17:], uint64(d.CreatedAt.UnixNano()))
	if d.MaybeReceived {
		b[25] = 1
	}
	return b
}

// decodeDue reads a Due; a JSON one is from a store written before the
// binary form.
func decodeDue(id, v []byte) (Due, error) {
	if len(v) == dueLen && v[0] == dueFormat {
		return Due{ID: string(id),
			NextAt:        time.Unix(0, int64(binary.BigEndian.Uint64(v[1:]))).UTC(),
			Exp:           math.Float64frombits(binary.BigEndian.Uint64(v[9:])),
			CreatedAt:     time.Unix(0, int64(binary.BigEndian.Uint64(v[17:]))).UTC(),
			MaybeReceived: v[25]&1 != 0}, nil
	}
	var d Due
	if err := json.Unmarshal(v, &d); err != nil {
		return Due{}, fmt.Errorf("edge: pending %s: %w", id, err)
	}
	return d, nil
}

// Pending lists the queued messages.
func (s *Store) Pending() ([]Due, error) {
	var out []Due
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			d, err := decodeDue(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// The signed and sealed bytes are kept raw beside the record, so that the
// record's JSON stays small.
func blobKey(id, kind string) []byte { return []byte(id + "/" + kind) }

func getOutgoing(tx *bbolt.Tx, id string) (*Outgoing, error) {
	v := tx.Bucket(bucketOutbox).Get([]byte(id))
	if v == nil {
		return nil, errNotFound
	}
	var o Outgoing
	if err := json.Unmarshal(v, &o); err != nil {
		return nil, err
	}
	blobs := tx.Bucket(bucketBlobs)
	if b := blobs.Get(blobKey(id, "jws")); b != nil {
		o.JWS = append([]byte(nil), b...)
	}
	if b := blobs.Get(blobKey(id, "sealed")); b != nil {
		o.Sealed = append([]byte(nil), b...)
	}
	return &o, nil
}

func putOutgoing(tx *bbolt.Tx, o *Outgoing) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketOutbox).Put([]byte(o.ID), v); err != nil {
		return err
	}
	blobs := tx.Bucket(bucketBlobs)
	for kind, b := range map[string][]byte{"jws": o.JWS, "sealed": o.Sealed} {
		var err error
		if b == nil {
			err = blobs.Delete(blobKey(o.ID, kind))
		} else {
			err = blobs.Put(blobKey(o.ID, kind), b)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Handed reports whether a delivery was handed over before.
func (s *Store) Handed(deliveryID string) bool {
	var ok bool
	_ = s.db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketHanded).Get([]byte(deliveryID)) != nil ||
			tx.Bucket(bucketQuarantine).Get([]byte(deliveryID)) != nil
		return nil
	})
	return ok
}

// MarkHanded records a durable hand-over (and, for deliver: local, the
// document the local inbox offers) with its audit entries.
func (s *Store) MarkHanded(deliveryID string, localDoc []byte, entries ...audit.Entry) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if localDoc != nil {
			if err := tx.Bucket(bucketInbox).Put([]byte(deliveryID), localDoc); err != nil {
				return err
			}
		}
		now := s.now().UTC()
		if err := tx.Bucket(bucketHanded).Put([]byte(deliveryID), []byte(now.Format(time.RFC3339Nano))); err != nil {
			return err
		}
		if err := putRetention(tx, now, retainHanded, deliveryID); err != nil {
			return err
		}
		return s.appendAll(tx, entries)
	})
}

// Quarantine keeps a delivery that failed verification, with its audit
// entry.
func (s *Store) Quarantine(q quarantined, e audit.Entry) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		v, err := json.Marshal(q)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketQuarantine).Put([]byte(q.DeliveryID), v); err != nil {
			return err
		}
		if err := putRetention(tx, q.At, retainQuarantined, q.DeliveryID); err != nil {
			return err
		}
		return s.appendAll(tx, []audit.Entry{e})
	})
}

// Record appends entries that change nothing else (an outbound policy's
// denial).
func (s *Store) Record(entries ...audit.Entry) error {
	return s.db.Update(func(tx *bbolt.Tx) error { return s.appendAll(tx, entries) })
}

func (s *Store) appendAll(tx *bbolt.Tx, entries []audit.Entry) error {
	for _, e := range entries {
		p, err := audit.Prepare(e, s.replica, s.now())
		if err != nil {
			return err
		}
		if _, err := appendEntry(tx, p); err != nil {
			return err
		}
	}
	return nil
}

// LocalInbox lists up to max deliveries not yet acknowledged locally, in
// delivery id order.
func (s *Store) LocalInbox(max int) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketInbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			out = append(out, append(json.RawMessage(nil), v...))
		}
		return nil
	})
	return out, err
}

// AckLocal removes a delivery from the local inbox.
func (s *Store) AckLocal(deliveryID string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketInbox)
		if b.Get([]byte(deliveryID)) == nil {
			return errNotFound
		}
		return b.Delete([]byte(deliveryID))
	})
}

// Probe writes and syncs one key: the store can write.
func (s *Store) Probe() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketProbe).Put([]byte("probe"), []byte(s.now().UTC().Format(time.RFC3339Nano)))
	})
}

// Counts reads what the metrics report from the file.
type Counts struct {
	Depth       int
	Oldest      time.Time // zero when nothing is queued
	LocalInbox  int
	Quarantined int
	// Commits is the store's write transactions so far (its file's
	// transaction id), so that commits per message can be watched.
	Commits int
}

// Counts reads the outbox depth, the oldest queued message, the local
// inbox and the quarantine.
func (s *Store) Counts() (Counts, error) {
	var c Counts
	err := s.db.View(func(tx *bbolt.Tx) error {
		c.Commits = tx.ID()
		c.LocalInbox = tx.Bucket(bucketInbox).Stats().KeyN
		c.Quarantined = tx.Bucket(bucketQuarantine).Stats().KeyN
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			c.Depth++
			if d, err := decodeDue(k, v); err == nil && (c.Oldest.IsZero() || d.CreatedAt.Before(c.Oldest)) {
				c.Oldest = d.CreatedAt
			}
			return nil
		})
	})
	return c, err
}

// The audit chain, as the hub's bolt store keeps it (audit.Backend).

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func readHead(chain *bbolt.Bucket) (uint64, string) {
	if chain == nil {
		return 0, ""
	}
	v := chain.Get(keyHead)
	if len(v) < 8 {
		return 0, ""
	}
	return binary.BigEndian.Uint64(v[:8]), string(v[8:])
}

func appendEntry(tx *bbolt.Tx, e audit.Entry) (audit.Entry, error) {
	chain, err := tx.Bucket(bucketChains).CreateBucketIfNotExists([]byte(e.Replica))
	if err != nil {
		return audit.Entry{}, err
	}
	entries, err := chain.CreateBucketIfNotExists(bucketEntries)
	if err != nil {
		return audit.Entry{}, err
	}
	count, head := readHead(chain)
	if err := e.Link(count, head); err != nil {
		return audit.Entry{}, err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return audit.Entry{}, err
	}
	if err := entries.Put(seqKey(e.Seq), v); err != nil {
		return audit.Entry{}, err
	}
	h := append(seqKey(e.Seq), e.Hash...)
	return e, chain.Put(keyHead, h)
}

// Append implements audit.Backend.
func (s *Store) Append(_ context.Context, replica string, e audit.Entry) (audit.Entry, error) {
	p, err := audit.Prepare(e, replica, s.now())
	if err != nil {
		return audit.Entry{}, err
	}
	var out audit.Entry
	err = s.db.Update(func(tx *bbolt.Tx) error {
		out, err = appendEntry(tx, p)
		return err
	})
	return out, err
}

// Entries implements audit.Backend.
func (s *Store) Entries(ctx context.Context, replica string, from uint64, fn func(audit.Entry) error) error {
	var list []audit.Entry
	err := s.db.View(func(tx *bbolt.Tx) error {
		chain := tx.Bucket(bucketChains).Bucket([]byte(replica))
		if chain == nil || chain.Bucket(bucketEntries) == nil {
			return nil
		}
		c := chain.Bucket(bucketEntries).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			var e audit.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			list = append(list, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Replicas implements audit.Backend.
func (s *Store) Replicas(context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketChains).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Head implements audit.Backend.
func (s *Store) Head(_ context.Context, replica string) (count uint64, head string, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		count, head = readHead(tx.Bucket(bucketChains).Bucket([]byte(replica)))
		return nil
	})
	return count, head, err
}

// PutCheckpoint implements audit.Backend.
func (s *Store) PutCheckpoint(_ context.Context, cp audit.Checkpoint) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		chain, err := tx.Bucket(bucketChains).CreateBucketIfNotExists([]byte(cp.Replica))
		if err != nil {
			return err
		}
		b, err := chain.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		n, _ := b.NextSequence()
		v, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		return b.Put(seqKey(n), v)
	})
}

// Checkpoints implements audit.Backend.
func (s *Store) Checkpoints(_ context.Context, replica string) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	err := s.db.View(func(tx *bbolt.Tx) error {
		chain := tx.Bucket(bucketChains).Bucket([]byte(replica))
		if chain == nil || chain.Bucket(bucketCheckpoints) == nil {
			return nil
		}
		return chain.Bucket(bucketCheckpoints).ForEach(func(_, v []byte) error {
			var cp audit.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			out = append(out, cp)
			return nil
		})
	})
	return out, err
}

// Retention: what is final is kept for the edge's retention period
// (config retention), then deleted with an audit entry — a finished
// message's record with its receipt or problem, a hand-over marker, a
// quarantined delivery. Queued messages and deliveries the local inbox
// still offers are never purged; the audit chain is append-only.
const (
	retainOutgoing    = 'o'
	retainHanded      = 'h'
	retainQuarantined = 'q'
)

func retentionKey(at time.Time, kind byte, id string) []byte {
	k := make([]byte, 9, 9+len(id))
	binary.BigEndian.PutUint64(k, uint64(at.UnixNano()))
	k[8] = kind
	return append(k, id...)
}

func putRetention(tx *bbolt.Tx, at time.Time, kind byte, id string) error {
	return tx.Bucket(bucketRetention).Put(retentionKey(at, kind, id), nil)
}

// backfillRetention indexes what a store written before the retention
// index holds.
func backfillRetention(tx *bbolt.Tx) error {
	err := tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
		var o Outgoing
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("edge: outbox %s: %w", k, err)
		}
		if o.Status == StatusQueued {
			return nil
		}
		return putRetention(tx, o.UpdatedAt, retainOutgoing, o.ID)
	})
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketHanded).ForEach(func(k, v []byte) error {
		at, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil {
			return fmt.Errorf("edge: handed %s: %w", k, err)
		}
		return putRetention(tx, at, retainHanded, string(k))
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
		var q quarantined
		if err := json.Unmarshal(v, &q); err != nil {
			return fmt.Errorf("edge: quarantine %s: %w", k, err)
		}
		return putRetention(tx, q.At, retainQuarantined, string(k))
	})
}

// PurgeRetention deletes what became final before before: finished
// messages (a forgotten entry each, naming the message and the hub's
// decision), hand-over markers and quarantined deliveries (a purged entry
// each, naming the delivery), in transactions of at most purgeBatch, and
// returns how many.
func (s *Store) PurgeRetention(before time.Time) (int, error) {
	limit := uint64(before.UnixNano())
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bbolt.Tx) error {
			n = 0
			idx := tx.Bucket(bucketRetention)
			var keys [][]byte
			c := idx.Cursor()
			for k, _ := c.First(); k != nil && len(keys) < purgeBatch; k, _ = c.Next() {
				if len(k) < 9 || binary.BigEndian.Uint64(k) >= limit {
					break
				}
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				e, err := purgeOne(tx, k[8], string(k[9:]))
				if err != nil {
					return err
				}
				if err := idx.Delete(k); err != nil {
					return err
				}
				if e != nil {
					if err := s.appendAll(tx, []audit.Entry{*e}); err != nil {
						return err
					}
				}
			}
			n = len(keys)
			return nil
		})
		total += n
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}

// purgeOne deletes one final record and returns its audit entry (nil when
// it was gone already).
func purgeOne(tx *bbolt.Tx, kind byte, id string) (*audit.Entry, error) {
	switch kind {
	case retainOutgoing:
		o, err := getOutgoing(tx, id)
		if errors.Is(err, errNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if o.Status == StatusQueued {
			return nil, nil // not final (cannot happen: final is final)
		}
		if err := tx.Bucket(bucketOutbox).Delete([]byte(id)); err != nil {
			return nil, err
		}
		for _, b := range []string{"jws", "sealed"} {
			if err := tx.Bucket(bucketBlobs).Delete(blobKey(id, b)); err != nil {
				return nil, err
			}
		}
		e := &audit.Entry{Kind: audit.KindForgotten, MessageID: id, To: o.To, Detail: "outbox record (" + o.Status + ") past the edge's retention"}
		if o.Receipt != nil {
			e.DecisionID = o.Receipt.DecisionID
		}
		return e, nil
	case retainHanded, retainQuarantined:
		b, what := tx.Bucket(bucketHanded), "hand-over marker"
		if kind == retainQuarantined {
			b, what = tx.Bucket(bucketQuarantine), "quarantined delivery"
		}
		if b.Get([]byte(id)) == nil {
			return nil, nil
		}
		if err := b.Delete([]byte(id)); err != nil {
			return nil, err
		}
		return &audit.Entry{Kind: audit.KindPurged, Detail: what + " " + id + " past the edge's retention"}, nil
	}
	return nil, fmt.Errorf("edge: retention index: unknown kind %q", kind)
}
