// Package ratelimit enforces per-sender quotas (PROTOCOL §6): a sender
// that exceeds its quota gets 429 with Retry-After instead of a backlog.
//
// The quota is a fixed window: at most Limit requests per Window per sender.
// Memory counts in the process (one gateway, the embedded store); a store
// that is shared by several replicas provides a Counter so that every
// replica counts against the same quota.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Quota is a number of requests per window; Limit 0 means unlimited.
type Quota struct {
	Limit  int
	Window time.Duration
}

// Counter counts hits of a key in the window that starts at windowStart and
// returns the count after this hit. A shared store implements it atomically.
type Counter interface {
	Incr(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int64, error)
}

// Limiter decides per sender.
type Limiter struct {
	Default   Quota
	PerSender map[string]Quota
	Counter   Counter
	Clock     func() time.Time
}

// Wait returns 0 when the sender may go on, or how long it must wait.
func (l *Limiter) Wait(ctx context.Context, sender string) (time.Duration, error) {
	q := l.Default
	if s, ok := l.PerSender[sender]; ok {
		q = s
	}
	if q.Limit <= 0 || q.Window <= 0 {
		return 0, nil
	}
	now := time.Now()
	if l.Clock != nil {
		now = l.Clock()
	}
	start := now.Truncate(q.Window)
	n, err := l.Counter.Incr(ctx, sender, start, q.Window)
	if err != nil {
		return 0, err
	}
	if n > int64(q.Limit) {
		return start.Add(q.Window).Sub(now), nil
	}
	return 0, nil
}

// Memory is a Counter for one process.
type Memory struct {
	mu sync.Mutex
	m  map[string]window
}

type window struct {
	start time.Time
	n     int64
}

// Incr counts a hit; counts of an earlier window are forgotten.
func (m *Memory) Incr(_ context.Context, key string, start time.Time, _ time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]window{}
	}
	w := m.m[key]
	if !w.start.Equal(start) {
		w = window{start: start}
	}
	w.n++
	m.m[key] = w
	return w.n, nil
}
