package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Release implements store.Queue.
func (s *Store) Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return store.ErrNotFound
	}
	n, err := releaseScript.Run(ctx, s.c, []string{s.queueKey(recipient)}, deliveryID, ceilMillis(visibleAt)).Int()
	if err != nil {
		return unavailable("release", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeadLetter implements store.Queue: the record stays where it is
// (envelope and attempts kept) with a 'dead' field, its member joins the
// dead-letter set, and the "dead_lettered" entry is appended, in one script.
func (s *Store) DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return s.end(ctx, "dead letter", recipient, deliveryID, audit.KindDeadLettered, func(qk, dk, mk string) []any {
		return []any{qk, dk, deliveryID, formatTime(now), mk, s.deadKey(), recipient + "\x00" + deliveryID, now.UnixMilli()}
	})
}

// DeadLetters implements store.Queue. Dead letters of the same millisecond
// come in the order of (recipient, delivery id). A record that cannot be
// read is quarantined and left out.
func (s *Store) DeadLetters(ctx context.Context) ([]store.Delivery, error) {
	res, err := deadLettersScript.Run(ctx, s.c, []string{s.deadKey()}, s.prefix+"d:").Slice()
	if err != nil {
		return nil, unavailable("dead letters", err)
	}
	out := make([]store.Delivery, 0, len(res))
	for _, r := range res {
		f, _ := r.([]any)
		str := func(i int) string { v, _ := f[i].(string); return v }
		if len(f) == 1 {
			if err := s.quarantined(ctx, "dead letters", kindDeadLetter, s.prefix+"d:"+str(0), s.deadKey(), str(0)); !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			continue
		}
		if len(f) != 7 {
			return nil, unavailable("dead letters", errors.New("unexpected script reply"))
		}
		recipient, id, ok := strings.Cut(str(0), "\x00")
		created, cerr := time.Parse(time.RFC3339Nano, str(2))
		dead, derr := time.Parse(time.RFC3339Nano, str(6))
		attempts, aerr := strconv.Atoi(str(5))
		if !ok || cerr != nil || derr != nil || aerr != nil {
			if err := s.quarantined(ctx, "dead letters", kindDeadLetter, s.prefix+"d:"+str(0), s.deadKey(), str(0)); !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			continue
		}
		out = append(out, store.Delivery{
			ID: id, Recipient: recipient, MessageFrom: str(3), MessageID: str(4),
			Envelope: []byte(str(1)), Attempts: attempts,
			CreatedAt: created, DeadLetteredAt: dead,
		})
	}
	return out, nil
}

// Requeue implements store.Queue.
func (s *Store) Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	if store.ValidKeys(recipient, deliveryID) != nil {
		return store.ErrNotFound
	}
	if err := s.writable(ctx); err != nil {
		return err
	}
	keys := []string{s.deadKey(), s.queueKey(recipient), s.deliveryPrefix(recipient) + deliveryID, s.queuesKey()}
	n, err := requeueScript.Run(ctx, s.c, keys,
		recipient+"\x00"+deliveryID, deliveryID, ceilMillis(now), formatTime(now), recipient).Int()
	if err != nil {
		return unavailable("requeue", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Depths implements store.Queue: every recipient that ever had a queue,
// zero included.
func (s *Store) Depths(ctx context.Context) (map[string]int, error) {
	res, err := depthsScript.Run(ctx, s.c, []string{s.queuesKey()}, s.prefix+"q:").Slice()
	if err != nil {
		return nil, unavailable("depths", err)
	}
	if len(res)%2 != 0 {
		return nil, unavailable("depths", errors.New("unexpected script reply"))
	}
	out := make(map[string]int, len(res)/2)
	for i := 0; i < len(res); i += 2 {
		r, _ := res[i].(string)
		n, ok := res[i+1].(int64)
		if !ok {
			return nil, unavailable("depths", errors.New("unexpected script reply"))
		}
		out[r] = int(n)
	}
	return out, nil
}
