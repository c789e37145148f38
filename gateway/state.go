package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
	redisstore "github.com/xborder/xborder/gateway/store/redis"
)

// StoreOptions say how OpenStore opens the store.
type StoreOptions struct {
	// Replica names this gateway's audit chain, where the store appends the
	// entries of its changes (Replica, below, for a running gateway).
	Replica string
	// ReadOnly opens it for reading only (the audit and store commands): an
	// embedded store is then opened beside no running gateway.
	ReadOnly bool
	// Logger and OnQuarantine report records the store quarantines.
	Logger       *slog.Logger
	OnQuarantine func(kind string)
	// OnReapplied is told of each change the journal made again after a
	// switch of Redis primary (redis_journal), for a metric.
	OnReapplied func(op string)
	// Fault is the stores' fault injection (bolt.Options.Fault,
	// redis.Options.Fault), for tests: WithStoreFault.
	Fault func(op string) error
}

// OpenStore opens the store the configuration names. It is also the audit
// log's backend: the chains live in it.
func OpenStore(ctx context.Context, cfg config.Config, o StoreOptions) (store.Store, error) {
	kind, target := cfg.StoreKind()
	switch kind {
	case "bolt":
		if !o.ReadOnly {
			legacy := audit.LegacyBoltPath(target)
			if _, err := os.Stat(legacy); err == nil {
				return nil, fmt.Errorf("gateway: %s is an audit log of an earlier version; the audit log is now kept in %s: "+
					"verify and export it with that version, then move it out of this folder", legacy, target)
			}
		}
		minFree := cfg.MinFree
		if minFree == 0 {
			minFree = -1 // min_free 0: no check
		}
		return boltstore.Open(target, boltstore.Options{Replica: o.Replica, ReadOnly: o.ReadOnly, MinFree: minFree,
			Logger: o.Logger, OnQuarantine: o.OnQuarantine, Fault: o.Fault})
	case "redis":
		return redisstore.Open(ctx, target, redisstore.Options{RequireDurable: cfg.RedisRequireDurable && !o.ReadOnly,
			Replica: o.Replica, Logger: o.Logger, OnQuarantine: o.OnQuarantine, Fault: o.Fault,
			AckReplicas: cfg.RedisAcks(), AckTimeout: cfg.RedisAckTimeout,
			Journal: journalPath(cfg, o), JournalSettle: cfg.RedisJournalSettle, OnReapplied: o.OnReapplied})
	}
	return nil, fmt.Errorf("gateway: unknown store %q", cfg.Store)
}

// journalPath is the journal of a gateway that serves: the commands that
// open the store to read it (the gateway may be running, holding its
// journal) write nothing and need none.
func journalPath(cfg config.Config, o StoreOptions) string {
	if o.ReadOnly {
		return ""
	}
	return cfg.JournalPath()
}

// Replica is the name of this gateway's audit chain: the configured one,
// else the host name.
func Replica(cfg config.Config) string {
	if cfg.Replica != "" {
		return cfg.Replica
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gateway"
}
