package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/audit"
)

// The audit chains live beside the state (audit:* keys), so that a change
// and its audit entry are one script (commit.go).

var _ audit.Backend = (*Store)(nil)

// chainPage is how many entries one LRANGE returns.
const chainPage = 512

// Append implements audit.Backend: e alone, for an event that is not a
// change of the store, through the chain's sequencer.
func (s *Store) Append(ctx context.Context, replica string, e audit.Entry) (audit.Entry, error) {
	p, err := audit.Prepare(e, replica, s.opts.Clock())
	if err != nil {
		return audit.Entry{}, fmt.Errorf("redis: append: %w", err)
	}
	q, err := s.sequencer(replica)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("redis: append: %w", err)
	}
	o := &op{kind: "append", entries: []audit.Entry{p}}
	if _, err := q.do(ctx, "append", o); err != nil {
		return audit.Entry{}, err
	}
	return o.entries[0], nil
}

// Entries implements audit.Backend.
func (s *Store) Entries(ctx context.Context, replica string, from uint64, fn func(audit.Entry) error) error {
	start := int64(max(from, 1) - 1)
	for {
		page, err := s.c.LRange(ctx, s.chainKey("e", replica), start, start+chainPage-1).Result()
		if err != nil {
			return unavailable("entries", err)
		}
		for i, v := range page {
			var e audit.Entry
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				return fmt.Errorf("redis: entries: entry %d: %w", start+int64(i)+1, err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < chainPage {
			return nil
		}
		start += chainPage
	}
}

// Replicas implements audit.Backend: the chains, sorted.
func (s *Store) Replicas(ctx context.Context) ([]string, error) {
	ids, err := s.c.SMembers(ctx, s.prefix+"audit:replicas").Result()
	if err != nil {
		return nil, unavailable("replicas", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// Head implements audit.Backend: the chain's length and head, read together.
func (s *Store) Head(ctx context.Context, replica string) (uint64, string, error) {
	var n *goredis.IntCmd
	var h *goredis.StringCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		n = p.LLen(ctx, s.chainKey("e", replica))
		h = p.Get(ctx, s.chainKey("h", replica))
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, "", unavailable("head", err)
	}
	head, err := h.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, "", unavailable("head", err)
	}
	return uint64(n.Val()), head, nil
}

// PutCheckpoint implements audit.Backend.
func (s *Store) PutCheckpoint(ctx context.Context, cp audit.Checkpoint) error {
	if err := audit.CheckReplica(cp.Replica); err != nil {
		return fmt.Errorf("redis: checkpoint: %w", err)
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("redis: checkpoint: %w", err)
	}
	if err := s.c.RPush(ctx, s.chainKey("c", cp.Replica), v).Err(); err != nil {
		return unavailable("checkpoint", err)
	}
	return nil
}

// Checkpoints implements audit.Backend.
func (s *Store) Checkpoints(ctx context.Context, replica string) ([]audit.Checkpoint, error) {
	vals, err := s.c.LRange(ctx, s.chainKey("c", replica), 0, -1).Result()
	if err != nil {
		return nil, unavailable("checkpoints", err)
	}
	out := make([]audit.Checkpoint, 0, len(vals))
	for i, v := range vals {
		var cp audit.Checkpoint
		if err := json.Unmarshal([]byte(v), &cp); err != nil {
			return nil, fmt.Errorf("redis: checkpoint %d: %w", i+1, err)
		}
		out = append(out, cp)
	}
	return out, nil
}
