// Package redis is the shared store: several gateway instances keep their
// state in one Redis server.
//
// Accept, RecordDenial, Lease and Ack are Lua scripts, so each is atomic on
// the server. Durability is Redis's: run it with `appendonly yes` and
// `appendfsync always` so that an Accept that has returned survives a crash
// (Options.RequireDurable checks this at Open).
//
// Keys, under Options.Prefix (default "xborder:"); NUL separates identifiers,
// and identifiers containing NUL are refused:
//
//	m:<from>\x00<id>          hash: rec (message JSON), status, attempts, updated,
//	                          open, dead (counts of its deliveries), dlvs (JSON
//	                          [[recipient, id], ...], until purged), purged (time)
//	t:<to>\x00<id>            string: the key of the message (first accepted wins)
//	q:<recipient>             sorted set of delivery ids scored by visible-at (ms)
//	qs                        set of the recipients that have had a queue
//	d:<recipient>\x00<dlv id> hash: env, created, from, mid, msg, attempts, and
//	                          dead (time) while dead-lettered
//	dl                        sorted set of dead letters (<recipient>\x00<dlv id>)
//	                          scored by the time they were dead-lettered (ms)
//	c:<from>\x00<consent>     set of the recipients of referrals under the consent
//	w:<from>\x00<consent>     string: time of the consent's withdrawal
//	r                         sorted set of messages not yet purged
//	                          (<from>\x00<id>) scored by purge time (ms)
//	rl:<key>:<window ms>      rate counter (Incr), expires after its window
//	ping                      written by Ping, expires after a minute
//
// Message records carry no TTL: they are the replay memory (PROTOCOL §6, at
// least until the message's exp) and the status a sender or recipient reads
// (§5), so they are kept; Purge deletes payloads only (R13). Delivery
// records are deleted on Ack and by Purge. Deleted values can remain in the
// append-only file until Redis rewrites it (BGREWRITEAOF).
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Prefix of every key (default "xborder:").
	Prefix string
	// RequireDurable makes Open fail unless the server runs with
	// appendonly yes and appendfsync always (checked with CONFIG GET).
	RequireDurable bool
}

// Store is a store.Store on a Redis server.
type Store struct {
	c      *goredis.Client
	prefix string
}

var _ store.Store = (*Store)(nil)

// Open connects to url (redis://[user:password@]host:port/db, or rediss://)
// and checks that the server answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	o, err := goredis.ParseURL(url)
	if err != nil {
		// The parse error may repeat the URL and its password: leave it out.
		return nil, errors.New("redis: open: invalid URL")
	}
	if opts.Prefix == "" {
		opts.Prefix = "xborder:"
	}
	if !strings.Contains(url, "max_retries=") {
		// One retry, not go-redis's three with backoff: during an outage
		// the gateway answers 503 at once and the sender retries.
		o.MaxRetries = 1
	}
	s := &Store{c: goredis.NewClient(o), prefix: opts.Prefix}
	if err := s.c.Ping(ctx).Err(); err != nil {
		s.c.Close()
		return nil, unavailable("open", err)
	}
	if opts.RequireDurable {
		if err := s.checkDurable(ctx); err != nil {
			s.c.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) checkDurable(ctx context.Context) error {
	want := map[string]string{"appendonly": "yes", "appendfsync": "always"}
	for name, value := range want {
		got, err := s.c.ConfigGet(ctx, name).Result()
		if err != nil {
			return unavailable("open: config get", err)
		}
		if !strings.EqualFold(got[name], value) {
			return fmt.Errorf("redis: open: server runs with %s %q, want %q", name, got[name], value)
		}
	}
	return nil
}

// Close closes the client. Later calls fail with store.ErrUnavailable.
func (s *Store) Close() error {
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// Ping writes a short-lived key: it fails on a read-only replica, a server
// that refuses writes (MISCONF, OOM) or no server at all.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Set(ctx, s.prefix+"ping", "1", time.Minute).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

func (s *Store) messageKey(from, id string) string { return s.prefix + "m:" + from + "\x00" + id }
func (s *Store) indexKey(to, id string) string     { return s.prefix + "t:" + to + "\x00" + id }
func (s *Store) queueKey(recipient string) string  { return s.prefix + "q:" + recipient }
func (s *Store) deliveryPrefix(recipient string) string {
	return s.prefix + "d:" + recipient + "\x00"
}
func (s *Store) queuesKey() string    { return s.prefix + "qs" }
func (s *Store) deadKey() string      { return s.prefix + "dl" }
func (s *Store) retentionKey() string { return s.prefix + "r" }
func (s *Store) consentKey(from, consentID string) string {
	return s.prefix + "c:" + from + "\x00" + consentID
}
func (s *Store) withdrawnKey(from, consentID string) string {
	return s.prefix + "w:" + from + "\x00" + consentID
}

// Accept implements store.Messages.
func (s *Store) Accept(ctx context.Context, m *store.Message, ds []store.Delivery) (*store.Message, error) {
	if m == nil {
		return nil, errors.New("redis: accept: nil message")
	}
	if err := store.ValidKeys(m.From, m.ID, m.To); err != nil {
		return nil, fmt.Errorf("redis: accept: %w", err)
	}
	if m.ConsentID != "" && store.ValidKeys(m.ConsentID) != nil {
		return nil, fmt.Errorf("redis: accept: consent: %w", store.ErrInvalidKey)
	}
	rec := *m
	rec.Status = store.StatusAccepted
	rec.Attempts = 0
	rec.Purged, rec.PurgedAt = false, time.Time{}
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return nil, fmt.Errorf("redis: accept: %w", err)
	}
	consent, consentKey := "0", s.prefix+"c:"
	if m.ConsentID != "" {
		consent, consentKey = "1", s.consentKey(m.From, m.ConsentID)
	}
	purgeAt := ""
	if at, ok := m.PurgeAt(); ok {
		purgeAt = strconv.FormatInt(ceilMillis(at), 10)
	}
	refs := make([][2]string, 0, len(ds))
	keys := make([]string, 0, 5+2*len(ds))
	keys = append(keys, s.messageKey(m.From, m.ID), s.indexKey(m.To, m.ID),
		s.queuesKey(), consentKey, s.retentionKey())
	args := make([]any, 0, 9+5*len(ds))
	args = append(args, value, formatTime(rec.UpdatedAt), len(ds), m.From, m.ID,
		consent, purgeAt, m.From+"\x00"+m.ID, nil)
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		if d.Recipient == "" {
			d.Recipient = m.To
		}
		if d.CreatedAt.IsZero() {
			d.CreatedAt = m.CreatedAt
		}
		if d.VisibleAt.IsZero() {
			d.VisibleAt = d.CreatedAt
		}
		if err := store.ValidKeys(d.ID, d.Recipient); err != nil {
			return nil, fmt.Errorf("redis: accept: delivery: %w", err)
		}
		dk := s.deliveryPrefix(d.Recipient) + d.ID
		if seen[dk] {
			return nil, errors.New("redis: accept: delivery id repeated")
		}
		seen[dk] = true
		keys = append(keys, s.queueKey(d.Recipient), dk)
		args = append(args, d.ID, ceilMillis(d.VisibleAt), formatTime(d.CreatedAt), d.Envelope, d.Recipient)
		refs = append(refs, [2]string{d.Recipient, d.ID})
	}
	if args[8], err = json.Marshal(refs); err != nil {
		return nil, fmt.Errorf("redis: accept: %w", err)
	}
	res, err := acceptScript.Run(ctx, s.c, keys, args...).Slice()
	if err != nil {
		return nil, unavailable("accept", err)
	}
	code, _ := intAt(res, 0)
	switch {
	case code == 1 && len(res) == 1:
		return &rec, nil
	case code == 2:
		return nil, errors.New("redis: accept: delivery id already queued or dead-lettered")
	case code == 0 && len(res) == 2:
		fields, _ := res[1].([]any)
		old, err := decodeMessage(fields)
		if err != nil || old == nil {
			return nil, unavailable("accept", errors.New("unreadable existing record"))
		}
		return old, store.ErrDuplicate
	}
	return nil, unavailable("accept", errors.New("unexpected script reply"))
}

// RecordDenial implements store.Messages. It does nothing when (from, id) was
// accepted before.
func (s *Store) RecordDenial(ctx context.Context, m *store.Message) error {
	if m == nil {
		return errors.New("redis: record denial: nil message")
	}
	if err := store.ValidKeys(m.From, m.ID, m.To); err != nil {
		return fmt.Errorf("redis: record denial: %w", err)
	}
	rec := *m
	rec.Status = store.StatusDenied
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("redis: record denial: %w", err)
	}
	keys := []string{s.messageKey(m.From, m.ID), s.indexKey(m.To, m.ID)}
	if err := denyScript.Run(ctx, s.c, keys, value, formatTime(rec.UpdatedAt)).Err(); err != nil {
		return unavailable("record denial", err)
	}
	return nil
}

// Message implements store.Messages.
func (s *Store) Message(ctx context.Context, from, id string) (*store.Message, error) {
	if store.ValidKeys(from, id) != nil {
		return nil, store.ErrNotFound
	}
	fields, err := s.c.HMGet(ctx, s.messageKey(from, id), "rec", "status", "attempts", "updated", "purged").Result()
	if err != nil {
		return nil, unavailable("message", err)
	}
	m, err := decodeMessage(fields)
	if err != nil {
		return nil, unavailable("message", err)
	}
	if m == nil {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// MessageTo implements store.Messages.
func (s *Store) MessageTo(ctx context.Context, to, id string) (*store.Message, error) {
	if store.ValidKeys(to, id) != nil {
		return nil, store.ErrNotFound
	}
	res, err := messageToScript.Run(ctx, s.c, []string{s.indexKey(to, id)}).Slice()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("message to", err)
	}
	m, err := decodeMessage(res)
	if err != nil {
		return nil, unavailable("message to", err)
	}
	if m == nil || m.To != to {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// decodeMessage reads the fields rec, status, attempts, updated, purged; nil
// when the record does not exist.
func decodeMessage(fields []any) (*store.Message, error) {
	if len(fields) != 5 {
		return nil, errors.New("unexpected reply")
	}
	raw, ok := fields[0].(string)
	if !ok {
		return nil, nil
	}
	var m store.Message
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	if st, ok := fields[1].(string); ok {
		m.Status = st
	}
	if a, ok := fields[2].(string); ok {
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, errors.New("decode message: attempts")
		}
		m.Attempts = n
	}
	if u, ok := fields[3].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, u)
		if err != nil {
			return nil, errors.New("decode message: updated")
		}
		m.UpdatedAt = t
	}
	if p, ok := fields[4].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, p)
		if err != nil {
			return nil, errors.New("decode message: purged")
		}
		m.Purged, m.PurgedAt = true, t
	}
	return &m, nil
}

// Lease implements store.Queue.
func (s *Store) Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error) {
	if max <= 0 || store.ValidKeys(recipient) != nil {
		return nil, nil
	}
	until := now.Add(visibility)
	res, err := leaseScript.Run(ctx, s.c, []string{s.queueKey(recipient)},
		now.UnixMilli(), max, ceilMillis(until), s.deliveryPrefix(recipient)).Slice()
	if err != nil {
		return nil, unavailable("lease", err)
	}
	out := make([]store.Delivery, 0, len(res))
	for _, r := range res {
		f, _ := r.([]any)
		if len(f) != 6 {
			return nil, unavailable("lease", errors.New("unexpected script reply"))
		}
		id, _ := f[0].(string)
		attempts, _ := f[1].(int64)
		env, _ := f[2].(string)
		created, _ := f[3].(string)
		from, _ := f[4].(string)
		mid, _ := f[5].(string)
		ct, err := time.Parse(time.RFC3339Nano, created)
		if err != nil {
			return nil, unavailable("lease", errors.New("decode delivery: created"))
		}
		out = append(out, store.Delivery{
			ID: id, Recipient: recipient, MessageFrom: from, MessageID: mid,
			Envelope: []byte(env), Attempts: int(attempts),
			CreatedAt: ct, VisibleAt: until,
		})
	}
	return out, nil
}

// Ack implements store.Queue.
func (s *Store) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return store.ErrNotFound
	}
	keys := []string{s.queueKey(recipient), s.deliveryPrefix(recipient) + deliveryID}
	n, err := ackScript.Run(ctx, s.c, keys, deliveryID, formatTime(now)).Int()
	if err != nil {
		return unavailable("ack", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Delivery implements store.Queue.
func (s *Store) Delivery(ctx context.Context, recipient, deliveryID string) (*store.Delivery, error) {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return nil, store.ErrNotFound
	}
	f, err := s.c.HMGet(ctx, s.deliveryPrefix(recipient)+deliveryID, "env", "created", "from", "mid", "attempts").Result()
	if err != nil {
		return nil, unavailable("delivery", err)
	}
	env, ok := f[0].(string)
	if !ok {
		return nil, store.ErrNotFound
	}
	created, _ := f[1].(string)
	from, _ := f[2].(string)
	mid, _ := f[3].(string)
	attempts, _ := f[4].(string)
	ct, _ := time.Parse(time.RFC3339Nano, created)
	n, _ := strconv.Atoi(attempts)
	return &store.Delivery{ID: deliveryID, Recipient: recipient, MessageFrom: from, MessageID: mid,
		Envelope: []byte(env), Attempts: n, CreatedAt: ct}, nil
}

// Depth implements store.Queue.
func (s *Store) Depth(ctx context.Context, recipient string) (int, error) {
	n, err := s.c.ZCard(ctx, s.queueKey(recipient)).Result()
	if err != nil {
		return 0, unavailable("depth", err)
	}
	return int(n), nil
}

func intAt(res []any, i int) (int64, bool) {
	if i >= len(res) {
		return -1, false
	}
	n, ok := res[i].(int64)
	return n, ok
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ceilMillis rounds up to the millisecond, so a delivery is never offered
// before its visible time.
func ceilMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return ms
}

func unavailable(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", op, store.ErrUnavailable, err)
}
