package redis

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// purgeBatch bounds the messages one purge script handles, so that a
// backlog does not block the server for long.
const purgeBatch = 128

// Purge implements store.Retention. Purge times are kept in whole
// milliseconds, rounded up: a message is purged at most 1 ms late, never
// early.
func (s *Store) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	keys := []string{s.retentionKey(), s.deadKey()}
	var out []store.Purged
	for {
		res, err := purgeScript.Run(ctx, s.c, keys,
			now.UnixMilli(), purgeBatch, s.prefix, formatTime(now)).Slice()
		if err != nil {
			return out, unavailable("purge", err)
		}
		if len(res)%2 != 1 {
			return out, unavailable("purge", errors.New("unexpected script reply"))
		}
		for i := 0; i+1 < len(res); i += 2 {
			member, _ := res[i].(string)
			n, _ := res[i+1].(int64)
			from, id, ok := strings.Cut(member, "\x00")
			if !ok {
				return out, unavailable("purge", errors.New("corrupt retention set"))
			}
			out = append(out, store.Purged{From: from, ID: id, Deliveries: int(n)})
		}
		if more, _ := res[len(res)-1].(int64); more == 0 {
			return out, nil
		}
	}
}

// Compact asks Redis to rewrite its append-only file, so that purged
// payloads, deleted from memory at once, also leave the AOF (which
// otherwise keeps every write that ever carried them). The rewrite runs in
// the background; one already under way is enough.
func (s *Store) Compact(ctx context.Context) error {
	err := s.c.BgRewriteAOF(ctx).Err()
	if err != nil && !strings.Contains(err.Error(), "in progress") && !strings.Contains(err.Error(), "scheduled") {
		return unavailable("compact", err)
	}
	return nil
}
