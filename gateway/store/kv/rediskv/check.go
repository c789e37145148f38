package rediskv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store/kv"
)

// Check tells whether the group can keep what a commit acknowledges: the
// primary answers as a master and runs with appendonly yes and appendfsync
// always, and at least AckReplicas of its online replicas do too. err lists
// every problem (a readiness probe reports it and writes are to be
// refused); warnings are what does not stop writes: a primary whose
// min-replicas-to-write is below AckReplicas takes writes no replica
// holds (each of them then answers kv.ErrNotReplicated instead of being
// refused at once), and a replica that is not durable or cannot be asked
// is named. CONFIG GET refused (renamed or denied by an ACL) is a problem:
// durability that cannot be checked is not assumed.
func (d *DB) Check(ctx context.Context) (warnings []string, err error) {
	var problems []string
	info, err := d.c.Info(ctx, "replication").Result()
	if err != nil {
		return nil, fmt.Errorf("rediskv: primary: %w", err)
	}
	rep := parseInfo(info)
	if rep["role"] != "master" {
		return nil, fmt.Errorf("rediskv: the server answers as %q, not as a master", rep["role"])
	}
	cfg, err := durability(ctx, d.c)
	if err != nil {
		problems = append(problems, "primary: "+err.Error())
	} else {
		if p := cfg.problem(); p != "" {
			problems = append(problems, "primary: "+p)
		}
		if d.ack > 0 && cfg.minReplicas < d.ack {
			warnings = append(warnings, fmt.Sprintf("primary: min-replicas-to-write is %d, below redis_ack_replicas %d: it takes writes no replica holds (they answer not-replicated)", cfg.minReplicas, d.ack))
		}
	}
	if d.ack == 0 {
		return warnings, joinProblems(problems)
	}
	// The replicas are asked at once, each bounded by the ack timeout: a
	// frozen replica (still "online" on the primary until repl-timeout)
	// accepts the connection and never answers, and every write waits for
	// this check. One that cannot answer in that time cannot acknowledge
	// a commit in it either.
	rs := replicas(rep)
	notes := make([]string, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		if r.state != "online" {
			notes[i] = fmt.Sprintf("replica %s: %s", r.addr, r.state)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := d.replicaClient(r.addr)
			defer rc.Close()
			cfg, err := durability(ctx, rc)
			switch {
			case err != nil:
				notes[i] = fmt.Sprintf("replica %s: %v", r.addr, err)
			case cfg.problem() != "":
				notes[i] = fmt.Sprintf("replica %s: %s", r.addr, cfg.problem())
			}
		}()
	}
	wg.Wait()
	durable := 0
	for _, n := range notes {
		if n == "" {
			durable++
		} else {
			warnings = append(warnings, n)
		}
	}
	if durable < d.ack {
		problems = append(problems, fmt.Sprintf("%d durable online replicas, redis_ack_replicas wants %d", durable, d.ack))
	}
	return warnings, joinProblems(problems)
}

func joinProblems(p []string) error {
	if len(p) == 0 {
		return nil
	}
	return errors.New("rediskv: " + strings.Join(p, "; "))
}

// replicaClient is a plain client to a replica, with the data nodes'
// credentials.
func (d *DB) replicaClient(addr string) *redis.Client {
	t := max(d.ackTimeout, 100*time.Millisecond)
	o := &redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: t, ReadTimeout: t, WriteTimeout: t}
	if c, ok := d.c.(*redis.Client); ok {
		co := c.Options()
		o.Username, o.Password, o.TLSConfig = co.Username, co.Password, co.TLSConfig
	}
	return redis.NewClient(o)
}

type config struct {
	appendonly, appendfsync string
	minReplicas             int
}

func (c config) problem() string {
	if c.appendonly != "yes" || c.appendfsync != "always" {
		return fmt.Sprintf("appendonly %s, appendfsync %s (want yes, always)", c.appendonly, c.appendfsync)
	}
	return ""
}

func durability(ctx context.Context, c redis.UniversalClient) (config, error) {
	var cfg config
	for _, k := range []string{"appendonly", "appendfsync", "min-replicas-to-write"} {
		m, err := c.ConfigGet(ctx, k).Result()
		if err != nil {
			return cfg, fmt.Errorf("CONFIG GET %s: %w (durability cannot be checked)", k, err)
		}
		v, ok := m[k]
		if !ok {
			return cfg, fmt.Errorf("CONFIG GET %s: no answer (durability cannot be checked)", k)
		}
		switch k {
		case "appendonly":
			cfg.appendonly = v
		case "appendfsync":
			cfg.appendfsync = v
		default:
			cfg.minReplicas, _ = strconv.Atoi(v)
		}
	}
	return cfg, nil
}

func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Group describes the primary's group (kv.Grouped): its replication id
// and offset, and each attached replica's link and acknowledged offset.
func (d *DB) Group(ctx context.Context) (kv.Group, error) {
	info, err := d.c.Info(ctx, "replication").Result()
	if err != nil {
		return kv.Group{}, fmt.Errorf("rediskv: primary: %w", err)
	}
	rep := parseInfo(info)
	if rep["role"] != "master" {
		return kv.Group{}, fmt.Errorf("rediskv: the server answers as %q, not as a master", rep["role"])
	}
	g := kv.Group{Epoch: rep["master_replid"]}
	g.Offset, _ = strconv.ParseInt(rep["master_repl_offset"], 10, 64)
	for _, r := range replicas(rep) {
		g.Replicas = append(g.Replicas, kv.Replica{Online: r.state == "online", Offset: r.offset})
	}
	return g, nil
}

var _ kv.Grouped = (*DB)(nil)

type replica struct {
	addr, state string
	offset      int64
}

// replicas reads slaveN:ip=...,port=...,state=...,offset=...,lag=... lines.
func replicas(info map[string]string) []replica {
	n, _ := strconv.Atoi(info["connected_slaves"])
	var out []replica
	for i := range n {
		f := map[string]string{}
		for _, kv := range strings.Split(info["slave"+strconv.Itoa(i)], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		if f["ip"] == "" || f["port"] == "" {
			continue
		}
		off, _ := strconv.ParseInt(f["offset"], 10, 64)
		out = append(out, replica{net.JoinHostPort(f["ip"], f["port"]), f["state"], off})
	}
	return out
}
