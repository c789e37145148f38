package redis

import (
	"context"
	"strconv"
	"time"
)

// Incr counts one event for key in the window that starts at windowStart and
// returns the count so far. The counter is shared by every gateway on the
// server and expires a second after its window ends. It satisfies
// ratelimit.Counter.
func (s *Store) Incr(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int64, error) {
	k := s.prefix + "rl:" + key + ":" + strconv.FormatInt(windowStart.UnixMilli(), 10)
	ttl := (window + time.Second).Milliseconds()
	n, err := incrScript.Run(ctx, s.c, []string{k}, ttl).Int64()
	if err != nil {
		return 0, unavailable("incr", err)
	}
	return n, nil
}
