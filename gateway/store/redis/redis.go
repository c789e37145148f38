// Package redis is the shared store: several gateway instances keep their
// state in one Redis server. The store's rules are kvstore's, over rediskv
// (go-redis, one generic apply function loaded with FUNCTION LOAD: no rule
// of the domain in Lua); this package keeps what is the server's own: its
// durability settings, the rate counters, the rewrite of its append-only
// file.
//
// Durability is Redis's: run it with `appendonly yes` and `appendfsync
// always` so that a change that has returned survives a crash;
// Options.RequireDurable checks this at Open and again with every write
// probe (Ping, at most once a second), refusing writes while it does not
// hold.
//
// Keys: rediskv's, every one under the hash tag {prefix} (one Redis Cluster
// slot), and the rate counters, prefix + "rl:<key>:<window ms>", which
// expire after their window. Message records carry no TTL: they are the
// replay memory (PROTOCOL §6) and the status a sender or recipient reads
// (§5); Purge deletes them with their audit entries. Deleted values can
// remain in the append-only file until Redis rewrites it (Compact).
package redis

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/journal"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/kvstore"
)

// Options tune Open. The zero value opens a store that keeps no audit
// entries of its own (Replica empty: a change with entries is refused).
type Options struct {
	// Prefix names the store's keys (default "xborder:").
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
	// AckReplicas is how many Redis replicas must hold a change before it
	// is acknowledged (WAIT on the commit's own connection); 0: the
	// primary alone. AckTimeout bounds that wait (0: rediskv's default).
	AckReplicas int
	AckTimeout  time.Duration
	// Journal, when set, is the path of this gateway's journal (a bbolt
	// file on its own disk): each change it acknowledged is kept there
	// until the group has held it for JournalSettle (0: kvstore's
	// default), and made again if a switch of primary erased it
	// (kvstore's journal.go). OnReapplied counts those.
	Journal       string
	JournalSettle time.Duration
	OnReapplied   func(op string)
	// Fault, when set, is called inside every change (kvstore.Options.Fault)
	// and by the write probe ("probe"); an error fails it, nothing
	// written. For tests.
	Fault func(op string) error
}

// Store is the shared store: kvstore over rediskv, and the server.
type Store struct {
	*kvstore.Store
	journal *journal.Journal
	c       goredis.UniversalClient
	prefix  string
	durable probe
}

var _ store.Store = (*Store)(nil)

// Open connects to url (redis://[user:password@]host:port/db, or
// rediss://), loads rediskv's function library and keeps the store under
// the namespace {prefix} (Options.Prefix without its colon, default
// xborder).
// A server holding a store of the earlier layout under the prefix is
// refused: its data is not where kvstore reads.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	var plain *goredis.Options
	if strings.HasPrefix(url, rediskv.SentinelScheme+"://") {
		if _, err := rediskv.ParseSentinelURL(url); err != nil {
			return nil, errors.New("redis: open: invalid redis-sentinel:// URL (want redis-sentinel://HOST:PORT,HOST:PORT,.../MASTER_NAME/DB)")
		}
	} else {
		var err error
		if plain, err = goredis.ParseURL(url); err != nil {
			// The parse error may repeat the URL and its password: leave it out.
			return nil, errors.New("redis: open: invalid URL")
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = "xborder:"
	}
	db, err := rediskv.OpenURL(ctx, url, rediskv.Options{Name: strings.TrimSuffix(opts.Prefix, ":"),
		AckReplicas: opts.AckReplicas, AckTimeout: opts.AckTimeout})
	if err != nil {
		if plain != nil {
			if words := serverWords(ctx, plain, err); words != nil {
				return nil, fmt.Errorf("redis: open: the server at %s refused the connection: %w: %w", plain.Addr, store.ErrUnavailable, words)
			}
		}
		return nil, unavailable("open", err)
	}
	s := &Store{c: db.Client(), prefix: opts.Prefix}
	fail := func(err error) (*Store, error) {
		db.Close()
		if s.journal != nil {
			s.journal.Close()
		}
		return nil, err
	}
	n, err := s.c.Exists(ctx, opts.Prefix+"audit:replicas").Result()
	if err != nil {
		return fail(unavailable("open", err))
	}
	if n > 0 {
		return fail(fmt.Errorf("redis: open: the server holds a store of an earlier version under %q: "+
			"drain its queues and export its audit log with that version, then delete its keys", opts.Prefix))
	}
	ko := kvstore.Options{Replica: opts.Replica, Clock: opts.Clock, Logger: opts.Logger,
		OnQuarantine: opts.OnQuarantine, Fault: opts.Fault, Name: "redis",
		Settle: opts.JournalSettle, OnReapplied: opts.OnReapplied}
	if opts.Journal != "" {
		if s.journal, err = journal.Open(opts.Journal); err != nil {
			return fail(fmt.Errorf("redis: open: %w", err))
		}
		ko.Journal = s.journal
	}
	if opts.RequireDurable {
		if err := checkDurable(ctx, s.c); err != nil {
			return fail(fmt.Errorf("redis: open: %w", err))
		}
		// The same verdict for the writes and for Ping: readiness never
		// says 200 while writes are refused.
		ko.Writable = func(ctx context.Context) error {
			return s.durable.run(ctx, func() error {
				if err := checkDurable(ctx, s.c); err != nil {
					return err
				}
				if db.AckReplicas() == 0 {
					return nil
				}
				// Behind Sentinel: the replicas counted for an
				// acknowledgement must be as durable as the primary.
				if _, err := db.Check(ctx); err != nil {
					return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
				}
				return nil
			})
		}
		ko.Probe = ko.Writable
	}
	s.Store = kvstore.New(db, ko)
	return s, nil
}

// serverWords looks, after a connection failed with err, for the
// server's own reason: a Redis that refuses a client (protected mode:
// "-DENIED …") writes its reason as soon as it accepts the connection, and
// closes it; go-redis, which writes its handshake first, meets the closed
// socket and reports "broken pipe". So this connects once more, sends
// nothing and reads what the server says first, for half a second. It
// returns the server's error line, or nil when it said nothing.
func serverWords(ctx context.Context, o *goredis.Options, err error) error {
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		return nil // already the server's own words
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var conn net.Conn
	var derr error
	if o.TLSConfig != nil {
		conn, derr = (&tls.Dialer{Config: o.TLSConfig}).DialContext(dctx, o.Network, o.Addr)
	} else {
		conn, derr = (&net.Dialer{}).DialContext(dctx, o.Network, o.Addr)
	}
	if derr != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	line, _ := bufio.NewReader(io.LimitReader(conn, 1024)).ReadString('\n')
	if msg, ok := strings.CutPrefix(line, "-"); ok {
		return fmt.Errorf("the server says %q", strings.TrimSpace(msg))
	}
	return nil
}

// Close stops the store and closes its connection.
func (s *Store) Close() error {
	err := s.Store.Close()
	if s.journal != nil {
		err = errors.Join(err, s.journal.Close())
	}
	return err
}

// Incr counts one event for key in the window that starts at windowStart
// and returns the count so far (ratelimit.Counter). The counter is shared
// by every gateway on the server and expires a second after its window
// ends.
func (s *Store) Incr(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int64, error) {
	k := s.prefix + "rl:" + key + ":" + strconv.FormatInt(windowStart.UnixMilli(), 10)
	var incr *goredis.IntCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		incr = p.Incr(ctx, k)
		p.PExpire(ctx, k, window+time.Second)
		return nil
	})
	if err != nil {
		return 0, unavailable("incr", err)
	}
	return incr.Val(), nil
}

// Compact asks the server to rewrite its append-only file, so that purged
// payloads leave it.
func (s *Store) Compact(ctx context.Context) error {
	err := s.c.BgRewriteAOF(ctx).Err()
	if err != nil && !strings.Contains(err.Error(), "in progress") && !strings.Contains(err.Error(), "scheduled") {
		return unavailable("compact", err)
	}
	return nil
}

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

func unavailable(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", op, store.ErrUnavailable, err)
}
