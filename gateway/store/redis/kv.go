package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/kvstore"
)

// KVStore is the shared store with its domain in kvstore, over rediskv
// (one generic apply function, no rule of the domain in Lua): this file
// keeps what is the server's own — its durability settings, the rate
// counters, the rewrite of its append-only file.
type KVStore struct {
	*kvstore.Store
	c       goredis.UniversalClient
	prefix  string
	durable probe
}

var _ store.Store = (*KVStore)(nil)

// OpenKV connects to url as Open does and keeps the store under the
// namespace {prefix} (Options.Prefix without its colon, default xborder).
// A server holding a store of the earlier layout under the prefix is
// refused: its data is not where kvstore reads.
func OpenKV(ctx context.Context, url string, opts Options) (*KVStore, error) {
	if _, err := goredis.ParseURL(url); err != nil {
		// The parse error may repeat the URL and its password: leave it out.
		return nil, errors.New("redis: open: invalid URL")
	}
	if opts.Prefix == "" {
		opts.Prefix = "xborder:"
	}
	db, err := rediskv.Open(ctx, url, strings.TrimSuffix(opts.Prefix, ":"))
	if err != nil {
		return nil, unavailable("open", err)
	}
	s := &KVStore{c: db.Client(), prefix: opts.Prefix}
	fail := func(err error) (*KVStore, error) {
		db.Close()
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
		OnQuarantine: opts.OnQuarantine, Fault: opts.Fault, Name: "redis"}
	if opts.RequireDurable {
		if err := checkDurable(ctx, s.c); err != nil {
			return fail(fmt.Errorf("redis: open: %w", err))
		}
		// The same verdict for the writes and for Ping: readiness never
		// says 200 while writes are refused.
		ko.Writable = func(ctx context.Context) error {
			return s.durable.run(ctx, func() error { return checkDurable(ctx, s.c) })
		}
		ko.Probe = ko.Writable
	}
	s.Store = kvstore.New(db, ko)
	return s, nil
}

// Close stops the store and closes its connection.
func (s *KVStore) Close() error {
	s.durable.reset()
	return s.Store.Close()
}

// Incr counts one event for key in the window that starts at windowStart
// and returns the count so far (ratelimit.Counter). The counter is shared
// by every gateway on the server and expires a second after its window
// ends.
func (s *KVStore) Incr(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int64, error) {
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
func (s *KVStore) Compact(ctx context.Context) error {
	err := s.c.BgRewriteAOF(ctx).Err()
	if err != nil && !strings.Contains(err.Error(), "in progress") && !strings.Contains(err.Error(), "scheduled") {
		return unavailable("compact", err)
	}
	return nil
}

// Check reads every record (kvstore.Check).
func (s *KVStore) Check(ctx context.Context, w io.Writer) error { return s.Store.Check(ctx, w) }
