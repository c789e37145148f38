// Package redis is the shared store: several gateway instances keep their
// state in one Redis server.
//
// Accept, RecordDenial, Ack, DeadLetter and Purge are applied by one Lua
// script together with their audit entries (commit.go): both or neither.
// Lease, Release and Requeue are scripts of their own. Durability is
// Redis's: run it with `appendonly yes` and `appendfsync always` so that a
// change that has returned survives a crash; Options.RequireDurable checks
// this at Open and again with every write probe (Ping, at most once a
// second), refusing writes while it does not hold.
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
//	r                         sorted set of the messages that will be purged or
//	                          forgotten (<from>\x00<id>), scored by the time
//	                          their next step is due (ms, rounded up): the
//	                          purge, then the forgetting (store.Message.Retire)
//	rl:<key>:<window ms>      rate counter (Incr), expires after its window
//	audit:replicas            set of the replicas that have a chain
//	audit:e:<replica>         list of entry JSON, entry n at index n-1
//	audit:h:<replica>         the chain's head hash
//	audit:c:<replica>         list of checkpoint JSON
//	audit:f:<replica>         the chain's fence (a counter, commit.go)
//	quarantine:<key>:<ns>     a record that could not be decoded, renamed
//	probe                     written by Ping, expires after a minute
//
// Message records carry no TTL: they are the replay memory (PROTOCOL §6, at
// least until the message's exp) and the status a sender or recipient reads
// (§5). Purge deletes a message's payloads when its retention period ends
// (R13) and its record and recipient index key once that and its exp have
// passed (store.Message.ForgetAt), by script, each with its audit entry: a
// TTL would delete without an entry and is not used. The consent sets
// (c:) and withdrawals (w:) outlive the messages, for R16. Delivery records
// are deleted on Ack and by Purge. Deleted values can remain in the
// append-only file until Redis rewrites it (BGREWRITEAOF).
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Options tune Open. The zero value opens a store that keeps no audit
// entries of its own (Replica empty: a change with entries is refused).
type Options struct {
	// Prefix of every key (default "xborder:").
	Prefix string
	// RequireDurable makes Open fail unless the server runs with
	// appendonly yes and appendfsync always (checked with CONFIG GET), and
	// makes Ping fail and every write be refused while that no longer
	// holds (checked at most once a second).
	RequireDurable bool
	// Replica names this gateway's audit chain: the entries of the store's
	// changes go there.
	Replica string
	// Clock stamps those entries (default time.Now).
	Clock func() time.Time
	// Logger reports quarantined records (default slog.Default()).
	Logger *slog.Logger
	// OnQuarantine, when set, is told of each record moved to quarantine
	// (kind: "message", "delivery", "dead_letter"), for a metric.
	OnQuarantine func(kind string)
	// Fault, when set, is asked before each write probe ("probe") and for
	// each operation of a commit script (its kind: "accept", "deny", "ack",
	// "dead", "purge", "append"); an error fails the probe, or makes the
	// script fail after its checks and before its first write — the whole
	// batch, nothing written. For tests.
	Fault func(op string) error
}

// Store is a store.Store on a Redis server.
type Store struct {
	// c reads and makes the changes without audit entries; w runs the
	// sequencers' scripts, which go-redis must never send twice (no
	// retries) and whose deadline is the context's.
	c, w   *goredis.Client
	wopts  *goredis.Options // for the sequencers' own connections (pipe.go)
	prefix string
	opts   Options
	log    *slog.Logger

	seqMu  sync.Mutex
	seqs   map[string]*sequencer
	closed bool

	// probe is Ping's; durable is the persistence check of the writes.
	probe, durable probe
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
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if !strings.Contains(url, "max_retries=") {
		// One retry, not go-redis's three with backoff: during an outage
		// the gateway answers 503 at once and the sender retries.
		o.MaxRetries = 1
	}
	wo := *o
	wo.MaxRetries = -1
	wo.ContextTimeoutEnabled = true
	po := wo
	s := &Store{c: goredis.NewClient(o), w: goredis.NewClient(&wo), wopts: &po, prefix: opts.Prefix, opts: opts,
		log: log.With("component", "store"), seqs: map[string]*sequencer{}}
	if err := s.c.Ping(ctx).Err(); err != nil {
		s.closeClients()
		return nil, unavailable("open", err)
	}
	if opts.RequireDurable {
		if err := s.checkDurable(ctx); err != nil {
			s.closeClients()
			return nil, fmt.Errorf("redis: open: %w", err)
		}
	}
	return s, nil
}

// checkDurable reads the server's persistence settings.
func (s *Store) checkDurable(ctx context.Context) error { return checkDurable(ctx, s.c) }

// checkDurable reads the server's persistence settings.
func checkDurable(ctx context.Context, c goredis.UniversalClient) error {
	var ao, af *goredis.MapStringStringCmd
	_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		ao = p.ConfigGet(ctx, "appendonly")
		af = p.ConfigGet(ctx, "appendfsync")
		return nil
	})
	if err != nil {
		return fmt.Errorf("config get: %w: %w", store.ErrUnavailable, err)
	}
	got := map[string]string{"appendonly": ao.Val()["appendonly"], "appendfsync": af.Val()["appendfsync"]}
	for name, want := range map[string]string{"appendonly": "yes", "appendfsync": "always"} {
		if !strings.EqualFold(got[name], want) {
			return fmt.Errorf("%w: durability lost: the server runs with %s %q, want %q", store.ErrUnavailable, name, got[name], want)
		}
	}
	return nil
}

func (s *Store) closeClients() {
	s.c.Close()
	s.w.Close()
}

// Close stops the sequencers and closes the clients. Later calls fail with
// store.ErrUnavailable.
func (s *Store) Close() error {
	s.probe.reset()
	s.durable.reset()
	s.seqMu.Lock()
	s.closed = true
	seqs := s.seqs
	s.seqs = map[string]*sequencer{}
	s.seqMu.Unlock()
	for _, q := range seqs {
		q.close()
	}
	werr := s.w.Close()
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("redis: close: %w", werr)
	}
	return nil
}

// probeEvery is how long a probe's result is kept.
const probeEvery = time.Second

// probe is the last probe of one kind and its result.
type probe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// run returns the last result if it is younger than probeEvery, else runs
// fn and keeps its result (not when ctx ended: that says nothing of the
// server).
func (p *probe) run(ctx context.Context, fn func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.at.IsZero() && time.Since(p.at) < probeEvery {
		return p.err
	}
	err := fn()
	if ctx.Err() == nil {
		p.at, p.err = time.Now(), err
	}
	return err
}

func (p *probe) reset() {
	p.mu.Lock()
	p.at = time.Time{}
	p.mu.Unlock()
}

// Ping writes a short-lived key and, with RequireDurable, reads the
// server's persistence settings: it fails on a read-only replica, a server
// that refuses writes (MISCONF, OOM), durability lost (CONFIG SET
// appendonly no) or no server at all. It probes at most once a second; in
// between it returns the last result.
func (s *Store) Ping(ctx context.Context) error {
	return s.probe.run(ctx, func() error {
		var err error
		if s.opts.Fault != nil {
			err = s.opts.Fault("probe")
		}
		if err == nil {
			err = s.c.Set(ctx, s.prefix+"probe", time.Now().UTC().Format(time.RFC3339Nano), time.Minute).Err()
		}
		if err != nil {
			return unavailable("ping", err)
		}
		// The same durability verdict as the writes' (not a second check
		// of its own): readiness never says 200 while writes are refused.
		if err := s.writable(ctx); err != nil {
			return fmt.Errorf("redis: ping: %w", err)
		}
		return nil
	})
}

// writable refuses writes while the server is known not to be durable
// (RequireDurable): its persistence settings are read at most once a
// second.
func (s *Store) writable(ctx context.Context) error {
	if !s.opts.RequireDurable {
		return nil
	}
	err := s.durable.run(ctx, func() error { return s.checkDurable(ctx) })
	if err != nil {
		return fmt.Errorf("redis: write refused: %w", err)
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
func (s *Store) chainKey(kind, replica string) string {
	return s.prefix + "audit:" + kind + ":" + replica
}

// prepare checks and prepares the entries of a change for the store's own
// chain, before anything is sent.
func (s *Store) prepare(op string, entries []audit.Entry) ([]audit.Entry, error) {
	out := make([]audit.Entry, 0, len(entries))
	now := s.opts.Clock()
	for _, e := range entries {
		p, err := audit.Prepare(e, s.opts.Replica, now)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %w", op, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Accept implements store.Messages: the message, its deliveries and the
// entries in one script.
func (s *Store) Accept(ctx context.Context, m *store.Message, ds []store.Delivery, entries ...audit.Entry) (*store.Message, error) {
	if err := checkAccept(m); err != nil {
		return nil, err
	}
	prepared, err := s.prepare("accept", entries)
	if err != nil {
		return nil, err
	}
	rec, value, err := acceptedRecord(m)
	if err != nil {
		return nil, err
	}
	o, err := s.acceptOp(m, &rec, value, ds, prepared)
	if err != nil {
		return nil, err
	}
	q, err := s.sequencer(s.opts.Replica)
	if err != nil {
		return nil, fmt.Errorf("redis: accept: %w", err)
	}
	res, err := q.do(ctx, "accept", o)
	if errors.Is(err, errSkipped) {
		return acceptSkipped(res)
	}
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// checkAccept refuses, before anything is prepared, a message that cannot
// be stored under its keys.
func checkAccept(m *store.Message) error {
	if err := store.ValidAcceptance(m); err != nil {
		return fmt.Errorf("redis: accept: %w", err)
	}
	return nil
}

// acceptedRecord is m as accepted, a fresh status and none of what a
// previous life of the message left, and its encoding.
func acceptedRecord(m *store.Message) (store.Message, []byte, error) {
	rec := *m
	rec.Status = store.StatusAccepted
	rec.Attempts = 0
	rec.Purged, rec.PurgedAt = false, time.Time{}
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	value, err := json.Marshal(&rec)
	if err != nil {
		return rec, nil, fmt.Errorf("redis: accept: %w", err)
	}
	return rec, value, nil
}

// acceptOp is the accept script's operation: the message's arguments, then
// seven for each delivery. The twelfth argument, the (recipient, id) of
// every delivery, is known only once they all are.
func (s *Store) acceptOp(m, rec *store.Message, value []byte, ds []store.Delivery, prepared []audit.Entry) (*op, error) {
	mk, ik := s.messageKey(m.From, m.ID), s.indexKey(m.To, m.ID)
	consent, consentKey := "0", s.prefix+"c:"
	if m.ConsentID != "" {
		consent, consentKey = "1", s.consentKey(m.From, m.ConsentID)
	}
	purgeAt := ""
	if at, ok := m.PurgeAt(); ok {
		purgeAt = strconv.FormatInt(ceilMillis(at), 10)
	}
	o := &op{kind: "accept", entries: prepared, keys: []string{mk, ik}, size: len(value)}
	o.args = []any{mk, ik, value, formatTime(rec.UpdatedAt), len(ds), m.From, m.ID,
		consent, consentKey, purgeAt, m.From + "\x00" + m.ID, nil, s.queuesKey(), s.retentionKey()}
	refs, err := s.addDeliveries(o, m, ds)
	if err != nil {
		return nil, err
	}
	if o.args[11], err = json.Marshal(refs); err != nil {
		return nil, fmt.Errorf("redis: accept: %w", err)
	}
	return o, nil
}

// addDeliveries fills in the deliveries of m (recipient, times), refuses
// an invalid or repeated one, and adds each to o's keys and arguments. It
// returns their (recipient, id).
func (s *Store) addDeliveries(o *op, m *store.Message, ds []store.Delivery) ([][2]string, error) {
	refs := make([][2]string, 0, len(ds))
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
		o.keys = append(o.keys, dk)
		o.args = append(o.args, s.queueKey(d.Recipient), dk, d.ID, ceilMillis(d.VisibleAt), formatTime(d.CreatedAt), d.Envelope, d.Recipient)
		o.size += len(d.Envelope)
		refs = append(refs, [2]string{d.Recipient, d.ID})
	}
	return refs, nil
}

// acceptSkipped maps the script's refusal to write: the message accepted
// before (a duplicate), a delivery id already there, or a refusal it does
// not know.
func acceptSkipped(res any) (*store.Message, error) {
	why, _ := res.([]any)
	if len(why) == 2 && why[0] == "dup" {
		fields, _ := why[1].([]any)
		old, derr := decodeMessage(fields)
		if derr != nil || old == nil {
			return nil, unavailable("accept", errors.New("unreadable existing record"))
		}
		return old, store.ErrDuplicate
	}
	if len(why) == 1 && why[0] == "exists" {
		return nil, errors.New("redis: accept: delivery id already queued or dead-lettered")
	}
	return nil, unavailable("accept", fmt.Errorf("refused: %v", why))
}

// RecordDenial implements store.Messages. The denial is not recorded when
// (from, id) was accepted before; its entry is appended in either case.
func (s *Store) RecordDenial(ctx context.Context, m *store.Message, e audit.Entry) error {
	if err := store.ValidMessage(m); err != nil {
		return fmt.Errorf("redis: record denial: %w", err)
	}
	prepared, err := s.prepare("record denial", []audit.Entry{e})
	if err != nil {
		return err
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
	mk, ik := s.messageKey(m.From, m.ID), s.indexKey(m.To, m.ID)
	q, err := s.sequencer(s.opts.Replica)
	if err != nil {
		return fmt.Errorf("redis: record denial: %w", err)
	}
	// A denial is always forgotten some day (store.Message.ForgetAt).
	forgetAt, _ := rec.ForgetAt()
	_, err = q.do(ctx, "record denial", &op{kind: "deny", entries: prepared, keys: []string{mk, ik},
		args: []any{mk, ik, value, formatTime(rec.UpdatedAt), s.retentionKey(), ceilMillis(forgetAt), m.From + "\x00" + m.ID},
		size: len(value)})
	if errors.Is(err, errSkipped) {
		return unavailable("record denial", errors.New("refused"))
	}
	return err
}

// Message implements store.Messages. A record that cannot be decoded is
// quarantined and reads as none.
func (s *Store) Message(ctx context.Context, from, id string) (*store.Message, error) {
	if store.ValidKeys(from, id) != nil {
		return nil, store.ErrNotFound
	}
	if err := s.settle(ctx); err != nil {
		return nil, unavailable("message", err)
	}
	mk := s.messageKey(from, id)
	fields, err := s.c.HMGet(ctx, mk, "rec", "status", "attempts", "updated", "purged").Result()
	if isWrongType(err) {
		return nil, s.quarantined(ctx, "message", kindMessage, mk, "", "")
	}
	if err != nil {
		return nil, unavailable("message", err)
	}
	m, err := decodeMessage(fields)
	if err != nil {
		return nil, s.quarantined(ctx, "message", kindMessage, mk, "", "")
	}
	if m == nil {
		return nil, store.ErrNotFound
	}
	return m, nil
}

// settle makes the reads that follow see the outcome of every change this
// process reported unknown (commit.go).
func (s *Store) settle(ctx context.Context) error {
	s.seqMu.Lock()
	q := s.seqs[s.opts.Replica]
	s.seqMu.Unlock()
	if q == nil {
		return nil
	}
	return q.settle(ctx)
}

// MessageTo implements store.Messages.
func (s *Store) MessageTo(ctx context.Context, to, id string) (*store.Message, error) {
	if store.ValidKeys(to, id) != nil {
		return nil, store.ErrNotFound
	}
	if err := s.settle(ctx); err != nil {
		return nil, unavailable("message to", err)
	}
	res, err := messageToScript.Run(ctx, s.c, []string{s.indexKey(to, id)}).Slice()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("message to", err)
	}
	if len(res) == 1 {
		mk, _ := res[0].(string)
		return nil, s.quarantined(ctx, "message to", kindMessage, mk, "", "")
	}
	m, err := decodeMessage(res)
	if err != nil {
		mk, _ := s.c.Get(ctx, s.indexKey(to, id)).Result()
		return nil, s.quarantined(ctx, "message to", kindMessage, mk, "", "")
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

// Lease implements store.Queue. A delivery record that cannot be read is
// quarantined and skipped: the recipient's others are leased.
func (s *Store) Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error) {
	if max <= 0 || store.ValidKeys(recipient) != nil {
		return nil, nil
	}
	until := now.Add(visibility)
	qk, prefix := s.queueKey(recipient), s.deliveryPrefix(recipient)
	res, err := leaseScript.Run(ctx, s.c, []string{qk}, now.UnixMilli(), max, ceilMillis(until), prefix).Slice()
	if err != nil {
		return nil, unavailable("lease", err)
	}
	if len(res) != 2 {
		return nil, unavailable("lease", errors.New("unexpected script reply"))
	}
	leased, _ := res[0].([]any)
	bad, _ := res[1].([]any)
	for _, b := range bad {
		id, _ := b.(string)
		if err := s.quarantined(ctx, "lease", kindDelivery, prefix+id, qk, id); !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	out := make([]store.Delivery, 0, len(leased))
	for _, r := range leased {
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
			if err := s.quarantined(ctx, "lease", kindDelivery, prefix+id, qk, id); !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			continue
		}
		out = append(out, store.Delivery{
			ID: id, Recipient: recipient, MessageFrom: from, MessageID: mid,
			Envelope: []byte(env), Attempts: int(attempts),
			CreatedAt: ct, VisibleAt: until,
		})
	}
	return out, nil
}

// ended reads what the entry of a delivery's end is built from: the
// delivery (ErrNotFound if there is no such record) and its message (nil if
// gone), and the message key the delivery points at.
func (s *Store) ended(ctx context.Context, op, recipient, deliveryID string) (store.Delivery, *store.Message, string, error) {
	dk := s.deliveryPrefix(recipient) + deliveryID
	res, err := endInfoScript.Run(ctx, s.c, []string{dk}).Result()
	if errors.Is(err, goredis.Nil) {
		return store.Delivery{}, nil, "", store.ErrNotFound
	}
	if err != nil {
		return store.Delivery{}, nil, "", unavailable(op, err)
	}
	f, ok := res.([]any)
	if !ok || len(f) != 6 {
		return store.Delivery{}, nil, "", s.quarantined(ctx, op, kindDelivery, dk, s.queueKey(recipient), deliveryID)
	}
	str := func(i int) string { v, _ := f[i].(string); return v }
	if f[0] == nil || f[4] == nil {
		return store.Delivery{}, nil, "", s.quarantined(ctx, op, kindDelivery, dk, s.queueKey(recipient), deliveryID)
	}
	d := store.Delivery{ID: deliveryID, Recipient: recipient, MessageFrom: str(2), MessageID: str(3), Envelope: []byte(str(0))}
	d.CreatedAt, _ = time.Parse(time.RFC3339Nano, str(1))
	var m *store.Message
	if raw, ok := f[5].(string); ok {
		var rec store.Message
		if json.Unmarshal([]byte(raw), &rec) == nil {
			m = &rec
		}
	}
	return d, m, str(4), nil
}

// Ack implements store.Queue: the delivery, its message's count and the
// "delivered" entry in one script.
func (s *Store) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return s.end(ctx, "ack", recipient, deliveryID, audit.KindDelivered, func(qk, dk, mk string) []any {
		return []any{qk, dk, deliveryID, formatTime(now), mk}
	})
}

// end applies the end of a delivery (Ack, DeadLetter) with its entry.
func (s *Store) end(ctx context.Context, opName, recipient, deliveryID, kind string, args func(qk, dk, mk string) []any) error {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return store.ErrNotFound
	}
	d, m, mk, err := s.ended(ctx, opName, recipient, deliveryID)
	if err != nil {
		return err
	}
	e, err := audit.Prepare(store.DeliveryEntry(d, m, kind), s.opts.Replica, s.opts.Clock())
	if err != nil {
		return fmt.Errorf("redis: %s: %w", opName, err)
	}
	q, err := s.sequencer(s.opts.Replica)
	if err != nil {
		return fmt.Errorf("redis: %s: %w", opName, err)
	}
	qk, dk := s.queueKey(recipient), s.deliveryPrefix(recipient)+deliveryID
	opKind := "ack"
	if kind == audit.KindDeadLettered {
		opKind = "dead"
	}
	_, err = q.do(ctx, opName, &op{kind: opKind, entries: []audit.Entry{e}, keys: []string{dk}, args: args(qk, dk, mk)})
	if errors.Is(err, errSkipped) {
		return store.ErrNotFound
	}
	return err
}

// Delivery implements store.Queue.
func (s *Store) Delivery(ctx context.Context, recipient, deliveryID string) (*store.Delivery, error) {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return nil, store.ErrNotFound
	}
	dk := s.deliveryPrefix(recipient) + deliveryID
	f, err := s.c.HMGet(ctx, dk, "env", "created", "from", "mid", "attempts").Result()
	if isWrongType(err) {
		return nil, s.quarantined(ctx, "delivery", kindDelivery, dk, s.queueKey(recipient), deliveryID)
	}
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
	ct, cerr := time.Parse(time.RFC3339Nano, created)
	n, aerr := strconv.Atoi(attempts)
	if cerr != nil || (attempts != "" && aerr != nil) {
		return nil, s.quarantined(ctx, "delivery", kindDelivery, dk, s.queueKey(recipient), deliveryID)
	}
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

func isWrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
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

func unknownOutcome(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w: %w", op, store.ErrUnavailable, store.ErrOutcomeUnknown, err)
}
