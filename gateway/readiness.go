package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/store/kv"
)

// checkStore reads the whole embedded store once at start, as `xborder
// store check` does (every page and record), so that a damaged store is said
// before anything is served. A damaged store is refused unless
// serve_damaged_store asks to serve what can still be read; then the log,
// /readyz (store_check: degraded) and xborder_store_damaged say so.
//
// Only the embedded store: its file is this process's alone while it runs.
// A shared Redis changes under the check while other replicas serve (a
// delivery acknowledged between reading its queue and its record), which
// the check, made for a stopped gateway, would take for damage.
func (g *Gateway) checkStore(ctx context.Context) error {
	if kind, _ := g.cfg.StoreKind(); kind != "bolt" {
		return nil
	}
	ck, ok := g.Store.(interface {
		Check(context.Context, io.Writer) error
	})
	if !ok {
		return nil
	}
	err := ck.Check(ctx, io.Discard)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrDamaged):
		return fmt.Errorf("gateway: store check at start: %w", err)
	case !g.cfg.ServeDamagedStore:
		return fmt.Errorf("gateway: the store is damaged (%w); nothing was served: run `xborder store check` to see the whole of it, "+
			"restore the store from a backup, or start with --serve-damaged (serve_damaged_store: true) to serve what can still be read", err)
	}
	g.damaged = err
	g.Metrics.StoreDamaged.Set(1)
	g.log.Error("store damaged: serving what can still be read, as serve_damaged_store asks; run `xborder store check`",
		"problem", err.Error())
	return nil
}

// readiness is /readyz's checks, each logged once when it starts failing
// (with what fails) and once when it passes again, not at every probe.
func (g *Gateway) readiness() map[string]api.Check {
	log := g.log.With("component", "readiness")
	checks := map[string]api.Check{
		"store": logged(log, "store", g.storeReady),
		// An evaluator stuck in a built-in is replaced (and counted in
		// xborder_policy_evaluators_stuck); only none left is not ready.
		"policy": logged(log, "policy", func(context.Context) error {
			return nilIf(g.Policy.Current() != nil && policy.Evaluators().Serving > 0, "no policy loaded or no evaluator left")
		}),
		"keys": logged(log, "keys", func(context.Context) error {
			return nilIf(g.Keys.Signing != nil && len(g.Keys.Encryption) > 0, "no keys")
		}),
	}
	if g.damaged != nil {
		checks["store_check"] = func(context.Context) error {
			return &api.CheckError{Degraded: true,
				Detail: "the start-up check found the store damaged; serving what can still be read (serve_damaged_store); run xborder store check"}
		}
	}
	return checks
}

// storeReady is the store's write probe; a disk short of min_free says by
// how much on /readyz.
func (g *Gateway) storeReady(ctx context.Context) error {
	err := g.Store.Ping(ctx)
	var low *boltstore.LowSpaceError
	if errors.As(err, &low) {
		return fmt.Errorf("%w: %w", &api.CheckError{Detail: fmt.Sprintf("%s free, min_free %s", size(low.Free), size(low.Want))}, err)
	}
	if kind, _ := g.cfg.StoreKind(); err != nil && kind == "redis" {
		d := redisCondition(err)
		if ctx.Err() != nil {
			// A frozen primary accepts connections and answers nothing.
			d = "redis: the primary did not answer within the probe's deadline"
		}
		if d != "" {
			return fmt.Errorf("%w: %w", &api.CheckError{Detail: d}, err)
		}
	}
	return err
}

// redisCondition names, in fixed words (no address, no key), why a Redis
// store takes no writes, so that /readyz says which of a failover's
// conditions holds: no primary answers, the server answers as a replica
// or refuses writes, the replicas do not hold writes in time, or the group
// is not durable.
func redisCondition(err error) string {
	msg := err.Error()
	has := func(s string) bool { return strings.Contains(msg, s) }
	switch {
	case errors.Is(err, kv.ErrNotReplicated):
		return "redis: the write probe is on the primary but fewer replicas than redis_ack_replicas hold it in time"
	case has("durable online replicas"):
		return "redis: fewer durable replicas online than redis_ack_replicas"
	case has("READONLY"), has("not as a master"):
		return "redis: the server answers as a replica (no primary yet)"
	case has("NOREPLICAS"):
		return "redis: the primary refuses writes: too few replicas (NOREPLICAS)"
	case has("LOADING"):
		return "redis: the primary is loading its data (LOADING)"
	case has("MASTERDOWN"):
		return "redis: the replica's link to its primary is down (MASTERDOWN)"
	case has("durability lost"), has("appendfsync"), has("appendonly"):
		return "redis: the primary is not durable (appendonly yes, appendfsync always)"
	case errors.Is(err, kv.ErrUnknown):
		return "redis: the write probe's answer was lost (the primary may be failing over)"
	case errors.Is(err, kv.ErrUnavailable), has("all sentinels"), has("connection refused"), has("i/o timeout"):
		return "redis: no primary answers"
	case has("use of closed network connection"), has("EOF"), has("connection reset"):
		// The client closes its connections to a primary Sentinel has
		// replaced (a frozen one among them) while they wait.
		return "redis: the connection to the primary was lost (the primary may be failing over)"
	}
	return ""
}

// size is n bytes in MiB (whole), or in bytes below one MiB.
func size(n uint64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// logged wraps check so that its changes of state are logged, once each.
func logged(log *slog.Logger, name string, check api.Check) api.Check {
	var mu sync.Mutex
	failing := false
	return func(ctx context.Context) error {
		err := check(ctx)
		if err != nil && ctx.Err() != nil {
			return err // cut short: says nothing of the check
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil && !failing:
			var ce *api.CheckError
			if errors.As(err, &ce) {
				log.Warn("not ready: "+name+": "+ce.Detail, "check", name, "error", err.Error())
			} else {
				log.Warn("not ready: "+name+" failing", "check", name, "error", err.Error())
			}
		case err == nil && failing:
			log.Info("ready again: "+name+" ok", "check", name)
		}
		failing = err != nil
		return err
	}
}
