package redis

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// Check reads every record under the store's prefix and says what it
// checked on w: message records (decoded), delivery records (a hash whose
// fields parse, pointing at a message), every queue's members (each with
// its record), the dead letters (each with its record, marked dead), and
// the records quarantined earlier. The audit chains' links and checkpoints
// are audit.VerifyLive's. It returns the first problem, wrapping
// store.ErrDamaged. It is `xborder store check`.
func (s *Store) Check(ctx context.Context, w io.Writer) error {
	n, err := s.checkMessages(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "messages: %d records ok\n", n)

	n, err = s.checkDeliveries(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "deliveries: %d records ok\n", n)

	recipients, queued, err := s.checkQueues(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "queues: %d recipients, %d deliveries ok\n", recipients, queued)

	n, err = s.checkDeadLetters(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "dead letters: %d ok\n", n)

	n, err = s.scanCount(ctx, "quarantine:*", func(string) error { return nil })
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "quarantine: %d records moved aside earlier\n", n)
	return nil
}

// damagedf is the error of a problem Check found.
func damagedf(format string, a ...any) error {
	return fmt.Errorf("%w: redis: %s", store.ErrDamaged, fmt.Sprintf(format, a...))
}

// scanCount calls fn on every key under the store's prefix that matches
// pattern, and counts them, the one fn failed on included. A failed scan
// is ErrUnavailable, not damage.
func (s *Store) scanCount(ctx context.Context, pattern string, fn func(key string) error) (int, error) {
	n := 0
	iter := s.c.Scan(ctx, 0, globEscape.Replace(s.prefix)+pattern, 500).Iterator()
	for iter.Next(ctx) {
		n++
		if err := fn(iter.Val()); err != nil {
			return n, err
		}
	}
	if err := iter.Err(); err != nil {
		return n, unavailable("check", err)
	}
	return n, nil
}

// checkMessages checks that every message record decodes and sits at the
// key of the (from, id) it names, and counts them.
func (s *Store) checkMessages(ctx context.Context) (int, error) {
	return s.scanCount(ctx, "m:*", func(k string) error {
		fields, err := s.c.HMGet(ctx, k, "rec", "status", "attempts", "updated", "purged").Result()
		if err != nil {
			return damagedf("message record %s: %v", printable(k), err)
		}
		m, err := decodeMessage(fields)
		if err != nil || m == nil {
			return damagedf("message record %s: %v", printable(k), err)
		}
		if k != s.messageKey(m.From, m.ID) {
			return damagedf("message record %s names %s/%s", printable(k), m.From, m.ID)
		}
		return nil
	})
}

// checkDeliveries checks that every delivery record has the fields a
// delivery needs and that its times and attempts parse, and counts them.
func (s *Store) checkDeliveries(ctx context.Context) (int, error) {
	return s.scanCount(ctx, "d:*", func(k string) error {
		f, err := s.c.HMGet(ctx, k, "env", "created", "from", "mid", "msg", "attempts").Result()
		if err != nil {
			return damagedf("delivery record %s: %v", printable(k), err)
		}
		for i, name := range []string{"env", "created", "from", "mid", "msg"} {
			if _, ok := f[i].(string); !ok {
				return damagedf("delivery record %s: no %s", printable(k), name)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, f[1].(string)); err != nil {
			return damagedf("delivery record %s: created: %v", printable(k), err)
		}
		if a, ok := f[5].(string); ok {
			if _, err := strconv.Atoi(a); err != nil {
				return damagedf("delivery record %s: attempts %q", printable(k), a)
			}
		}
		return nil
	})
}

// checkQueues checks that every member of every recipient's queue has its
// delivery record, and counts the recipients and the members.
func (s *Store) checkQueues(ctx context.Context) (recipients, queued int, err error) {
	rs, err := s.c.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return 0, 0, unavailable("check", err)
	}
	for _, r := range rs {
		ids, err := s.c.ZRange(ctx, s.queueKey(r), 0, -1).Result()
		if err != nil {
			return 0, 0, damagedf("queue %s: %v", printable(r), err)
		}
		for _, id := range ids {
			if n, err := s.c.Exists(ctx, s.deliveryPrefix(r)+id).Result(); err != nil || n != 1 {
				return 0, 0, damagedf("queue %s: delivery %s has no record", printable(r), printable(id))
			}
		}
		queued += len(ids)
	}
	return len(rs), queued, nil
}

// checkDeadLetters checks that every dead letter names a recipient and a
// delivery whose record is there and marked dead, and counts them.
func (s *Store) checkDeadLetters(ctx context.Context) (int, error) {
	dead, err := s.c.ZRange(ctx, s.deadKey(), 0, -1).Result()
	if err != nil {
		return 0, damagedf("dead letters: %v", err)
	}
	for _, member := range dead {
		if _, _, ok := strings.Cut(member, "\x00"); !ok {
			return 0, damagedf("dead letter %s: not recipient/id", printable(member))
		}
		d, err := s.c.HGet(ctx, s.prefix+"d:"+member, "dead").Result()
		if err != nil || d == "" {
			return 0, damagedf("dead letter %s: its record is missing or not dead-lettered", printable(member))
		}
	}
	return len(dead), nil
}

// globEscape escapes what SCAN MATCH would read as a pattern.
var globEscape = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
