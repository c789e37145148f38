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
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: redis: %s", store.ErrDamaged, fmt.Sprintf(format, a...))
	}
	scan := func(pattern string, fn func(key string) error) (int, error) {
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
	n, err := scan("m:*", func(k string) error {
		fields, err := s.c.HMGet(ctx, k, "rec", "status", "attempts", "updated", "purged").Result()
		if err != nil {
			return bad("message record %s: %v", printable(k), err)
		}
		m, err := decodeMessage(fields)
		if err != nil || m == nil {
			return bad("message record %s: %v", printable(k), err)
		}
		if k != s.messageKey(m.From, m.ID) {
			return bad("message record %s names %s/%s", printable(k), m.From, m.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "messages: %d records ok\n", n)

	n, err = scan("d:*", func(k string) error {
		f, err := s.c.HMGet(ctx, k, "env", "created", "from", "mid", "msg", "attempts").Result()
		if err != nil {
			return bad("delivery record %s: %v", printable(k), err)
		}
		for i, name := range []string{"env", "created", "from", "mid", "msg"} {
			if _, ok := f[i].(string); !ok {
				return bad("delivery record %s: no %s", printable(k), name)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, f[1].(string)); err != nil {
			return bad("delivery record %s: created: %v", printable(k), err)
		}
		if a, ok := f[5].(string); ok {
			if _, err := strconv.Atoi(a); err != nil {
				return bad("delivery record %s: attempts %q", printable(k), a)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "deliveries: %d records ok\n", n)

	recipients, err := s.c.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return unavailable("check", err)
	}
	queued := 0
	for _, r := range recipients {
		ids, err := s.c.ZRange(ctx, s.queueKey(r), 0, -1).Result()
		if err != nil {
			return bad("queue %s: %v", printable(r), err)
		}
		for _, id := range ids {
			if n, err := s.c.Exists(ctx, s.deliveryPrefix(r)+id).Result(); err != nil || n != 1 {
				return bad("queue %s: delivery %s has no record", printable(r), printable(id))
			}
		}
		queued += len(ids)
	}
	fmt.Fprintf(w, "queues: %d recipients, %d deliveries ok\n", len(recipients), queued)

	dead, err := s.c.ZRange(ctx, s.deadKey(), 0, -1).Result()
	if err != nil {
		return bad("dead letters: %v", err)
	}
	for _, member := range dead {
		if _, _, ok := strings.Cut(member, "\x00"); !ok {
			return bad("dead letter %s: not recipient/id", printable(member))
		}
		d, err := s.c.HGet(ctx, s.prefix+"d:"+member, "dead").Result()
		if err != nil || d == "" {
			return bad("dead letter %s: its record is missing or not dead-lettered", printable(member))
		}
	}
	fmt.Fprintf(w, "dead letters: %d ok\n", len(dead))

	n, err = scan("quarantine:*", func(string) error { return nil })
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "quarantine: %d records moved aside earlier\n", n)
	return nil
}

// globEscape escapes what SCAN MATCH would read as a pattern.
var globEscape = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
