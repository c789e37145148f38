package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// A record that cannot be decoded (a message, delivery or dead letter
// record of the wrong type, or with fields that do not parse) is
// quarantined: renamed to quarantine:<its key>:<time>, taken out of the
// sorted set it blocked (its queue, the dead letters), logged with its key
// (keys hold identifiers, never personal data) and counted
// (Options.OnQuarantine); the store goes on as if it were not there.

// Kinds of quarantined records.
const (
	kindMessage    = "message"
	kindDelivery   = "delivery"
	kindDeadLetter = "dead_letter"
)

// quarantined moves the record at key aside (and member out of zset, when
// given) and returns store.ErrNotFound: the record is no longer there.
func (s *Store) quarantined(ctx context.Context, op, kind, key, zset, member string) error {
	if key == "" {
		return store.ErrNotFound
	}
	name := strings.TrimPrefix(key, s.prefix)
	qkey := s.prefix + "quarantine:" + name + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := quarantineScript.Run(ctx, s.c, []string{key, qkey}, zset, member).Err(); err != nil {
		return unavailable(op, err)
	}
	s.log.Error("store record quarantined: it cannot be decoded; its value is kept under the quarantine key",
		"kind", kind, "key", printable(name), "quarantine_key", printable(qkey))
	if s.opts.OnQuarantine != nil {
		s.opts.OnQuarantine(kind)
	}
	return store.ErrNotFound
}

// printable shows a key with its NUL separators as "/".
func printable(k string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(k, "\x00", "/"), "?")
}
