package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// purgeBatch bounds the messages one purge script handles, so that a
// backlog does not block the server for long.
const purgeBatch = 128

// Purge implements store.Retention. The times of the retention set are
// kept in whole milliseconds, rounded up: a step is done at most 1 ms late,
// never early. Each batch of due messages is read, what is due decided from
// each record (store.Message.Retire), and done with its "purged" and
// "forgotten" entries by one script, which checks first that nothing it
// read changed (else the batch is read again).
func (s *Store) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	var out []store.Purged
	stale := 0
	for {
		res, err := purgeDueScript.Run(ctx, s.c, []string{s.retentionKey()}, now.UnixMilli(), purgeBatch, s.prefix).Slice()
		if err != nil {
			return out, unavailable("purge", err)
		}
		if len(res) == 0 {
			return out, nil
		}
		o, err := s.purgeOp(res, now)
		if err != nil {
			return out, err
		}
		q, err := s.sequencer(s.opts.Replica)
		if err != nil {
			return out, fmt.Errorf("redis: purge: %w", err)
		}
		done, err := q.do(ctx, "purge", o)
		if errors.Is(err, errSkipped) {
			// What was read changed before the script ran: read again.
			if stale++; stale > commitTries {
				return out, unavailable("purge", errors.New("the messages due keep changing"))
			}
			continue
		}
		if err != nil {
			return out, err
		}
		list, _ := done.([]any)
		for i := 0; i+2 < len(list); i += 3 {
			member, _ := list[i].(string)
			n, _ := list[i+1].(int64)
			steps, _ := list[i+2].(int64)
			from, id, ok := strings.Cut(member, "\x00")
			if !ok {
				continue
			}
			out = append(out, store.Purged{From: from, ID: id, Deliveries: int(n),
				Payloads: steps&1 != 0, Forgotten: steps&2 != 0})
		}
		if len(res) < purgeBatch {
			return out, nil
		}
	}
}

// purgeOp builds the step of each message due (purgeDueScript's reply),
// decided from its record as read (store.Message.Retire), with its
// entries: "purged" and then "forgotten".
func (s *Store) purgeOp(due []any, now time.Time) (*op, error) {
	o := &op{kind: "purge", exclusive: true}
	o.args = []any{s.retentionKey(), s.deadKey(), s.prefix, formatTime(now), now.UnixMilli(), len(due)}
	for _, r := range due {
		f, _ := r.([]any)
		if len(f) != 5 {
			return nil, unavailable("purge", errors.New("unexpected script reply"))
		}
		member, _ := f[0].(string)
		raw, _ := f[1].(string)
		status, _ := f[2].(string)
		dlvs, _ := f[4].(string)
		from, id, _ := strings.Cut(member, "\x00")
		m := store.Message{From: from, ID: id}
		var step store.Retirement
		switch {
		case f[2] == nil:
			// No record (any more): the member only leaves the set.
		case json.Unmarshal([]byte(raw), &m) != nil:
			// A record that does not decode: its payloads go as the set
			// says (the entry names what the set does), and it stays, since
			// when it may be forgotten cannot be read.
			m = store.Message{From: from, ID: id}
			step.Purge = status != store.StatusDenied && f[3] == nil
		default:
			m.Status, m.Purged = status, f[3] != nil
			step = m.Retire(now)
		}
		var refs [][2]string
		if (step.Purge || step.Forget) && dlvs != "" && json.Unmarshal([]byte(dlvs), &refs) != nil {
			refs = nil
		}
		steps := int64(0)
		if step.Purge {
			e, err := audit.Prepare(store.PurgeEntry(&m), s.opts.Replica, s.opts.Clock())
			if err != nil {
				return nil, fmt.Errorf("redis: purge: %w", err)
			}
			o.entries = append(o.entries, e)
			steps |= 1
		}
		if step.Forget {
			e, err := audit.Prepare(store.ForgetEntry(&m), s.opts.Replica, s.opts.Clock())
			if err != nil {
				return nil, fmt.Errorf("redis: purge: %w", err)
			}
			o.entries = append(o.entries, e)
			steps |= 2
		}
		if steps != 0 {
			o.purged = append(o.purged, member, int64(len(refs)), steps)
		}
		next := ""
		if !step.Forget && !step.Next.IsZero() {
			next = strconv.FormatInt(ceilMillis(step.Next), 10)
		}
		o.args = append(o.args, member, s.prefix+"m:"+member, flag(step.Purge), flag(step.Forget), next,
			raw, status, flag(f[3] != nil), dlvs, s.indexKey(m.To, m.ID), len(refs))
		for _, ref := range refs {
			o.args = append(o.args, ref[0], ref[1])
		}
	}
	return o, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
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
